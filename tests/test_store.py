"""The store: run locks between processes (released when the holder is SIGKILLed), partial folders
listed, cleaned and never loaded, the tidy frames of `load`, and write errors (a real per-file size
limit, RLIMIT_FSIZE) that fail one run of a sweep and leave the earlier ones intact."""
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from bench import store

HOLD_LOCK = """
import sys, time
from bench import store
with store.claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(path):
    """A separate process holding the run lock of `path` (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def fake_history(seeds=(0, 1), epochs=2):
    rows = [{"seed": s, "epoch": e, "step": 3 * e, "train_seconds": 0.1 * e, "split": split,
             "loss": 1.0 / (e + 1), "accuracy": 0.5 + 0.1 * e, "out_grad": 0.2}
            for s in seeds for e in range(epochs + 1) for split in ("train", "val")]
    return pd.DataFrame(rows)


def summary(rid, status="done", per_seed=None):
    return {"run_id": rid, "group": "g", "status": status, "reason": None if status == "done" else "why",
            "dataset": "moons", "task": "binary", "model": "mlp", "activation": "sigmoid", "loss": "bce",
            "optimizer": "sgd", "lr": 0.1, "metric": "accuracy", "higher_is_better": True, "target": 0.9,
            "per_seed": per_seed if per_seed is not None else [
                {"seed": s, "status": "done", "diverged_step": None, "test": {"accuracy": 0.8 + s / 100},
                 "best_val": 0.7, "epochs_to_target": None, "steps_to_target": None,
                 "seconds_to_target": None, "auc": 0.6, "train_seconds": 0.2} for s in (0, 1)]}


def test_a_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    path = store.run_dir(tmp_path / "results", "g", "abc123")
    holder = hold_lock(path)
    try:
        with pytest.raises(BlockingIOError):
            with store.claim(path, wait=False):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the lock of the killed holder: no stale lock to clean by hand
    with store.claim(path, wait=False):
        pass


@pytest.mark.slow
def test_claim_waits_for_the_holder_then_proceeds(tmp_path, capsys):
    path = store.run_dir(tmp_path / "results", "g", "abc123")
    holder = hold_lock(path)
    start = time.monotonic()
    import threading

    threading.Timer(1.0, holder.kill).start()
    with store.claim(path, message="waiting for the other process"):
        waited = time.monotonic() - start
    holder.wait()
    assert "waiting for the other process" in capsys.readouterr().out
    assert waited > 0.5  # it waited for the kill (a lower bound only: no upper timing asserted)


def test_partial_folders_are_listed_never_loaded_and_cleaned(tmp_path):
    group = tmp_path / "results" / "g"
    done = group / "aaaaaaaaaaaa"
    store.save_run(done, "a: 1\n", fake_history(), summary(done.name))
    partial = group / "bbbbbbbbbbbb"
    partial.mkdir(parents=True)
    (partial / "config.yaml").write_text("a: 2\n")
    (partial / ".history.parquet.x1.tmp").write_bytes(b"PAR1 half")  # a write cut short
    busy = group / "cccccccccccc"  # partial, but another process is running it right now
    busy.mkdir()
    assert store.partial_runs(group) == [partial, busy]
    runs, history = store.load(tmp_path / "results")
    assert set(runs["run_id"]) == {done.name}
    holder = hold_lock(busy)
    try:
        cleaned = store.clean_partial(group)
    finally:
        holder.kill()
        holder.wait()
    assert cleaned == [(partial, [".history.parquet.x1.tmp", "config.yaml"])]
    assert not partial.exists() and busy.exists() and store.is_finished(done)
    assert store.partial_runs(group) == [busy]


def test_load_gives_one_row_per_run_and_seed_and_keeps_the_loss_value(tmp_path):
    results = tmp_path / "results"
    store.save_run(results / "g" / "aaaaaaaaaaaa", "a: 1\n", fake_history(), summary("aaaaaaaaaaaa"))
    store.save_run(results / "g" / "bbbbbbbbbbbb", "a: 2\n", None,
                   summary("bbbbbbbbbbbb", status="invalid", per_seed=[]))
    runs, history = store.load(results)
    assert len(runs) == 3  # 2 seeds of the done run + 1 row for the invalid run
    done = runs[runs.run_id == "aaaaaaaaaaaa"].sort_values("seed")
    assert list(done["seed"]) == [0, 1] and list(done["test_accuracy"]) == [0.8, 0.81]
    assert list(done["seed_status"]) == ["done", "done"] and (done["auc"] == 0.6).all()
    invalid = runs[runs.run_id == "bbbbbbbbbbbb"]
    assert len(invalid) == 1 and invalid["seed"].isna().all() and invalid["status"].iloc[0] == "invalid"
    # history: 2 seeds x 3 epochs x 2 splits; `loss` is the value, `loss_name` the function
    assert len(history) == 12 and (history["loss_name"] == "bce").all()
    np.testing.assert_allclose(sorted(set(history["loss"])), [1 / 3, 1 / 2, 1.0])
    for column in ("group", "run_id", "dataset", "task", "activation", "optimizer"):
        assert history[column].notna().all()
    assert not history.duplicated(["run_id", "seed", "epoch", "split"]).any()


def test_results_files_are_readable_like_any_other_file(tmp_path):
    store.write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left


def limit_file_size(limit):
    def apply():
        # writes past `limit` bytes in any one file fail with EFBIG (an OSError, like a full disk);
        # ignoring SIGXFSZ turns the default kill into that error
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_write_error_fails_that_run_only_and_a_rerun_redoes_it(tmp_path, make_config, cli_inline):
    from bench.datasets import load_dataset

    load_dataset(make_config("dataset=moons").dataset)  # warm the dataset cache outside the limit
    args = [sys.executable, "-m", "bench.run", "-m", "dataset=moons", "loss=mse", "seeds=[0,1]",
            "trainer.epochs=1,30,2", "trainer.threads=1", "progress=false", "results_dir=results"]
    # 1 and 2 epochs give ~8 KB of history.parquet; 30 epochs ~15 KB: only that write fails
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           preexec_fn=limit_file_size(11_000))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 done, 0 invalid, 0 diverged, 1 failed, 0 skipped" in first.stdout
    runs, _ = store.load(tmp_path / "results")
    assert sorted(runs.drop_duplicates("run_id")["status"]) == ["done", "done", "failed"]
    failed = runs[runs.status == "failed"].iloc[0]
    assert "File too large" in failed["reason"]
    folder = tmp_path / "results" / "default" / failed["run_id"]
    assert "OSError" in (folder / "traceback.txt").read_text()
    assert not list(folder.glob(".*.tmp"))
    stamps = {rid: (tmp_path / "results" / "default" / rid / "summary.json").stat().st_mtime_ns
              for rid in runs[runs.status == "done"]["run_id"]}
    # without the limit, the rerun (the same command, in this process) redoes the failed run and leaves
    # the finished ones alone
    code, out, err = cli_inline(args[3:], exact=True)
    assert code == 0, out + err
    assert "1 done, 0 invalid, 0 diverged, 0 failed, 2 skipped" in out
    runs, history = store.load(tmp_path / "results")
    assert sorted(runs.drop_duplicates("run_id")["status"]) == ["done"] * 3
    assert not (tmp_path / "results" / "default" / failed["run_id"] / "traceback.txt").exists()
    for rid, stamp in stamps.items():
        assert (tmp_path / "results" / "default" / rid / "summary.json").stat().st_mtime_ns == stamp
    assert sorted(history.groupby("run_id")["epoch"].max()) == [1, 2, 30]
    json.loads((folder / "summary.json").read_text())


