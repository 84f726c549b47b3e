"""Results on disk: layout, run identity, atomic writes, and loading into pandas.

    <results_dir>/<group>/<run_id>/config.yaml       resolved config
    <results_dir>/<group>/<run_id>/history.parquet   one row per (seed, epoch, split)
    <results_dir>/<group>/<run_id>/summary.json      written last, atomically: the run is complete

The schema is documented in results/README.md. A run folder without summary.json is unfinished
(a partial folder, left by a crash or a kill): it is never loaded, and a rerun reports it, deletes it
and redoes the run from scratch. A folder whose files are not what the schema promises (a summary.json
cut short or foreign, a history.parquet missing or truncated: `read_run` says what) is damaged: every
reader names it in one line and leaves it out, and the next run of its config redoes it.

Identity: a run id hashes the resolved config less what does not change its numbers (where files
live: paths, the cache and the results folder), plus the content of the files they depend on (a CSV
dataset's file, a user's loss module), so an edited file is a new run, never a stale skip.

Concurrency: every process that checks, cleans, trains or records a run first takes the run's lock,
<results_dir>/<group>/.locks/<run_id>.lock (an OS file lock, released by the kernel when its holder
dies, even by SIGKILL). So two sweeps over the same results_dir with overlapping grids train each run
once: the second waits for the lock, then finds the run finished and skips it.
"""
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from bench.errors import UserError

# config keys that do not change a run's results: left out of its identity
NOT_IDENTITY = ("results_dir", "force", "group", "hydra", "progress", "pack")
TRAINER_NOT_IDENTITY = ("threads",)  # how, not what: the same results
OPTIMIZER_NOT_IDENTITY = ("lr_grid",)  # the grid a preset may tune over; what trains is optimizer.lr
# keys added after runs were stored: left out of the identity at the value that gives the old results,
# so those runs keep their ids (group -> key -> value)
ADDED_AT_DEFAULT = {"model": {"out_bias_offset": 0.0},
                    "dataset": {"label_noise": 0.0, "label_noise_kind": "symmetric", "distribution": "poisson"},
                    "optimizer": {"lr_extend": 0},
                    "trainer": {"calibration_bins": 15}}
DATASET_NOT_IDENTITY = ("path", "root", "cache_dir", "download")  # where the data lives, not what it is
REPORT = "report"  # <results_dir>/report holds the report: never a group
RUN_ID = re.compile(r"[0-9a-f]{12}")  # what run_id gives: the name of every run folder


def run_id(config: dict) -> str:
    """Short stable hash of the resolved config (a plain dict) minus the keys that don't change results,
    plus the content of the files it names (`dataset.path`: file_digest; a user loss's module: module_digest)."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    for group, defaults in ADDED_AT_DEFAULT.items():
        if isinstance(identity.get(group), dict):
            identity[group] = {k: v for k, v in identity[group].items() if not (k in defaults and v == defaults[k])}
    if isinstance(identity.get("dataset"), dict):
        dataset = identity["dataset"]
        identity["dataset"] = {k: v for k, v in dataset.items() if k not in DATASET_NOT_IDENTITY
                               and not (k == "label_noise_kind" and not dataset.get("label_noise"))}  # clean labels
        if dataset.get("path"):
            identity["dataset"]["content"] = file_digest(dataset["path"])
    if isinstance(identity.get("loss"), dict) and isinstance(identity["loss"].get("fn"), str):
        identity["loss"] = {**identity["loss"], "source": module_digest(identity["loss"]["fn"])}
    if "trainer" in identity:
        identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in TRAINER_NOT_IDENTITY}
    if isinstance(identity.get("optimizer"), dict):
        optimizer = identity["optimizer"]
        scalar = not isinstance(optimizer.get("lr"), list)  # nothing is tuned: a grid's extension cannot matter
        identity["optimizer"] = {k: v for k, v in optimizer.items()
                                 if k not in OPTIMIZER_NOT_IDENTITY and not (scalar and k == "lr_extend")}
    text = json.dumps(_same_number(identity), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _same_number(node):
    """A number written either way is one value: `optimizer.lr=1` and `optimizer.lr=1.0` are one run
    (a float with an integral value becomes that int, exactly)."""
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {key: _same_number(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_same_number(value) for value in node]
    return node


_DIGESTS = {}  # (resolved path, size, mtime in ns) -> sha256: a file is read again only when it changes


def file_digest(path) -> str | None:
    """sha256 of a file's bytes (None where there is no readable file: the loader says why)."""
    file = Path(os.path.expanduser(str(path)))
    try:
        stat = file.stat()
        if not file.is_file():
            return None
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            _DIGESTS[key] = digest.hexdigest()
        return _DIGESTS[key]
    except OSError:
        return None


