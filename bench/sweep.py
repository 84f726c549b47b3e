"""Sweep-level bookkeeping, as a Hydra callback (registered in conf/config.yaml, `hydra.callbacks`).

    on_multirun_start  (main process)   check every job's values (a bad one: one line, exit 2, nothing
                                        written, no job started), count the jobs, clean partial run
                                        folders, note the start time
    on_job_end         (wherever a job runs: this process, a joblib worker, a submitit job)
                                        record the job's outcome, print one line per finished run:
                                        "sweep: 7/24 loss=bce activation=sigmoid: done, test accuracy
                                        0.87 ± 0.01 (5 seeds); elapsed 1m03s, ETA 2m30s"
    on_multirun_end    (main process)   one summary line; exit 1 if any run failed

Jobs may run in other processes (or on other machines, with slurm), so the state lives in files
under the sweep's folder (hydra.sweep.dir, unique per sweep): `sweep.json` (total, start time) and
one `outcomes/<job number>.json` per finished job. A job's outcome is what `bench.run.main` returns:
done | diverged | invalid | failed | skipped (already finished).

`cores_per_job` gives each parallel job its share of the CPU cores (the most torch threads that
`trainer.threads: 0` may pick), so that workers don't oversubscribe them (OpenMP threads fighting
over cores made runs ~20x slower here).
"""
import json
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback

from bench import machine, stopping, store
from bench.console import launcher_hint, say

OUTCOMES = ("done", "invalid", "diverged", "failed", "skipped")


def job_overrides(config) -> list:
    """Every job's overrides (lists of `key=value`), as the basic sweeper makes them of the preset's
    params and the command line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def count_jobs(config) -> int:
    """How many jobs the basic sweeper makes of the preset's params and the command-line overrides."""
    return len(job_overrides(config))


def varying_keys(jobs: list) -> list:
    """The override keys that take more than one value across the jobs (what a progress line names)."""
    values = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


def check_jobs(config, jobs: list) -> None:
    """Compose jobs of the sweep and check their values (bench.config.check_values) before any job
    starts: a value no run can take (trainer.epochs=-1, a metric the task lacks) is the user's
    mistake, one line on stderr and exit 2, nothing written. Each distinct override is checked in
    the first job that has it (a sweep of 112 jobs composes ~15): a value wrong only in combination
    with another swept value is found when its job runs (recorded `invalid`), as is a pairing that
    makes no sense (BCE on a linear output)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from bench.config import check_values
    from bench.console import message
    from bench.errors import UserError

    loader, covered = GlobalHydra.instance().config_loader(), set()
    for job in jobs:
        if covered.issuperset(job):
            continue
        covered.update(job)
        try:
            cfg = loader.load_sweep_config(config, list(job))
            with open_dict(cfg):
                del cfg["hydra"]
            check_values(cfg)
        except (UserError, OmegaConfBaseException, HydraException) as error:
            if stopping.requested:  # Ctrl-C while composing: the error is what the loader made of it
                raise stopping.requested from None
            print(f"error: {message(error)} (sweep job: {' '.join(job)}); no job was started",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None  # not an Exception: Hydra's callback runner lets it through


def check_launcher(config) -> None:
    """Launcher settings that would fail when it starts (settings given to the basic launcher:
    `+hydra.launcher.n_jobs=2` without hydra/launcher=parallel) or fail every job (n_jobs=abc): refuse
    them first, in one line."""
    launcher = config.hydra.launcher
    problem = None
    target = str(launcher.get("_target_", ""))
    if target.endswith("BasicLauncher"):
        extra = [key for key in launcher if key != "_target_"]
        problem = launcher_hint(extra[0]) if extra else None
    elif "joblib" in target.lower():  # (bench's packing one: hydra_plugins.lossbench_pack.JoblibLauncher)
        n_jobs = launcher.get("n_jobs")
        if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
            problem = (f"hydra.launcher.n_jobs={n_jobs!r} is not allowed; it must be an integer >= 1 (worker "
                       "processes), or -1 for one per core")
    if problem:
        print(f"error: {problem}; no job was started", file=sys.stderr, flush=True)
        raise SystemExit(2)


def duration(seconds: float) -> str:
    """73.2 -> '1m13s'; 3723 -> '1h02m03s'."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def read_outcome(sweep_dir: Path, number: int) -> dict | None:
    """The outcome record of job `number`, None while there is none (or a half-written one: a job
    killed mid-write, whose run is redone on rerun anyway)."""
    try:
        return json.loads((sweep_dir / "outcomes" / f"{number}.json").read_text())
    except (OSError, ValueError):
        return None