def test_load_adds_every_config_key_that_varies_between_runs(tmp_path):
    results = tmp_path / "results"
    configs = {"aaaaaaaaaaaa": "model:\n  out_init_scale: 1.0\n  hidden: [64]\noptimizer:\n  momentum: 0.0\n"
                               "results_dir: r1\nseeds: [0, 1]\n",
               "bbbbbbbbbbbb": "model:\n  out_init_scale: 10.0\n  hidden: [64]\noptimizer:\n  momentum: 0.9\n"
                               "results_dir: r2\nseeds: [0, 1]\n"}
    for rid, text in configs.items():
        store.save_run(results / "g" / rid, text, fake_history(), summary(rid))
    runs, history = store.load(results)
    for frame in (runs, history):
        by_run = frame.drop_duplicates("run_id").set_index("run_id")
        assert by_run.loc["aaaaaaaaaaaa", "model.out_init_scale"] == 1.0
        assert by_run.loc["bbbbbbbbbbbb", "model.out_init_scale"] == 10.0
        assert list(by_run["optimizer.momentum"]) == [0.0, 0.9]
        # the same in every run, or not a result (results_dir): no column
        assert not {"model.hidden", "seeds", "results_dir"} & set(frame.columns)
    assert history.groupby("run_id")["model.out_init_scale"].nunique().eq(1).all()


def test_identity_covers_the_files_content_and_never_where_things_live(make_config, tmp_path):
    """A CSV run is identified by the file's bytes (an edited file is a new run, not a stale skip; the
    same bytes elsewhere, or touched, the same run); the cache, results and group folders change nothing."""
    import os

    from bench.config import validate

    def rid(*overrides):
        return validate(make_config(*overrides)).summary_facts["run_id"]

    def csv_run(path, *overrides):
        return rid("dataset=csv", f"dataset.path={path}", "dataset.target_column=y", "dataset.task=regression",
                   "dataset.metric=rmse", "dataset.target=1", *overrides)

    table = tmp_path / "a.csv"
    table.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(30)))
    first = csv_run(table)
    copy = tmp_path / "elsewhere" / "b.csv"
    copy.parent.mkdir()
    copy.write_bytes(table.read_bytes())
    assert csv_run(copy) == first  # the same bytes under another name: the same run
    assert csv_run(table, "group=other", f"results_dir={tmp_path / 'r2'}") == first
    os.utime(table, ns=(1, 1))  # touched (another mtime), the same bytes
    assert csv_run(table) == first
    table.write_text(table.read_text().replace("\n3,6\n", "\n3,7\n"))  # one target edited
    assert csv_run(table) != first
    # a config key that changes the numbers changes the id; where the dataset cache lives does not
    assert rid("model.out_bias_offset=4") != rid() == rid(f"dataset.cache_dir={tmp_path / 'c'}")
    assert rid("dataset.label_noise=0", "dataset.label_noise_kind=asymmetric") == rid()  # clean labels
    assert rid("optimizer.lr=1") == rid("optimizer.lr=1.0") != rid("optimizer.lr=1.5")  # one number, two spellings
