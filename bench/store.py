"""Results on disk: layout, run identity, atomic writes, and loading into pandas.

    <results_dir>/<group>/<run_id>/config.yaml       resolved config
    <results_dir>/<group>/<run_id>/history.parquet   one row per (seed, epoch, split)
    <results_dir>/<group>/<run_id>/summary.json      written last, atomically: the run is complete

The schema is documented in results/README.md. A run folder without summary.json is unfinished
(a partial folder, left by a crash or a kill): it is never loaded, and a rerun reports it, deletes it
and redoes the run from scratch.

Concurrency: every process that checks, cleans, trains or records a run first takes the run's lock,
<results_dir>/<group>/.locks/<run_id>.lock (an OS file lock, released by the kernel when its holder
dies, even by SIGKILL). So two sweeps over the same results_dir with overlapping grids train each run
once: the second waits for the lock, then finds the run finished and skips it.
"""
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bench.errors import UserError

# config keys that do not change a run's results: left out of its identity
NOT_IDENTITY = ("results_dir", "force", "group", "hydra", "progress")
TRAINER_NOT_IDENTITY = ("threads",)  # how, not what: the same results
OPTIMIZER_NOT_IDENTITY = ("lr_grid",)  # the grid a preset may tune over; what trains is optimizer.lr
# keys added after runs were stored: left out of the identity at the value that gives the old results,
# so those runs keep their ids (group -> key -> value); clean labels make the noise kind irrelevant
ADDED_AT_DEFAULT = {"model": {"out_bias_offset": 0.0},
                    "dataset": {"label_noise": 0.0, "label_noise_kind": "symmetric", "distribution": "poisson"},
                    "optimizer": {"lr_extend": 0},
                    "trainer": {"calibration_bins": 15}}


def run_id(config: dict) -> str:
    """Short stable hash of the resolved config (a plain dict) minus the keys that don't change results."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    for group, defaults in ADDED_AT_DEFAULT.items():
        if isinstance(identity.get(group), dict):
            identity[group] = {k: v for k, v in identity[group].items() if not (k in defaults and v == defaults[k])}
    if "trainer" in identity:
        identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in TRAINER_NOT_IDENTITY}
    if isinstance(identity.get("optimizer"), dict):
        optimizer = identity["optimizer"]
        scalar = not isinstance(optimizer.get("lr"), list)  # nothing is tuned: a grid's extension cannot matter
        identity["optimizer"] = {k: v for k, v in optimizer.items()
                                 if k not in OPTIMIZER_NOT_IDENTITY and not (scalar and k == "lr_extend")}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir(results_dir, group, rid) -> Path:
    return Path(results_dir) / str(group) / rid


def is_finished(path: Path) -> bool:
    return (Path(path) / "summary.json").is_file()


LOCKS = ".locks"  # per group: one lock file per run id (never deleted: see `claim`)


@contextmanager
def claim(path: Path, wait: bool = True, message: str | None = None):
    """Hold the lock of the run stored at `path` for the duration of the `with` block; it yields the
    folders it had to create for the lock (for `unclaim`).

    While another process holds it: wait (printing `message` once, if given), or with wait=False
    raise BlockingIOError at once. The lock file stays in place on release: deleting it could let a
    waiting process and a newcomer hold two different files of the same name at once.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    lock_dir = path.parent / LOCKS
    created = [p for p in (lock_dir, *lock_dir.parents) if not p.exists()]
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"results_dir={path.parent.parent} is not writable: cannot create {lock_dir} "
                        f"({error.strerror})") from None
    lock = FileLock(lock_dir / f"{path.name}.lock")
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if not wait:
            raise BlockingIOError(f"{path} is locked by another process") from None
        if message:
            print(message, flush=True)
        lock.acquire()
    try:
        yield created
    finally:
        lock.release()


def unclaim(path: Path, created: list) -> None:
    """After a run that stored nothing (a single run stopped by a user mistake): remove its lock file
    and the folders `claim` created for it, so that a mistake leaves no trace on disk."""
    path = Path(path)
    if path.exists():
        return
    (path.parent / LOCKS / f"{path.name}.lock").unlink(missing_ok=True)
    for folder in created:  # innermost first
        try:
            folder.rmdir()
        except OSError:  # not empty: another run lives there now
            break


def partial_runs(group_dir) -> list:
    """Run folders in one group folder (results_dir/<group>) without summary.json, sorted."""
    return sorted(p for p in Path(group_dir).glob("*")
                  if p.is_dir() and not p.name.startswith(".") and not is_finished(p))


def remove_run(path: Path) -> list:
    """Delete a run folder (call it holding the run's lock); return the names of the files it held."""
    path = Path(path)
    if not path.exists():
        return []
    files = sorted(p.name for p in path.iterdir())
    shutil.rmtree(path)
    return files


def clean_partial(group_dir) -> list:
    """Delete every partial run folder in a group folder that no process is working on right now
    (one lock probe each); return [(folder, names of the files it held)]."""
    cleaned = []
    for path in partial_runs(group_dir):
        try:
            with claim(path, wait=False):
                if path.exists() and not is_finished(path):
                    cleaned.append((path, remove_run(path)))
        except BlockingIOError:
            continue  # being trained right now by another process
    return cleaned


