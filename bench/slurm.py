"""The launcher of `hydra/launcher=slurm`: Hydra's submitit launcher, with every wait bounded.

submitit submits a sweep as one SLURM job array, then learns each job's state from `sacct`, which
needs the cluster's accounting database (slurmdbd). Where there is none (small clusters, the test
cluster of ci/slurm), a job that ends without writing its result (scancel, a time limit, a failing
`setup` line, a lost node) stays UNKNOWN to it, and it waits for that job forever. This launcher
submits the same array (the same executor, parameters and job arguments as submitit's launcher), then
watches the queue itself (`squeue --states=all`) and each job's own result file:

    result file there            the job finished: its outcome is what bench.run.main returned (a
                                 job that raised outside main: `failed`, with the error's last line)
    ended in a failure state     CANCELLED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ... and no
                                 result: `failed` at once, with the state, exit code and its log
    COMPLETED or gone, no result the result file gets RESULT_GRACE_S to appear (a shared filesystem's
                                 cache), then `failed` the same way
    the queue does not answer    for QUEUE_GRACE_S: every job not finished is `failed`

A job reported failed is recorded in the sweep's outcomes (bench.sweep) as a run that crashed is: the
sweep goes on, ends with its summary line and exit 1, and the same command reruns what did not finish
(finished runs are skipped). Each job's progress line is printed here, on the submitting machine, as
its outcome arrives (the job also prints it into its own log). Ctrl-C cancels the array: the sweep
stops as it does on a laptop. Hydra instantiates launchers from the
`hydra_plugins` package only: hydra_plugins/lossbench_slurm names this class there.
"""
import subprocess
import sys
import time
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

from bench import sweep
from bench.console import say

# job states (squeue %T) in which a job may still write its result
WAITING = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING",
                     "STAGE_OUT", "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})
# ended states in which it did not finish (PREEMPTED is not one: a requeued job comes back PENDING)
FAILED = frozenset({"BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT",
                    "REVOKED", "SPECIAL_EXIT"})
RESULT_GRACE_S = 60.0  # a job that left the queue otherwise: how long its result file may take to show, s
QUEUE_GRACE_S = 300.0  # squeue failing this long (the controller unreachable) ends the wait, s
POLL_S = (0.5, 15.0)  # seconds between looks: the first after a change, the most while nothing changes


class SlurmLauncher(SubmititSlurmLauncher):
    """submitit's SLURM launcher whose wait reads the queue and the jobs' files (module docstring)."""

    def launch(self, job_overrides, initial_job_idx):
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        jobs = self._submit(job_overrides, initial_job_idx, sweep_dir)
        array = jobs[0].job_id.split("_")[0]
        numbers = range(initial_job_idx, initial_job_idx + len(jobs))
        try:
            say(f"sweep: {len(jobs)} jobs submitted to slurm as job array {array} (squeue -j {array}); "
                f"their logs in {Path(jobs[0].paths.folder).parent}")
            returns = watch(jobs, list(numbers), [list(o) for o in job_overrides], sweep_dir)
        except KeyboardInterrupt:  # Ctrl-C stops the sweep, as on a laptop: its jobs too (bench.run says so)
            cancel(array)
            raise
        lost = sum(r is None for r in returns)
        if lost:
            say(f"sweep: {lost} slurm job(s) ended before their run finished; rerun the same command to "
                "redo them (finished runs are skipped)")
        return [r if r is not None else failed_return(o) for r, o in zip(returns, job_overrides)]

    def _submit(self, job_overrides, initial_job_idx, sweep_dir):
        """submitit's submission of the sweep's jobs as one array (as BaseSubmititLauncher.launch does it),
        the submitit Jobs in order; sbatch refusing them (a partition, memory or time the cluster cannot
        give) is one line on stderr and exit 2."""
        import contextlib
        import io
        import os

        import submitit
        from hydra.core.singleton import Singleton
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
        from omegaconf import OmegaConf

        params = dict(self.params)
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        arguments = [(list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}",
                      Singleton.get_state()) for i, overrides in enumerate(job_overrides)]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's refusal as well
                return executor.map_array(self, *zip(*arguments))
        except submitit.core.utils.FailedJobError as error:
            said = [line.split("error:", 1)[-1].strip() for line in str(error).splitlines() if line.strip()]
            print(f"error: sbatch refused the sweep's jobs: {'; '.join(said) or error} (check hydra.launcher."
                  "partition, mem_gb, cpus_per_task, gpus_per_task, timeout_min); no job was started",
                  file=sys.stderr, flush=True)
            raise SystemExit(2) from None


def cancel(array: str) -> None:
    """scancel the job array; if that fails, say how to (one line on stderr)."""
    try:
        done = subprocess.run(["scancel", array], capture_output=True, text=True, timeout=30)
        problem = done.stderr.strip() if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    if problem:
        say(f"sweep: could not cancel slurm job array {array} ({problem}); scancel {array} stops it", sys.stderr)


