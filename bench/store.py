"""Results on disk: layout, run identity, atomic writes, and loading into pandas.

    <results_dir>/<group>/<run_id>/config.yaml       resolved config
    <results_dir>/<group>/<run_id>/history.parquet   one row per (seed, epoch, split)
    <results_dir>/<group>/<run_id>/summary.json      written last, atomically: the run is complete

The schema is documented in results/README.md. A run folder without summary.json is unfinished:
it is never loaded and a rerun redoes it from scratch.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path

# config keys that do not change a run's results: left out of its identity
NOT_IDENTITY = ("results_dir", "force", "group", "hydra", "progress")
TRAINER_NOT_IDENTITY = ("threads",)


def run_id(config: dict) -> str:
    """Short stable hash of the resolved config (a plain dict) minus the keys that don't change results."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    if "trainer" in identity:
        identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in TRAINER_NOT_IDENTITY}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir(results_dir, group, rid) -> Path:
    return Path(results_dir) / str(group) / rid


def is_finished(path: Path) -> bool:
    return (Path(path) / "summary.json").is_file()


def write_atomic(path: Path, write) -> None:
    """Write a file through `write(tmp_path)` into a temp file beside it, then rename it in place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def save_run(path: Path, config_yaml: str, history, summary: dict) -> None:
    """Write a run's three files; summary.json last, so its presence means the other two are whole."""
    path.mkdir(parents=True, exist_ok=True)
    write_text(path / "config.yaml", config_yaml)
    if history is not None:
        write_atomic(path / "history.parquet", lambda tmp: history.to_parquet(tmp, index=False))
    write_text(path / "summary.json", json.dumps(summary, indent=2, default=float))


def load(results_dir="results"):
    """All complete runs under results_dir as tidy frames (runs, history); see results/README.md."""
    import pandas as pd

    run_rows, histories = [], []
    for summary_path in sorted(Path(results_dir).glob("*/*/summary.json")):
        summary = json.loads(summary_path.read_text())
        facts = {k: summary.get(k) for k in RUN_FACTS}
        seeds = summary.get("per_seed") or [None]
        for entry in seeds:
            row = dict(facts)
            if entry is not None:
                row.update({k: entry.get(k) for k in SEED_FACTS})
                row["seed_status"] = entry.get("status")
                row.update({f"test_{name}": value for name, value in (entry.get("test") or {}).items()})
            run_rows.append(row)
        history_path = summary_path.parent / "history.parquet"
        if history_path.is_file():
            history = pd.read_parquet(history_path)
            for key in HISTORY_FACTS:
                history.insert(0, key, summary.get(key))
            histories.append(history)
    runs = pd.DataFrame(run_rows, columns=None if run_rows else [*RUN_FACTS, *SEED_FACTS, "seed_status"])
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return runs, history


RUN_FACTS = ("group", "run_id", "status", "reason", "dataset", "task", "model", "activation", "loss",
             "optimizer", "lr", "metric", "higher_is_better", "target")
SEED_FACTS = ("seed", "diverged_step", "best_val", "epochs_to_target", "steps_to_target",
              "seconds_to_target", "auc", "train_seconds")
HISTORY_FACTS = ("optimizer", "loss", "activation", "task", "dataset", "run_id", "group")


def read_summary(path) -> dict:
    return json.loads((Path(path) / "summary.json").read_text())