UMASK = os.umask(0o022)  # read the process umask (the only way is to set it) ...
os.umask(UMASK)  # ... and put it back at once


def write_atomic(path: Path, write) -> None:
    """Write a file through `write(tmp_path)` into a temp file beside it, then rename it in place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it private (0600); results are ordinary files
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


def _flat(node, prefix="") -> dict:
    """A nested config dict -> {dotted key: value} (lists are values)."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _config_keys(paths) -> list:
    """Per run folder, {dotted config key: value} of every key whose value differs between the runs
    (config.yaml; keys that do not change results left out)."""
    import yaml

    configs = []
    for path in paths:
        config_path = path / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
        config = config if isinstance(config, dict) else {}
        configs.append({k: v for k, v in _flat(config).items() if k.split(".")[0] not in NOT_IDENTITY})
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    return [{k: c.get(k) for k in varying} for c in configs]


def load(results_dir="results"):
    """All complete runs under results_dir as tidy frames (runs, history); see results/README.md.

    runs: one row per member (seed x learning rate) of every run, with its `lr`, whether it is at the
    run's `chosen` learning rate, and the run's `lr_grid` (a tuple) and `chosen_lr`: `runs[runs.chosen]`
    is the tuned view (with a scalar lr every member is chosen). history: one row per (member, point,
    split), with its `lr` and `chosen` columns; `speed_chosen` marks the members at the learning rate
    that reaches the validation target fastest (speed claims read those), `n_test` a replicate's test rows. Every config key whose value differs between the loaded
    runs is a column of both, named by its dotted key (`model.out_init_scale`, `optimizer.momentum`, ...)."""
    import pandas as pd

    run_rows, histories = [], []
    summary_paths = sorted(Path(results_dir).glob("*/*/summary.json"))
    varying = _config_keys([p.parent for p in summary_paths])
    for summary_path, knobs in zip(summary_paths, varying):
        summary = json.loads(summary_path.read_text())
        facts = {k: summary.get(k) for k in RUN_FACTS}
        grid = summary.get("lr_grid") or ([summary["lr"]] if summary.get("lr") is not None else None)
        facts.update(lr_grid=tuple(grid) if grid else None, chosen_lr=summary.get("chosen_lr", summary.get("lr")),
                     n_test=(summary.get("split_sizes") or {}).get("test"))
        members = summary.get("per_seed") or [None]  # one entry per member (seed x learning rate)
        for entry in members:
            row = dict(facts, chosen=True)  # (a run without members: its one row is its tuned view)
            if entry is not None:
                row.update({k: entry.get(k) for k in SEED_FACTS})
                row["lr"] = entry.get("lr", summary.get("lr"))
                row["chosen"] = bool(entry.get("chosen", True))  # before learning-rate grids: every seed
                row["speed_chosen"] = bool(entry.get("speed_chosen", row["chosen"]))  # before the speed choice: chosen
                row["seed_status"] = entry.get("status")
                row.update({f"test_{name}": value for name, value in (entry.get("test") or {}).items()})
            run_rows.append({**row, **knobs})
        history_path = summary_path.parent / "history.parquet"
        if history_path.is_file():
            history = pd.read_parquet(history_path)
            if "lr" not in history:  # a run from before learning-rate grids
                history.insert(1, "lr", summary.get("lr"))
            history.insert(2, "chosen", history["lr"] == facts["chosen_lr"])
            history.insert(3, "speed_chosen", history["lr"] == summary.get("speed_lr", facts["chosen_lr"]))
            for column, key in HISTORY_FACTS:
                history.insert(0, column, summary.get(key))
            for column, value in knobs.items():
                history[column] = [value] * len(history)
            histories.append(history)
    runs = pd.DataFrame(run_rows, columns=None if run_rows else
                        [*RUN_FACTS, "lr_grid", "chosen_lr", "n_test", "chosen", "speed_chosen", *SEED_FACTS,
                         "seed_status"])
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return runs, history


RUN_FACTS = ("group", "run_id", "status", "reason", "dataset", "task", "model", "activation", "loss",
             "optimizer", "lr", "metric", "higher_is_better", "target", "n_classes", "label_noise",
             "label_noise_applied", "speed_lr", "tuned", "lr_bound", "resample")
SEED_FACTS = ("seed", "diverged_step", "best_val", "epochs_to_target", "steps_to_target",
              "seconds_to_target", "auc", "train_seconds", "temperature", "reliability")
# (history column, summary key), inserted in front in reverse order; `loss` is already the loss value
HISTORY_FACTS = (("loss_name", "loss"), ("optimizer", "optimizer"), ("activation", "activation"),
                 ("task", "task"), ("dataset", "dataset"), ("run_id", "run_id"), ("group", "group"))


def read_summary(path) -> dict:
    return json.loads((Path(path) / "summary.json").read_text())


def finished_status(path) -> str | None:
    """The status in a run's summary.json (done | diverged | invalid | failed), None if unfinished."""
    return read_summary(path)["status"] if is_finished(path) else None