def read_outcomes(sweep_dir: Path) -> list:
    found = (read_outcome(sweep_dir, int(path.stem)) for path in sorted((sweep_dir / "outcomes").glob("*.json")))
    return [record for record in found if record is not None]


def summary_line(outcomes: list, total: int, seconds: float) -> str:
    counts = {name: sum(o["outcome"] == name for o in outcomes) for name in OUTCOMES}
    missing = total - len(outcomes)
    parts = ", ".join(f"{counts[name]} {name}" for name in OUTCOMES)
    return (f"sweep finished: {len(outcomes)} of {total} runs: {parts}"
            f"{f', {missing} not reported' if missing > 0 else ''}; wall {duration(seconds)}")


def cores_per_job() -> int:
    """The CPU cores one job may use: all of them, or a parallel worker's share (cores // workers
    under joblib, cpus_per_task under submitit). `trainer.threads: 0` (auto) picks at most this."""
    cores = machine.cores()
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return cores
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", "")).lower()  # (bench's packing launchers: lossbench_pack.JoblibLauncher)
    if "joblib" in target:
        n_jobs = launcher.get("n_jobs") or -1
        workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = one per core
        return max(1, cores // workers)
    if "cpus_per_task" in launcher:  # submitit's launchers (local, slurm), bench.slurm's and bench's packing ones
        return int(launcher.get("cpus_per_task") or 1)
    return cores


def record_outcome(sweep_dir: Path, record: dict) -> None:
    """Store a finished job's outcome record ({job, outcome, ended, overrides, figure}) where the
    sweep's progress lines and its summary read it: outcomes/<job number>.json."""
    target = sweep_dir / "outcomes" / f"{record['job']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(target, json.dumps(record))


def progress_line(sweep_dir: Path, record: dict, finished: int | None = None) -> str | None:
    """The progress line of a recorded job, "sweep: 7/24 loss=bce activation=sigmoid: done, test
    accuracy 0.87 ± 0.01 (5 seeds); elapsed 1m03s, ETA 2m30s" (None without the sweep's facts);
    `finished`: the 7, by default the jobs recorded so far."""
    try:
        facts = json.loads((sweep_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        return None
    total = facts["total"]
    if finished is None:
        finished = len(list((sweep_dir / "outcomes").glob("*.json")))
    elapsed = time.time() - facts["started"]
    eta = elapsed / finished * max(total - finished, 0) if finished else 0.0
    varying = facts.get("varying", [])
    knobs = " ".join(o for o in record["overrides"] if o.partition("=")[0] in varying) or f"job {record['job']}"
    figure = record.get("figure")
    return (f"sweep: {finished}/{total} {knobs}: {record['outcome']}{f', {figure}' if figure else ''}; "
            f"elapsed {duration(elapsed)}, ETA {duration(eta)}")


class SweepProgress(Callback):
    """Overall progress of a sweep and its end-of-sweep summary (see the module docstring)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from bench import store

        check_launcher(config)
        jobs = job_overrides(config)
        check_jobs(config, jobs)  # before anything is written
        sweep_dir = Path(str(config.hydra.sweep.dir))
        (sweep_dir / "outcomes").mkdir(parents=True, exist_ok=True)
        total = len(jobs)
        (sweep_dir / "sweep.json").write_text(json.dumps({"total": total, "started": time.time(),
                                                          "varying": varying_keys(jobs)}))
        stopping.NOW["sweep"] = (sweep_dir, total)  # what SIGTERM's line says was stopped
        group_dir = Path(str(config.results_dir)) / str(config.group)
        for path, files in store.clean_partial(group_dir):
            print(f"sweep: removed partial run folder {path} (an interrupted run; it held: "
                  f"{', '.join(files) or 'nothing'})")
        print(f"sweep: {total} runs -> {group_dir}", flush=True)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        from bench.console import LAST

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        ok = job_return.status == JobStatus.COMPLETED and job_return.return_value in OUTCOMES
        figure = LAST.get("figure") if ok else None
        if not ok and job_return.status != JobStatus.COMPLETED:
            figure = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        record = {"job": int(config.hydra.job.num), "outcome": job_return.return_value if ok else "failed",
                  "ended": time.time(), "overrides": list(config.hydra.overrides.task), "figure": figure}
        sweep_dir = Path(str(config.hydra.sweep.dir))
        record_outcome(sweep_dir, record)
        line = progress_line(sweep_dir, record)
        if line:
            say(line)

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        facts = json.loads((sweep_dir / "sweep.json").read_text())
        outcomes = read_outcomes(sweep_dir)
        print(summary_line(outcomes, facts["total"], time.time() - facts["started"]), flush=True)
        if any(o["outcome"] == "failed" for o in outcomes):
            sys.stdout.flush()
            raise SystemExit(1)