def module_digest(fn: str) -> str | None:
    """sha256 of the source file of `module:function` (None where it cannot be found: validation says why)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(fn.partition(":")[0])
    except Exception:  # a parent package that fails to import, a malformed name
        return None
    return file_digest(spec.origin) if spec is not None and spec.origin else None


def run_dir(results_dir, group, rid) -> Path:
    return Path(results_dir) / str(group) / rid


def is_finished(path: Path) -> bool:
    """Whether the run's last write happened (summary.json exists); `read_run` says whether it is whole."""
    return (Path(path) / "summary.json").is_file()


STATUSES = ("done", "diverged", "invalid", "failed")
TRAINED = ("done", "diverged")  # statuses whose run has members, a history and test figures
# the schema's numbers (results/README.md): each a finite number or null; a non-finite float anywhere
# in a summary is refused too (json would write it as Infinity or NaN, which is not JSON)
NUMBERS = {"": ("lr", "chosen_lr", "target", "seconds", "n_classes", "epochs", "steps_per_epoch",
                "label_noise", "label_noise_applied"),
           "per_seed": ("seed", "lr", "diverged_step", "best_val", "epochs_to_target", "steps_to_target",
                        "seconds_to_target", "auc", "train_seconds"),
           "per_lr": ("lr", "val", "val_std", "test", "diverged")}
NAMES = ("run_id", "dataset", "task", "activation", "loss", "metric")  # strings in a trained run's summary


def non_finite(node, where="") -> list:
    """[(dotted key, value)] of every float in a summary (nested dicts and lists) that is inf or nan."""
    if isinstance(node, numbers.Real) and not isinstance(node, numbers.Integral):  # (numpy's floats too)
        return [] if math.isfinite(node) else [(where, float(node))]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, value in items:
        found += non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
    return found


def without_non_finite(node):
    """A copy of a summary with every inf or nan float replaced by None."""
    if isinstance(node, numbers.Real) and not isinstance(node, numbers.Integral):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {key: without_non_finite(value) for key, value in node.items()}
    if isinstance(node, list):
        return [without_non_finite(value) for value in node]
    return node


def _is_number_or_none(value) -> bool:
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value))


def summary_problem(summary) -> str | None:
    """What in a summary is not what the schema promises (results/README.md), in words; None if it is
    whole. The one check of both the writer (`bench.run`, before saving) and every reader."""
    if not isinstance(summary, dict):
        return f"summary.json holds a JSON {type(summary).__name__}, not a run's summary"
    status = summary.get("status")
    if "status" not in summary:
        return "summary.json has no status: not a run's summary"
    if status not in STATUSES:
        return f"status {status!r} is not one of {', '.join(STATUSES)}"
    bad = non_finite(summary)
    if bad:
        more = f" ({len(bad)} such values)" if len(bad) > 1 else ""
        return f"{bad[0][0]} is {bad[0][1]}, not a finite number{more}"
    lists = {part: summary.get(part, []) for part in ("per_seed", "per_lr")}
    for part, entries in lists.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return f"{part} is not a list of entries"
    if not isinstance(summary.get("lr_grid") or [], list):
        return "lr_grid is not a list"
    numbers = [(key, summary.get(key)) for key in NUMBERS[""]
               if not (key == "lr" and isinstance(summary.get(key), list))]
    numbers += [(f"lr_grid[{i}]", lr) for i, lr in enumerate(summary.get("lr_grid") or [])]
    if isinstance(summary.get("lr"), list):  # (a grid's runs once recorded the grid as their lr)
        numbers += [(f"lr[{i}]", lr) for i, lr in enumerate(summary["lr"])]
    for part, entries in lists.items():
        numbers += [(f"{part}[{i}].{key}", entry.get(key)) for i, entry in enumerate(entries) for key in NUMBERS[part]]
    for i, entry in enumerate(lists["per_seed"]):
        if not isinstance(entry.get("test", {}), dict):
            return f"per_seed[{i}].test is not a table of metrics"
        numbers += [(f"per_seed[{i}].test.{name}", v) for name, v in (entry.get("test") or {}).items()]
    wrong = next(((key, value) for key, value in numbers if not _is_number_or_none(value)), None)
    if wrong:
        return f"{wrong[0]} is {wrong[1]!r}, not a number"
    if status in TRAINED:
        if not lists["per_seed"]:
            return f"a {status} run without members (per_seed is empty)"
        name = next((key for key in NAMES if not isinstance(summary.get(key), str)), None)
        if name:
            return f"{name} is {summary.get(name)!r}, not a name"
    return None


