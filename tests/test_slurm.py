"""A sweep through `hydra/launcher=slurm` against a real single-node SLURM cluster (ci/slurm/start):
the jobs go through the scheduler, the runs land with the basic launcher's numbers, a job cancelled
with scancel is reported and rerun by the same command, a job that fails is reported in bounded time,
a job sbatch refuses is one line, exit 2, and Ctrl-C cancels the sweep's jobs.

The cluster is started here when it is not up (ci/slurm/start is idempotent and shared by concurrent
callers): any machine with Debian's slurm-wlm and munge, as root, runs these tests in `make test`.
Where it cannot start (no slurm, not root) they skip with the reason; under
LOSSBENCH_REQUIRE_SLURM=1 (.ci/run sets it) that is a failure instead.

Evidence that a run went through the scheduler comes from two sides that do not know of each other:
the run's own summary names the SLURM job it ran in (`environment.slurm_job`, from the job's
environment), and the scheduler's job-completion log (slurm.conf's JobCompLoc) lists that job with
its state and node. Which runs share a job is `expected_jobs`: one job per configuration.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import TWO, assert_same_runs, summary_counts, sweep_inline, tidy

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("LOSSBENCH_REQUIRE_SLURM") == "1"
# a CPU job with one core (its torch threads) and a little memory, on the cluster's default partition
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_task=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", "device=cpu"]
BOUND_S = 240  # no sweep here may take longer: a launcher that waits on a lost job fails the test instead


@pytest.fixture(scope="module")
def cluster():
    """{env: os.environ with SLURM_CONF, jobcomp: the scheduler's job-completion log} of the test
    cluster, started if it is not up."""
    started = subprocess.run(["bash", str(ROOT / "ci" / "slurm" / "start")], capture_output=True, text=True,
                             timeout=300)
    if started.returncode != 0:
        reason = ([line for line in started.stderr.splitlines() if line.strip()] or
                  [f"ci/slurm/start exited {started.returncode}"])[-1]
        if REQUIRED:
            pytest.fail(f"LOSSBENCH_REQUIRE_SLURM=1, but {reason}")
        pytest.skip(reason)
    conf = Path(os.environ.get("LOSSBENCH_SLURM_DIR", "/tmp/lossbench-slurm")) / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    shown = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True,
                           timeout=30, check=True).stdout
    jobcomp = next(line.split("=", 1)[1].strip() for line in shown.splitlines() if line.startswith("JobCompLoc"))
    return {"env": env, "jobcomp": Path(jobcomp)}


def slurm_sweep(tmp_path, cluster, *args, **popen):
    """`python -m bench.run -m` the TWO sweep (plus args) through the slurm launcher, run in tmp_path
    with results in tmp_path/results: the Popen (text output)."""
    command = [sys.executable, "-m", "bench.run", "-m", f"results_dir={tmp_path / 'results'}", *TWO, *ON_SLURM, *args]
    return subprocess.Popen(command, cwd=tmp_path, env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finish(process) -> subprocess.CompletedProcess:
    """Wait (at most BOUND_S) for a sweep process; a sweep still running then is a hang: killed, failed."""
    try:
        out, err = process.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the sweep did not end within {BOUND_S} s (a wait on a lost job?):\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def scheduler_record(cluster, jobs=()) -> dict:
    """{job id as squeue names it ('12_3', or '57'): its fields} from the scheduler's job-completion log,
    once it lists every one of `jobs` (a job's result file can be there a moment before the scheduler
    logs its end)."""
    deadline = time.monotonic() + 60
    while True:
        records = {}
        for line in cluster["jobcomp"].read_text().splitlines():
            fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
            if fields.get("ArrayJobId"):
                records[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = fields
            elif fields.get("JobId"):
                records[fields["JobId"]] = fields
        if set(jobs) <= set(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def slurm_jobs_of(tmp_path) -> dict:
    """{SLURM job: sorted run ids it trained}, from the runs' own summaries."""
    jobs = {}
    for summary in (tmp_path / "results" / "default").glob("*/summary.json"):
        record = json.loads(summary.read_text())
        jobs.setdefault(record["environment"]["slurm_job"], []).append(record["run_id"])
    return {job: sorted(runs) for job, runs in jobs.items()}


def expected_jobs(run_ids) -> list:
    """Which runs share one SLURM job: today one job per configuration."""
    return sorted([run_id] for run_id in run_ids)


def running_job(tmp_path, cluster) -> str:
    """The first of this sweep's jobs (those started from tmp_path) that the scheduler reports RUNNING."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T|%Z"], env=cluster["env"],
                                capture_output=True, text=True, timeout=30).stdout
        for line in listed.splitlines():
            job, state, workdir = line.split("|")
            if state == "RUNNING" and Path(workdir) == tmp_path:
                return job
        time.sleep(0.1)
    pytest.fail(f"no job of the sweep in {tmp_path} ran within {BOUND_S} s")


@pytest.mark.slow
def test_a_slurm_sweep_equals_the_basic_one_and_a_cancelled_job_is_reported_then_rerun(tmp_path, cli_inline, cluster):
    reference = sweep_inline(cli_inline, tmp_path / "basic", *TWO, "device=cpu")  # the basic launcher, here
    assert reference.returncode == 0, reference.stdout + reference.stderr

    # the sweep through slurm; its first job to run is cancelled with scancel while it runs
    process = slurm_sweep(tmp_path, cluster)
    cancelled = running_job(tmp_path, cluster)
    subprocess.run(["scancel", cancelled], env=cluster["env"], check=True, timeout=30)
    first = finish(process)
    assert first.returncode == 1, first.stdout + first.stderr  # a run did not finish
    assert summary_counts(first.stdout) == {"done": 1, "invalid": 0, "diverged": 0, "failed": 1, "skipped": 0}
    report = [line for line in first.stdout.splitlines() if f"slurm job {cancelled} " in line]
    assert len(report) == 1 and ": failed, " in report[0] and "ended CANCELLED" in report[0], first.stdout
    assert "rerun the same command" in first.stdout
    assert scheduler_record(cluster, [cancelled])[cancelled]["JobState"] == "CANCELLED"

    # the same command again: the finished run is skipped, the cancelled one trained
    again = finish(slurm_sweep(tmp_path, cluster))
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_counts(again.stdout) == {"done": 1, "invalid": 0, "diverged": 0, "failed": 0, "skipped": 1}

    # every run went through the scheduler: its summary names its job, the scheduler's log has that job
    # completed on this node, and the runs share jobs as expected
    jobs = slurm_jobs_of(tmp_path)
    assert sorted(jobs.values()) == expected_jobs(tidy(tmp_path / "results")[0]["run_id"].unique())
    assert cancelled not in jobs
    scheduler = scheduler_record(cluster, jobs)
    node = socket.gethostname().split(".")[0]
    for job in jobs:
        assert scheduler[job]["JobState"] == "COMPLETED" and scheduler[job]["NodeList"] == node, scheduler.get(job)

    # and the numbers are the basic launcher's (one torch thread: cpus_per_task=1)
    assert_same_runs(tmp_path / "results", tmp_path / "basic" / "results", cores=1)


@pytest.mark.slow
def test_a_job_that_fails_before_its_run_is_reported_in_bounded_time(tmp_path, cluster):
    """Each job's setup line fails (as a broken `source venv/bin/activate && ...` would): the batch script
    exits 3 before Python starts, so no job writes a result and sacct (no accounting here) never
    tells submitit; the sweep still ends, each job reported with its state and exit code."""
    failed = finish(slurm_sweep(tmp_path, cluster, "hydra.launcher.setup=[exit 3]"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert summary_counts(failed.stdout) == {"done": 0, "invalid": 0, "diverged": 0, "failed": 2, "skipped": 0}
    reports = [line for line in failed.stdout.splitlines() if "ended FAILED (exit code 3)" in line]
    assert len(reports) == 2 and all(": failed, slurm job " in line for line in reports), failed.stdout
    jobs = [line.split("slurm job ", 1)[1].split()[0] for line in reports]
    scheduler = scheduler_record(cluster, jobs)
    for job in jobs:
        assert scheduler[job]["JobState"] == "FAILED" and scheduler[job]["ExitCode"] == "3:0"
    assert not list((tmp_path / "results" / "default").glob("*/summary.json"))  # nothing ran


@pytest.mark.slow
def test_jobs_sbatch_refuses_are_one_line_exit_2(tmp_path, cli_inline, monkeypatch, cluster):
    """More memory than the node has: sbatch refuses the array; one line names why, no job runs (the
    controller logs the refused array as a job that FAILED on no node). In this process: sbatch answers
    at once, there is no wait to bound."""
    monkeypatch.setenv("SLURM_CONF", cluster["env"]["SLURM_CONF"])
    refused = sweep_inline(cli_inline, tmp_path, *TWO, *ON_SLURM, "hydra.launcher.mem_gb=1000000")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sbatch refused the sweep's jobs: "), refused.stderr
    assert "Memory specification can not be satisfied" in lines[0]
    assert "jobs submitted" not in refused.stdout
    ours = [fields for fields in scheduler_record(cluster).values() if fields.get("WorkDir") == str(tmp_path)]
    assert all(fields["NodeList"] == "(null)" for fields in ours), ours


@pytest.mark.slow
def test_ctrl_c_cancels_the_jobs_in_one_line_exit_130(tmp_path, cluster):
    process = slurm_sweep(tmp_path, cluster, "trainer.epochs=50",
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = ""
    while "jobs submitted to slurm as job array" not in line:  # printed once the launcher waits
        line = process.stdout.readline()
        assert line or process.poll() is None, process.stderr.read()
    array = line.split("job array ", 1)[1].split()[0]
    process.send_signal(signal.SIGINT)
    interrupted = finish(process)
    assert interrupted.returncode == 130, interrupted.stdout + interrupted.stderr
    assert interrupted.stderr.strip().splitlines() == [
        "interrupted; finished runs are kept, rerun the same command to resume"]
    # the scheduler's view (jobs cancelled before they started never reach the job-completion log),
    # once the cancelled jobs' processes are gone (COMPLETING until then)
    deadline = time.monotonic() + 60
    while True:
        listed = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={array}",
                                 "--format=%i %T"], env=cluster["env"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.split("\n")[:-1]
        if "COMPLETING" not in " ".join(listed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(listed) == [f"{array}_0 CANCELLED", f"{array}_1 CANCELLED"], listed