def watch(jobs, numbers, overrides, sweep_dir) -> list:
    """Wait for every job (bounded, see the module docstring); print each one's progress line as it
    ends. Returns, per job, its JobReturn, or None for a job that ended without its run's result
    (recorded `failed` in the sweep's outcomes)."""
    array = jobs[0].job_id.split("_")[0]
    returns, open_jobs = [None] * len(jobs), set(range(len(jobs)))
    ended = numbers[0]  # jobs of the sweep ended so far: those of earlier batches, then these
    gone_since, silent_since, changed = {}, None, time.monotonic()
    while open_jobs:
        states = queue_states(array)
        now = time.monotonic()
        silent_since = None if states is not None else silent_since or now
        for i in sorted(open_jobs):
            job, state = jobs[i], (states or {}).get(jobs[i].job_id)
            lost = None  # what happened to a job that will bring no result
            if Path(job.paths.result_pickle).exists():
                returns[i], record = collect(job, numbers[i], overrides[i], sweep_dir)
            elif states is None:
                if now - silent_since < QUEUE_GRACE_S:
                    continue
                lost = f"was not finished when squeue had not answered for {QUEUE_GRACE_S:.0f} s"
            elif state in WAITING:
                gone_since.pop(i, None)
                continue
            elif state in FAILED:
                lost = f"ended {end_of(job.job_id, state)}"
            elif now - gone_since.setdefault(i, now) >= RESULT_GRACE_S:
                how = f"ended {end_of(job.job_id, state)}" if state else "left the queue"
                lost = f"{how} and no result appeared within {RESULT_GRACE_S:.0f} s"
            else:
                continue
            if lost:
                record = record_lost(job, numbers[i], overrides[i], sweep_dir, lost)
            ended += 1
            say(sweep.progress_line(sweep_dir, record, ended) or f"sweep: job {numbers[i]}: {record['outcome']}")
            open_jobs.discard(i)
            changed = now
        if open_jobs:
            time.sleep(min(POLL_S[1], max(POLL_S[0], (time.monotonic() - changed) / 4)))
    return returns


def queue_states(array: str) -> dict | None:
    """{job id ('12_3'): state} of the array's jobs the controller knows, ended ones included (for its
    MinJobAge); {} when it knows none any more; None when squeue failed (no controller answered)."""
    try:
        listed = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={array}",
                                 "--format=%i %T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return {} if "Invalid job id" in listed.stderr else None
    return dict(line.split()[:2] for line in listed.stdout.splitlines() if len(line.split()) >= 2)


def end_of(job_id: str, state: str | None) -> str:
    """'CANCELLED (signal 15)', 'FAILED (exit code 3)': the job's state with scontrol's ExitCode."""
    try:
        shown = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True,
                               text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        shown = ""
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    state = fields.get("JobState", state) or "in an unknown state"
    code, _, signal = fields.get("ExitCode", "0:0").partition(":")
    detail = f"signal {signal}" if signal not in ("", "0") else f"exit code {code}" if code != "0" else ""
    return f"{state} ({detail})" if detail else state


def collect(job, number: int, overrides: list, sweep_dir: Path) -> tuple:
    """A job with a result file: (its JobReturn, the outcome record the job wrote). A run that crashed
    inside the job is `failed` there already (its JobReturn is made a `failed` outcome: the sweep goes
    on); a job that raised outside bench.run.main (submitit's FailedJobError) is recorded `failed`
    here, with the error's last line, and gives (None, that record)."""
    try:
        job_return = job.results()[0]
    except Exception as error:  # the job's own exception, as submitit re-raises it
        return None, record_lost(job, number, overrides, sweep_dir, f"raised {raised(error)}")
    record = sweep.read_outcome(sweep_dir, number)
    if record is None:  # the job ended before its callback wrote the outcome
        outcome = job_return.return_value if job_return.status == JobStatus.COMPLETED else "failed"
        record = {"job": number, "outcome": outcome, "ended": time.time(), "overrides": overrides, "figure": None}
        sweep.record_outcome(sweep_dir, record)
    if job_return.status != JobStatus.COMPLETED:
        job_return = failed_return(overrides)
    return job_return, record


def record_lost(job, number: int, overrides: list, sweep_dir: Path, what: str) -> dict:
    """Record a job that ended without its run's result as `failed`, with why and where its log is."""
    reason = f"slurm job {job.job_id} {what}; its log: {job.paths.stderr}"
    last = last_line(Path(job.paths.stderr))
    if last:
        reason += f" (last line: {last})"
    record = {"job": number, "outcome": "failed", "ended": time.time(), "overrides": overrides, "figure": reason}
    sweep.record_outcome(sweep_dir, record)
    return record


def raised(error: Exception) -> str:
    """The exception line of a job's traceback as submitit's FailedJobError quotes it (between two
    rules of dashes), or the error's own last line."""
    parts = str(error).split("-" * 22)
    lines = [line.strip() for line in (parts[1] if len(parts) >= 3 else str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def last_line(path: Path, width: int = 160) -> str:
    """The last non-empty line of a log file, cut to `width` characters ('' if none)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:width] if lines else ""


def failed_return(overrides) -> JobReturn:
    """What the sweeper receives for a job whose run did not finish: the outcome `failed`, as
    bench.run.main returns it for a run that crashed (a FAILED JobReturn would end the whole sweep)."""
    job_return = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    job_return.return_value = "failed"
    return job_return