def _parquet_problem(path: Path) -> str | None:
    """What is wrong with a history file, read from its footer only (not its rows): missing, cut short
    (a parquet file ends with its footer), unreadable or without the columns every history has."""
    if not path.is_file():
        return "history.parquet is missing"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(-4, os.SEEK_END)
            whole = head == b"PAR1" and f.read(4) == b"PAR1"
    except OSError:
        whole = False
    if not whole:
        return "history.parquet is cut short (not a whole parquet file)"
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(path).names
    except Exception as error:  # pyarrow's errors for a damaged footer are of several kinds
        return f"history.parquet cannot be read ({type(error).__name__}: {' '.join(str(error).split())[:160]})"
    absent = [c for c in HISTORY_COLUMNS if c not in columns]
    return f"history.parquet has no {', '.join(absent)} column" if absent else None


def read_run(path) -> tuple:
    """A run folder, checked without reading its history: (summary, None) for a whole finished run,
    (None, None) for an unfinished one (no summary.json: a partial folder), (None, problem) for a
    damaged one: a summary.json that is not JSON, foreign, another folder's or not what the schema
    promises, a config.yaml or (for a trained run) a history.parquet that is missing or cut short."""
    path = Path(path)
    if not is_finished(path):
        return None, None
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, UnicodeDecodeError) as error:
        return None, f"summary.json cannot be read ({getattr(error, 'strerror', None) or error})"
    except ValueError as error:
        return None, f"summary.json is not valid JSON ({error})"
    problem = summary_problem(summary)
    if problem is None and summary.get("run_id") != path.name:
        problem = f"summary.json is run {summary.get('run_id')!r}, not this folder's"
    if problem is None and not (path / "config.yaml").is_file():
        problem = "config.yaml is missing"
    if problem is None and summary["status"] in TRAINED:
        problem = _parquet_problem(path / "history.parquet")
    return (None, problem) if problem else (summary, None)


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
    """Run folders in one group folder (results_dir/<group>) without summary.json, sorted (a folder not
    named like a run id is not a run's: it is never listed, so never cleaned)."""
    return sorted(p for p in Path(group_dir).glob("*")
                  if RUN_ID.fullmatch(p.name) and p.is_dir() and not is_finished(p))


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
    # allow_nan=False: a non-finite number is never written as Infinity/NaN (bench.run settles them first)
    write_text(path / "summary.json", json.dumps(summary, indent=2, default=float, allow_nan=False))


def _flat(node, prefix="") -> dict:
    """A nested config dict -> {dotted key: value} (lists are values)."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_config(path: Path):
    """A run's config.yaml as a dict, or None where it cannot be read as one."""
    import yaml

    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def _varying(configs) -> list:
    """Per run, {dotted config key: value} of every key whose value differs between the runs (keys that
    do not change results left out)."""
    configs = [{k: v for k, v in _flat(c).items() if k.split(".")[0] not in NOT_IDENTITY} for c in configs]
    keys = sorted({k for c in configs for k in c})
    varying = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1]
    return [{k: c.get(k) for k in varying} for c in configs]


HISTORY_COLUMNS = ("seed", "epoch", "split")  # what every history has (the readers group by them)


def _read_history(path: Path):
    """(history frame, None), or (None, what is wrong): its rows cannot be read (read_run has checked
    its footer)."""
    import pandas as pd

    try:
        history = pd.read_parquet(path)
    except Exception as error:  # pyarrow's errors for a damaged file are of several kinds
        return None, f"history.parquet cannot be read ({type(error).__name__}: {' '.join(str(error).split())[:160]})"
    return history, None


def runs_under(results_dir) -> list:
    """Every folder under results_dir that holds a summary.json (<group>/<run>/summary.json), sorted;
    the report's folder and hidden folders (.locks) are not runs."""
    return sorted(p.parent for p in Path(results_dir).glob("*/*/summary.json")
                  if p.parent.parent.name != REPORT and not p.parent.parent.name.startswith(".")
                  and not p.parent.name.startswith("."))


def check_results_dir(results_dir) -> None:
    """UserError unless results_dir is a folder of runs (<group>/<run_id>/summary.json), with the
    likely mix-ups named: a group folder, a run folder, a file, an absent folder."""
    folder = Path(results_dir)
    if not folder.is_dir():
        what = "it is a file" if folder.exists() else "it does not exist"
        raise UserError(f"results_dir={str(results_dir)!r} is not a directory ({what}); run a sweep first "
                        "(make sweep) or pass the folder that holds <group>/<run_id>/summary.json")
    if not runs_under(folder):
        if (folder / "summary.json").is_file():
            raise UserError(f"results_dir={str(results_dir)!r} is a run folder; pass the results folder two "
                            f"levels above it: {folder.parent.parent}")
        if next(folder.glob("*/summary.json"), None) is not None:
            raise UserError(f"results_dir={str(results_dir)!r} is a group folder (it holds <run_id>/summary.json); "
                            f"pass the results folder above it: {folder.parent}")
        raise UserError(f"results_dir={str(results_dir)!r} holds no runs (no <group>/<run_id>/summary.json); "
                        "run a sweep first (make sweep) or pass the folder that holds them")


