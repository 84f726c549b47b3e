"""Sweeps: every launcher gives the same runs; a sweep killed (SIGKILL) at several points, including
mid-write, resumes to every run finished exactly once; two concurrent sweeps over one results folder
train each run once; the presets compose; and the saturation preset shows the textbook result.

Sweeps that are killed, interrupted, run concurrently or by another launcher run as real `python -m
bench.run -m ...` processes; a sweep whose process does not matter (a rerun, the basic launcher's
reference) runs the same CLI entry in this process (conftest `cli_inline`), which saves a start-up.
The kill points inside a write are placed by a wrapper around `bench.store.write_atomic` that sends
SIGKILL to its own process at the n-th write (after writing half of the temp file, or all of it before
the rename); everything else is the real code path.
"""
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from bench import store

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (ROOT / "conf" / "sweep").glob("*.yaml"))
# 2 jobs, both valid: moons x {mse, bce} x sigmoid (a submitit job is a process of its own: 2, not 4)
TWO = ["dataset=moons", "loss=mse,bce", "activation=sigmoid", "seeds=[0,1]", "trainer.epochs=2", "progress=false"]
METRICS = ["loss", "accuracy", "binary_accuracy", "out_grad"]


def sweep(tmp_path, *args, timeout=600, env=None):
    """Run `python -m bench.run -m ARGS` in tmp_path with results in tmp_path/results."""
    return subprocess.run([sys.executable, "-m", "bench.run", "-m", f"results_dir={tmp_path / 'results'}",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout, env=env)


def sweep_inline(cli_inline, tmp_path, *args):
    """The same sweep in this process (bench.run's CLI entry, Hydra and its basic launcher): a
    CompletedProcess-like (returncode, stdout, stderr)."""
    code, out, err = cli_inline(["-m", f"results_dir={tmp_path / 'results'}", *args], exact=True)
    return subprocess.CompletedProcess(args, code, out, err)


def summary_counts(stdout) -> dict:
    """{'done': n, 'invalid': n, ...} from the sweep's last line."""
    line = [l for l in stdout.splitlines() if l.startswith("sweep finished:")][-1]
    counts = line.split(": ", 2)[2].split(";")[0]
    return {name: int(n) for n, name in (part.split() for part in counts.split(", "))}


def tidy(results):
    runs, history = store.load(results)
    runs = runs.sort_values(["run_id", "seed"]).reset_index(drop=True)
    history = history.sort_values(["run_id", "seed", "epoch", "split"]).reset_index(drop=True)
    return runs, history


# ---------------------------------------------------------------------------------------------
# launchers

@pytest.mark.parametrize("launcher, cores", [
    pytest.param("parallel", max(1, len(os.sched_getaffinity(0)) // 2), id="joblib-2-workers"),
    pytest.param("local", 1, id="submitit-local"),  # cpus_per_task: 1
])
@pytest.mark.slow
def test_every_launcher_gives_the_same_runs_and_metrics(tmp_path, cli_inline, launcher, cores):
    basic = tmp_path / "basic"  # the basic launcher's runs, the reference (in this process)
    result = sweep_inline(cli_inline, basic, *TWO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == {"done": 2, "invalid": 0, "diverged": 0, "failed": 0, "skipped": 0}
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "parallel" else []
    result = sweep(tmp_path, *TWO, f"hydra/launcher={launcher}", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout)["done"] == 2
    if launcher == "parallel":  # (submitit jobs print into their own log files, not this terminal)
        progress = [l for l in result.stdout.splitlines() if l.startswith("sweep: ") and "/2 " in l]
        assert len(progress) == 2 and all(": done, test accuracy " in l for l in progress), result.stdout
    assert_same_runs(tmp_path / "results", basic / "results", cores)
    assert len(set(tidy(tmp_path / "results")[0]["run_id"])) == 2


def assert_same_runs(results: Path, reference: Path, cores: int) -> None:
    """The runs under `results` are those under `reference` (the basic launcher's): the same run ids,
    all done, test metrics and curves within 1e-5; and no job used more torch threads than `cores`, its
    share (recorded in the summary)."""
    runs, history = tidy(results)
    base_runs, base_history = tidy(reference)
    assert list(runs["run_id"]) == list(base_runs["run_id"])
    assert (runs["status"] == "done").all()
    tests = [c for c in runs if c.startswith("test_")]
    np.testing.assert_allclose(runs[tests].to_numpy(float), base_runs[tests].to_numpy(float), rtol=0, atol=1e-5)
    assert list(history["step"]) == list(base_history["step"])
    np.testing.assert_allclose(history[METRICS].to_numpy(float), base_history[METRICS].to_numpy(float),
                               rtol=0, atol=1e-5, equal_nan=True)
    for rid in runs["run_id"].unique():
        summary = store.read_summary(results / "default" / rid)
        assert 1 <= summary["environment"]["threads"] <= cores


# ---------------------------------------------------------------------------------------------
# crash safety: SIGKILL at several points, then resume

KILLER = """
import os, signal, sys
from bench import store

at, phase = int(os.environ["KILL_AT_WRITE"]), os.environ["KILL_PHASE"]
calls, original = 0, store.write_atomic


def write_atomic(path, write):
    global calls
    calls += 1
    if calls != at:
        return original(path, write)

    def dying(tmp):
        write(tmp)
        if phase == "mid-write":  # half the bytes are on disk when the process dies
            os.truncate(tmp, os.path.getsize(tmp) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    return original(path, dying)


store.write_atomic = write_atomic
sys.argv = ["bench.run", *sys.argv[1:]]
from bench.run import cli
cli()
"""

# moons x {mse, bce, cce} x {sigmoid, softmax}: 5 valid runs (3 writes each) + cce on sigmoid, invalid;
# one job per run, in order (a packed sweep's kill: tests/test_pack.py)
GRID = ["dataset=moons", "loss=mse,bce,cce", "activation=sigmoid,softmax", "seeds=[0,1]",
        "trainer.epochs=2", "trainer.threads=1", "progress=false", "pack.enabled=false"]


def check_store(results, finished_before):
    """Every finished run is whole and readable, nothing partial is loaded, and a run finished
    earlier was not written again. Returns {run_id: summary mtime} of the finished runs now."""
    group = results / "default"
    finished = {}
    for folder in sorted(p for p in group.iterdir() if not p.name.startswith(".")):
        if not store.is_finished(folder):
            continue
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["run_id"] == folder.name
        yaml.safe_load((folder / "config.yaml").read_text())
        if summary["status"] == "done":
            history = pd.read_parquet(folder / "history.parquet")
            assert len(history) == 2 * 3 * 2  # seeds x evaluations (epochs 0..2) x splits
        assert not list(folder.glob(".*.tmp"))
        finished[folder.name] = (folder / "summary.json").stat().st_mtime_ns
    for rid, stamp in finished_before.items():
        assert finished.get(rid) == stamp, f"run {rid} was finished, then written again"
    runs, history = store.load(results)
    assert set(runs["run_id"]) == set(finished)
    assert not runs.duplicated(["run_id", "seed"]).any()
    if len(history):
        assert not history.duplicated(["run_id", "seed", "epoch", "split"]).any()
    return finished


def killed_sweep(tmp_path, at, phase):
    env = {**os.environ, "KILL_AT_WRITE": str(at), "KILL_PHASE": phase}
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    return subprocess.run([sys.executable, str(script), "-m", f"results_dir={tmp_path / 'results'}", *GRID],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun_finishes_every_run_exactly_once(tmp_path, cli_inline):
    results = tmp_path / "results"
    finished = {}
    # 1: killed mid-write of the first run's history.parquet (write 2: config, history, summary)
    result = killed_sweep(tmp_path, 2, "mid-write")
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    finished = check_store(results, finished)
    assert finished == {} and len(store.partial_runs(results / "default")) == 1
    # 2: the rerun redoes run 1, then dies with run 2's summary.json written but not yet renamed
    result = killed_sweep(tmp_path, 6, "before-rename")
    assert result.returncode == -signal.SIGKILL
    assert "removed partial run folder" in result.stdout
    finished = check_store(results, finished)
    assert len(finished) == 1 and len(store.partial_runs(results / "default")) == 1
    # 3: killed from outside at a random moment after the third job ended
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "-m", f"results_dir={results}", *GRID],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("sweep: 3/6"):
            break
    delay = random.uniform(0.0, 1.0)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = check_store(results, finished)
    assert len(finished) >= 2, f"killed {delay:.2f} s after job 3"
    # 4: the rerun finishes the rest; 5: another rerun has nothing left to do (both in this process)
    result = sweep_inline(cli_inline, tmp_path, *GRID)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = summary_counts(result.stdout)
    assert counts["failed"] == 0 and counts["done"] + counts["invalid"] == 6 - counts["skipped"]
    finished = check_store(results, finished)
    assert store.partial_runs(results / "default") == []
    runs, _ = store.load(results)
    statuses = runs.drop_duplicates("run_id")["status"].value_counts().to_dict()
    assert statuses == {"done": 5, "invalid": 1}
    again = sweep_inline(cli_inline, tmp_path, *GRID)
    assert summary_counts(again.stdout) == {"done": 0, "invalid": 0, "diverged": 0, "failed": 0, "skipped": 6}
    check_store(results, finished)


# ---------------------------------------------------------------------------------------------
# two sweeps at once on one results folder

@pytest.mark.slow
def test_two_concurrent_sweeps_with_overlapping_grids_train_each_run_once(tmp_path):
    common = ["dataset=moons", "activation=auto", "seeds=[0,1]", "trainer.epochs=3", "trainer.threads=1",
              "progress=false", f"results_dir={tmp_path / 'results'}"]
    grids = [["loss=mse,mae,huber,bce"], ["loss=bce,huber,mae,cce"]]  # overlap: mae, huber, bce
    procs = [subprocess.Popen([sys.executable, "-m", "bench.run", "-m", *common, *grid], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for grid in grids]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out + err
    counts = [summary_counts(out) for out, _ in outputs]
    assert counts[0]["done"] + counts[1]["done"] == 5  # mse, mae, huber, bce, cce: each trained once
    assert counts[0]["skipped"] + counts[1]["skipped"] == 3  # the overlap, found finished by the other
    runs, history = store.load(tmp_path / "results")
    assert sorted(runs.drop_duplicates("run_id")["loss"]) == ["bce", "cce", "huber", "mae", "mse"]
    assert (runs["status"] == "done").all() and len(runs) == 5 * 2
    assert not history.duplicated(["run_id", "seed", "epoch", "split"]).any()


# ---------------------------------------------------------------------------------------------
# presets

@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_opens_with_its_command(make_config, preset):
    text = (ROOT / "conf" / "sweep" / f"{preset}.yaml").read_text()
    assert f"python -m bench.run -m sweep={preset}" in text.splitlines()[1]
    assert "Question:" in text
    params = OmegaConf.load(ROOT / "conf" / "sweep" / f"{preset}.yaml").hydra.sweeper.params
    # every value of every swept group exists, so the sweep composes job by job
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=[f"sweep={preset}"])
        assert cfg.group == preset
        first = {key: str(values).split(",")[0] for key, values in params.items()}
        for key, values in params.items():
            for value in str(values).split(","):
                job = {**first, key: value}
                compose("config", overrides=[f"sweep={preset}", *(f"{k}={v}" for k, v in job.items())])


def test_preset_job_count_follows_the_command_line(tmp_path):
    from hydra import compose, initialize_config_dir

    from bench.sweep import count_jobs

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["sweep=classification"], return_hydra_config=True)
    assert count_jobs(cfg) == 4 * 3 * 5  # datasets x activations x losses
    cfg.hydra.overrides.task = ["sweep=classification", "loss=mse,bce"]  # the command line wins
    assert count_jobs(cfg) == 4 * 3 * 2


@pytest.mark.slow
def test_invalid_combinations_are_recorded_with_their_reason_and_the_sweep_goes_on(tmp_path, cli_inline):
    result = sweep_inline(cli_inline, tmp_path, "dataset=moons", "activation=linear", "loss=bce,mse", "seeds=[0]",
                   "trainer.epochs=1", "trainer.threads=1", "progress=false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_counts(result.stdout) == {"done": 1, "invalid": 1, "diverged": 0, "failed": 0, "skipped": 0}
    runs, _ = store.load(tmp_path / "results")
    invalid = runs[runs.status == "invalid"].iloc[0]
    assert invalid["loss"] == "bce" and "activation=sigmoid or softmax" in invalid["reason"]
    assert not (tmp_path / "results" / "default" / invalid["run_id"] / "history.parquet").exists()
    # quiet: one progress line per finished run (its varying knob, status, main figure, ETA), no Hydra lines
    assert "[HYDRA]" not in result.stdout and "#0 :" not in result.stdout
    lines = [l for l in result.stdout.splitlines() if l.startswith("sweep: ") and "/2 " in l]
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("sweep: 1/2 loss=bce: invalid, invalid pairing task=binary activation=linear")
    done = runs[runs.status == "done"].iloc[0]
    assert lines[1].startswith(f"sweep: 2/2 loss=mse: done, test accuracy {done['test_accuracy']:.4g} ± 0 (1 seeds); ")
    assert "ETA 0s" in lines[1]


# ---------------------------------------------------------------------------------------------
# Ctrl-C: one line, exit 130, for a run and every launcher; finished runs kept, the rerun resumes

INTERRUPTED = "interrupted; finished runs are kept, rerun the same command to resume"


def like_a_terminal():
    """In the child before exec: SIGINT handled as in a terminal. A shell's background job (`cmd &`
    without job control, as a CI script may start the suite) ignores SIGINT, and an ignored signal stays
    ignored across exec, so Python would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(tmp_path, args):
    """`python -m bench.run ARGS` in its own process group, as a terminal would start it."""
    return subprocess.Popen([sys.executable, "-m", "bench.run", *args, f"results_dir={tmp_path / 'results'}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=like_a_terminal)


def ctrl_c(proc):
    """SIGINT to the whole group (what Ctrl-C in a terminal does): (exit code, stdout, stderr). A group
    that outlives the test is killed, so a failure leaves no training job behind."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def interrupt(tmp_path, args, ready):
    """Start `python -m bench.run ARGS` (`start`), wait until `ready(line)` is true for a stdout line,
    then Ctrl-C it (`ctrl_c`)."""
    proc = start(tmp_path, args)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready(line):
            break
    time.sleep(0.5)  # inside the next run's training
    code, out, err = ctrl_c(proc)
    return code, "".join(seen) + out, err


LONG_RUN = ["dataset=moons", "seeds=[0]", "trainer.threads=1", "progress=false"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "parallel"])
def test_ctrl_c_in_a_sweep_is_one_line_exit_130_and_the_rerun_resumes(tmp_path, cli_inline, launcher):
    # job 0: 1 epoch (finishes), job 1: 100000 epochs (interrupted while it trains)
    grid = ["-m", *LONG_RUN, "trainer.epochs=1,100000"]
    extra = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"] if launcher == "parallel" else []
    code, out, err = interrupt(tmp_path, grid + extra, lambda line: line.startswith("sweep: 1/2"))
    assert code == 130, out + err
    assert err.strip().splitlines() == [INTERRUPTED] and "Traceback" not in out + err
    results = tmp_path / "results"
    runs, _ = store.load(results)
    assert list(runs["status"]) == ["done"]  # the finished run (1 epoch) is kept
    # the rerun: the finished run is skipped, the interrupted one left nothing half-written behind
    again = sweep_inline(cli_inline, tmp_path, *LONG_RUN, "trainer.epochs=1")
    assert summary_counts(again.stdout)["skipped"] == 1, again.stdout + again.stderr
    assert store.partial_runs(results / "default") == []


@pytest.mark.slow
def test_ctrl_c_in_a_single_run_is_one_line_exit_130(tmp_path):
    lock = tmp_path / "results" / "default" / ".locks"
    proc = start(tmp_path, [*LONG_RUN, "trainer.epochs=100000"])
    deadline = time.time() + 120
    while not list(lock.glob("*.lock")) and time.time() < deadline:  # the run holds its lock: training
        time.sleep(0.2)
    time.sleep(1.0)
    code, out, err = ctrl_c(proc)
    assert code == 130 and err.strip().splitlines() == [INTERRUPTED], out + err
    assert store.load(tmp_path / "results")[0].empty and store.partial_runs(tmp_path / "results" / "default") == []


LEAKED_SEMAPHORE = """
import os
from joblib.externals.loky.backend.synchronize import Lock
lock = Lock()  # a named semaphore, registered with loky's resource tracker (a process of its own)
os._exit(0)    # gone without releasing it, as a parallel sweep stopped by Ctrl-C
"""


def test_ctrl_c_in_a_parallel_sweep_hides_lokys_cleanup_warning(cli_inline, monkeypatch):
    """The tracker warns at exit that it cleans up the semaphore ("There appear to be 1 leaked semlock
    objects"), after the sweep's one line: bench.run filters that warning for its child processes, and
    keeps the user's own filters."""
    monkeypatch.setenv("PYTHONWARNINGS", "default::DeprecationWarning")  # restored after the test

    def tracker_says(env):
        return subprocess.run([sys.executable, "-c", LEAKED_SEMAPHORE], capture_output=True, text=True,
                              env=env, timeout=120).stderr

    assert "leaked semlock" in tracker_says(dict(os.environ))  # the warning, as loky gives it
    code, _, err = cli_inline(["--cfg", "job"], exact=True)  # any command: the filter is set before Hydra
    assert code == 0, err
    assert os.environ["PYTHONWARNINGS"].startswith("default::DeprecationWarning,")
    assert tracker_says(dict(os.environ)) == ""


def test_results_table_ranks_runs_by_the_test_metric(tmp_path, capsys):
    from bench.results import main

    results = tmp_path / "results"
    # a trained run's files: its history too (the table reads the summaries; a run without its history
    # is damaged and left out)
    history = pd.DataFrame({"seed": [0, 2], "epoch": [0, 0], "split": ["val", "val"], "accuracy": [0.5, 0.5]})
    for rid, accuracy in (("aaaaaaaaaaaa", 0.7), ("bbbbbbbbbbbb", 0.9)):
        summary = {"run_id": rid, "group": "g", "status": "done", "reason": None, "dataset": "moons",
                   "task": "binary", "model": "mlp", "activation": "sigmoid",
                   "loss": "bce" if accuracy > 0.8 else "mse", "optimizer": "sgd", "lr": 0.1,
                   "metric": "accuracy", "higher_is_better": True, "target": 0.8,
                   "per_seed": [{"seed": s, "status": "done", "test": {"accuracy": accuracy + s / 100},
                                 "epochs_to_target": 3 + s if accuracy > 0.8 else None} for s in (0, 2)]}
        store.save_run(results / "g" / rid, "a: 1\n", history, summary)
    # a tuned run: lr 1 chosen from [0.01, 0.1, 1] (the grid's edge); its members at 0.01 score higher
    # on test but are not chosen, so they are not its figures
    members = [{"seed": s, "lr": lr, "chosen": lr == 1.0, "status": "done",
                "test": {"accuracy": 0.8 + s / 100 + (0.15 if lr == 0.01 else 0)}, "epochs_to_target": 5}
               for lr in (0.01, 0.1, 1.0) for s in (0, 2)]
    store.save_run(results / "g" / "cccccccccccc", "a: 1\n", history, {
        "run_id": "cccccccccccc", "group": "g", "status": "done", "reason": None, "dataset": "moons",
        "task": "binary", "model": "mlp", "activation": "linear", "loss": "mse", "optimizer": "sgd", "lr": 1.0,
        "lr_grid": [0.01, 0.1, 1.0], "chosen_lr": 1.0, "metric": "accuracy", "higher_is_better": True,
        "target": 0.8, "per_seed": members})
    assert main([str(results)]) == 0
    out = capsys.readouterr().out
    ranked = [l.split() for l in out.splitlines() if l.strip()[:1].isdigit()]
    assert [row[1] for row in ranked] == ["sigmoid+bce", "linear+mse", "sigmoid+mse"]
    # mean, std, lr (fixed: no grid), verdict against the canonical sigmoid+bce, median epochs to target, reached
    assert ranked[0][2:9] == ["0.91", "±", "0.014", "0.1", "fixed", "canonical", "4"] and ranked[0][9] == "2/2"
    # the chosen lr's seeds, at the edge; 0.1 below sigmoid+bce on both seeds (no spread: p = 0)
    assert ranked[1][2:9] == ["0.81", "±", "0.014", "1*", "worse", "5", "2/2"]
    assert ranked[2][-2:] == ["never", "0/2"]  # tables.time_to_target: the median seed never reached it
    assert "* 1 chosen at the edge of the grid" in out
    assert main([str(tmp_path / "nope")]) == 2


# ---------------------------------------------------------------------------------------------
# the saturation preset: BCE learns fast from a saturated sigmoid output, MSE does not

@pytest.mark.slow
def test_saturation_preset_bce_reaches_the_target_sooner_and_out_grad_says_why(make_config):
    import torch.nn.functional as F

    from bench.datasets import load_dataset
    from bench.models import build_model
    from bench.run import run
    from bench.train import train_curve_rows

    preset = OmegaConf.load(ROOT / "conf" / "sweep" / "saturation.yaml").hydra.sweeper.params
    levels = sorted(float(s) for s in str(preset["model.out_bias_offset"]).split(","))
    assert levels[0] == 0 and len(levels) >= 3  # unsaturated, and saturated at more than one level
    fixed = [f"{key}={value}" for key, value in preset.items() if "," not in str(value)]  # dataset...
    small = ["sweep=saturation", *fixed, f"model.out_bias_offset={levels[-1]}", "seeds=[0,1,2]",
             "trainer.epochs=8", "trainer.threads=1"]
    summaries = {loss: run(make_config(*small, f"loss={loss}")) for loss in ("mse", "bce")}
    for loss, summary in summaries.items():
        assert summary["activation"] == "sigmoid" and summary["optimizer"] == "sgd"
    bce = [s["epochs_to_target"] for s in summaries["bce"]["per_seed"]]
    mse = [s["epochs_to_target"] for s in summaries["mse"]["per_seed"]]
    assert all(e is not None for e in bce), bce
    assert all(m is None or m > b for b, m in zip(bce, mse)), (bce, mse)
    # out_grad at epoch 0 (same seeds, so the same saturated initial outputs for both losses),
    # against torch's own losses: BCE's gradient is (p - y), MSE's is 2 (p - y) p (1 - p) ~ 0
    cfg = make_config(*small)
    data = load_dataset(cfg.dataset, [0, 1, 2])
    splits = [data.replicate(r) for r in range(3)]  # each seed its own split
    rows = train_curve_rows(len(splits[0].x_train), len(splits[0].x_val))  # the train curves' rows (as many as val)
    assert len(rows) == len(splits[0].x_val) < len(splits[0].x_train)
    x = torch.stack([split.x_train[rows] for split in splits])  # [K, N, F]
    model = build_model(cfg.model, data.input_shape, data.n_classes, [0, 1, 2])
    with torch.no_grad():
        z = model(x)  # [K, N, C]
    z.requires_grad_(True)
    y = torch.stack([F.one_hot(split.y_train[rows], data.n_classes).float() for split in splits])
    references = {
        "bce": F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(-1),
        "mse": F.mse_loss(torch.sigmoid(z), y, reduction="none").mean(-1),
    }
    out_grad = {}
    for loss, per_example in references.items():
        (grad,) = torch.autograd.grad(per_example.sum(), z)
        expected = grad.abs().mean((-2, -1))  # [K]
        path = store.run_dir(cfg.results_dir, "saturation", summaries[loss]["run_id"])
        history = pd.read_parquet(path / "history.parquet")
        start = history[(history.epoch == 0) & (history.split == "train")].sort_values("seed")
        np.testing.assert_allclose(start["out_grad"], expected.detach().numpy(), rtol=1e-4)
        out_grad[loss] = start["out_grad"].to_numpy()
    p = torch.sigmoid(z.detach())
    # sigmoid'(z) = p (1 - p) is 0.25 at z = 0; the offset output bias starts it far below that
    assert (p * (1 - p)).mean().item() < 0.25 / 20
    assert (out_grad["mse"] < 0.01 * out_grad["bce"]).all(), out_grad
    # the offset saturates the outputs only: the output weights, which carry the output gradient back
    # to the hidden layers, are those of the unsaturated model
    plain = build_model(make_config(*small, "model.out_bias_offset=0").model, data.input_shape, data.n_classes,
                        [0, 1, 2])
    torch.testing.assert_close(model.outs[0].weight, plain.outs[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(model.outs[0].bias, plain.outs[0].bias + levels[-1], rtol=0, atol=1e-6)


def test_a_line_is_printed_in_one_write():
    """Parallel workers share one terminal: a line and its newline in two writes let another worker's
    line run into it (seen: "... ETA 19ssweep: 2/2 ...")."""
    from bench.console import say

    class Writes(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            self.append("<flush>")

    out = Writes()
    say("sweep: 1/2 loss=bce: done", out)
    assert out == ["sweep: 1/2 loss=bce: done\n", "<flush>"]


# ---------------------------------------------------------------------------------------------
# finished means finished here and everywhere: a machine's refusal is retried; a damaged run is redone

def test_a_device_this_machine_lacks_is_failed_and_retried_never_a_finished_run(tmp_path, cli_inline):
    """`-m device=cpu,mps` on a machine without mps (every Linux machine): the mps run is recorded `failed`
    with the reason, so the same results folder on a machine that has the device (a cluster's shared
    disk) trains it; here the rerun retries it again instead of skipping it."""
    import torch

    assert not torch.backends.mps.is_available()
    grid = ["dataset=moons", "device=cpu,mps", "seeds=[0]", "trainer.epochs=1", "trainer.threads=1", "progress=false"]
    first = sweep_inline(cli_inline, tmp_path, *grid)
    assert first.returncode == 1, first.stdout + first.stderr  # a failed run: the sweep did not complete
    assert summary_counts(first.stdout) == {"done": 1, "invalid": 0, "diverged": 0, "failed": 1, "skipped": 0}
    runs, _ = store.load(tmp_path / "results")
    refused = runs[runs["status"] == "failed"].iloc[0]
    assert refused["reason"].startswith("device=mps is not available on this machine")
    again = sweep_inline(cli_inline, tmp_path, *grid)
    assert summary_counts(again.stdout) == {"done": 0, "invalid": 0, "diverged": 0, "failed": 1, "skipped": 1}


def test_a_sweep_redoes_a_damaged_run_and_skips_the_whole_one(tmp_path, cli_inline):
    grid = ["dataset=moons", "loss=mse,bce", "seeds=[0]", "trainer.epochs=1", "trainer.threads=1", "progress=false"]
    assert sweep_inline(cli_inline, tmp_path, *grid).returncode == 0
    runs, _ = store.load(tmp_path / "results")
    damaged = tmp_path / "results" / "default" / runs[runs["loss"] == "bce"]["run_id"].iloc[0]
    os.truncate(damaged / "summary.json", 100)
    again = sweep_inline(cli_inline, tmp_path, *grid)
    assert again.returncode == 0 and "Traceback" not in again.stdout + again.stderr, again.stdout + again.stderr
    assert summary_counts(again.stdout) == {"done": 1, "invalid": 0, "diverged": 0, "failed": 0, "skipped": 1}
    assert f"removed damaged run folder {damaged} (summary.json is not valid JSON" in again.stdout
    assert sorted(store.load(tmp_path / "results")[0].drop_duplicates("run_id")["status"]) == ["done", "done"]


# ---------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: one line, a clean exit, every launcher, every time

def start_sweep(tmp_path, grid, launcher):
    extra = {"basic": [], "parallel": ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
             "local": ["hydra/launcher=local"]}[launcher]
    return start(tmp_path, ["-m", *LONG_RUN, grid, *extra])


def wait_for(proc, ready) -> list:
    """stdout lines of `proc` up to the first for which ready(line) is true (all of them if none is)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ready(line):
            break
    return seen


@pytest.mark.slow
def test_ctrl_c_in_a_parallel_sweep_ten_times_is_one_line_and_a_clean_exit_every_time(tmp_path):
    """Ten Ctrl-Cs, each at another moment: while Hydra composes the jobs, as the workers start, while
    a job trains, just after a job ended. Every time: exit 130, the one line and nothing else on stderr
    (no worker's traceback), no process left, no run folder but the finished ones."""
    moments = [lambda l: True, lambda l: l.startswith("sweep: 3 runs"), lambda l: l.startswith("sweep: 1/3"),
               lambda l: l.startswith("sweep: 2/3")]
    pauses = [0.0, 0.3, 1.0]
    for attempt in range(10):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        proc = start_sweep(folder, "trainer.epochs=1,2,100000", "parallel")
        seen = wait_for(proc, moments[attempt % len(moments)])
        time.sleep(pauses[attempt % len(pauses)])
        code, out, err = ctrl_c(proc)
        out = "".join(seen) + out
        assert code == 130 and err.strip().splitlines() == [INTERRUPTED], (attempt, out, err)
        assert "Traceback" not in out + err and "sweep finished" not in out, (attempt, out)
        finished = [line for line in out.splitlines() if line.startswith("sweep: ") and ": done" in line]
        runs, _ = store.load(folder / "results")
        assert len(runs) == len(finished), (attempt, out)  # what said done is kept, and nothing else
        assert store.partial_runs(folder / "results" / "default") == [], attempt


SIGTERM_LINE = "terminated (SIGTERM): stopped "


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["single", "basic", "parallel", "local"])
def test_sigterm_says_what_stopped_and_how_to_resume_then_the_rerun_resumes(tmp_path, cli_inline, launcher):
    """SIGTERM (what SLURM sends at a time limit) to the command's process alone, not its group: exit 143,
    one line naming what was stopped and the command that resumes it; the finished run is kept, the one
    in training leaves nothing, and the command it names finishes the rest."""
    if launcher == "single":
        proc = start(tmp_path, [*LONG_RUN, "trainer.epochs=100000"])
        lock = tmp_path / "results" / "default" / ".locks"
        deadline = time.time() + 120
        while not list(lock.glob("*.lock")) and time.time() < deadline:  # the run holds its lock: training
            time.sleep(0.2)
        time.sleep(1.0)
    else:
        proc = start_sweep(tmp_path, "trainer.epochs=1,100000", launcher)
        if launcher == "local":  # (submitit's jobs print into their own logs: wait for the finished run)
            deadline = time.time() + 120
            while store.load(tmp_path / "results")[0].empty and time.time() < deadline:
                time.sleep(0.5)
        else:
            wait_for(proc, lambda line: line.startswith("sweep: 1/2"))
        time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    lines = err.strip().splitlines()
    assert proc.returncode == 143 and len(lines) == 1 and lines[0].startswith(SIGTERM_LINE), (out, err)
    what = "the run " if launcher == "single" else "the sweep after 1 of 2 runs"
    assert lines[0][len(SIGTERM_LINE):].startswith(what), lines[0]
    resume = lines[0].split("rerun the same command to resume: ")[1]
    assert resume.startswith("python -m bench.run ") and "trainer.epochs=" in resume
    results = tmp_path / "results"
    runs, _ = store.load(results)
    assert len(runs) == (0 if launcher == "single" else 1) and store.partial_runs(results / "default") == []
    if launcher != "single":  # the named command (with a shorter long run) finishes the rest
        again = sweep_inline(cli_inline, tmp_path, *LONG_RUN, "trainer.epochs=1,2")
        assert summary_counts(again.stdout)["skipped"] == 1 and summary_counts(again.stdout)["done"] == 1