def left_out_line(path, problem) -> str:
    """The one line that names a damaged run folder and what is wrong with it."""
    if not RUN_ID.fullmatch(Path(path).name):
        return f"left out {path}: not a lossbench run folder ({problem})"
    return f"left out {path}: {problem}; the next run of its config redoes it"


def load(results_dir="results", left_out: list | None = None):
    """All complete runs under results_dir as tidy frames (runs, history); see results/README.md.

    runs: one row per member (seed x learning rate) of every run, with its `lr`, whether it is at the
    run's `chosen` learning rate, and the run's `lr_grid` (a tuple) and `chosen_lr`: `runs[runs.chosen]`
    is the tuned view (with a scalar lr every member is chosen). history: one row per (member, point,
    split), with its `lr` and `chosen` columns; `speed_chosen` marks the members at the learning rate
    that reaches the validation target fastest (speed claims read those), `n_test` a replicate's test rows.
    Every config key whose value differs between the loaded runs is a column of both, named by its dotted
    key (`model.out_init_scale`, `optimizer.momentum`, ...).

    A damaged run (`read_run`; a history that cannot be read) is left out of both frames: appended to
    `left_out` as (folder, what is wrong) when a list is given, else named on stderr in one line."""
    import pandas as pd

    whole, damaged = [], []
    for path in runs_under(results_dir):
        summary, problem = read_run(path)
        config = _read_config(path) if problem is None else None
        if problem is None and config is None:
            problem = "config.yaml is not a readable YAML mapping"
        history = None
        if problem is None and summary["status"] in TRAINED:
            history, problem = _read_history(path / "history.parquet")
        if problem:
            damaged.append((path, problem))
        else:
            whole.append((path, summary, config, history))
    if left_out is None:
        for path, problem in damaged:
            print(left_out_line(path, problem), file=sys.stderr, flush=True)
    else:
        left_out.extend(damaged)
    run_rows, histories = [], []
    for (path, summary, _, history), knobs in zip(whole, _varying([config for _, _, config, _ in whole])):
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
        if history is not None:
            if "lr" not in history:  # a run from before learning-rate grids
                history.insert(1, "lr", summary.get("lr"))
            history.insert(2, "chosen", history["lr"] == facts["chosen_lr"])
            history.insert(3, "speed_chosen", history["lr"] == summary.get("speed_lr", facts["chosen_lr"]))
            for column, key in HISTORY_FACTS:
                history.insert(0, column, summary.get(key))
            for column, value in knobs.items():
                history[column] = [value] * len(history)
            histories.append(history)
    runs = pd.DataFrame(run_rows)
    for column in RUNS_COLUMNS:  # every column, even where no run has members (all invalid or failed)
        if column not in runs:
            runs[column] = pd.Series([None] * len(runs), dtype=object)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return runs, history


RUN_FACTS = ("group", "run_id", "status", "reason", "dataset", "task", "model", "activation", "loss",
             "optimizer", "lr", "metric", "higher_is_better", "target", "n_classes", "label_noise",
             "label_noise_applied", "speed_lr", "tuned", "lr_bound", "resample")
SEED_FACTS = ("seed", "diverged_step", "best_val", "epochs_to_target", "steps_to_target",
              "seconds_to_target", "auc", "train_seconds", "temperature", "reliability")
RUNS_COLUMNS = (*RUN_FACTS, "lr_grid", "chosen_lr", "n_test", "chosen", "speed_chosen", *SEED_FACTS, "seed_status")
# (history column, summary key), inserted in front in reverse order; `loss` is already the loss value
HISTORY_FACTS = (("loss_name", "loss"), ("optimizer", "optimizer"), ("activation", "activation"),
                 ("task", "task"), ("dataset", "dataset"), ("run_id", "run_id"), ("group", "group"))


def read_summary(path) -> dict:
    return json.loads((Path(path) / "summary.json").read_text())


def finished_status(path) -> str | None:
    """The status in a whole run's summary.json (done | diverged | invalid | failed); None if the run is
    unfinished or damaged (`read_run`): either is redone."""
    summary, _ = read_run(path)
    return summary["status"] if summary else None
