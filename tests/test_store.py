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


@pytest.mark.slow
def test_a_key_added_at_its_old_behaviour_keeps_the_identity(make_config):
    """model.out_bias_offset (added later) is left out of the identity at 0, the old behaviour: a config
    with the key at its default and the same config without the key have one run id; other values are
    other runs."""
    from omegaconf import OmegaConf

    from bench.config import resolve_auto, validate

    def rid(*overrides):  # as the CLI computes it (loss=auto resolved first)
        return validate(resolve_auto(make_config("trainer.epochs=1", *overrides, small=False))).summary_facts["run_id"]

    config = OmegaConf.to_container(resolve_auto(make_config("trainer.epochs=1", small=False)), resolve=True)
    assert config["model"]["out_bias_offset"] == 0.0
    del config["model"]["out_bias_offset"]
    assert store.run_id(config) == rid()
    assert rid("model.out_bias_offset=4") not in (rid(), rid("model.out_bias_offset=8"))
    assert rid("dataset.resample=false") != rid()  # one split for every seed is another run


# ---------------------------------------------------------------------------------------------
# readers never crash on a results folder: damaged, foreign or incomplete runs are named and left out

def damaged_results(tmp_path):
    """A results folder: two whole runs beside every kind of damage a reader may meet. Returns
    (results, {folder name: words its left-out line must hold})."""
    results = tmp_path / "results"
    group = results / "g"
    for rid in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
        store.save_run(group / rid, "a: 1\n", fake_history(), summary(rid))
    damage = {}

    def run(rid, words):
        store.save_run(group / rid, "a: 1\n", fake_history(), summary(rid))
        damage[rid] = words
        return group / rid

    cut = run("111111111111", "summary.json is not valid JSON")
    os.truncate(cut / "summary.json", 200)
    cut = run("222222222222", "history.parquet is cut short")
    os.truncate(cut / "history.parquet", (cut / "history.parquet").stat().st_size // 2)
    (run("333333333333", "history.parquet is missing") / "history.parquet").unlink()
    (run("444444444444", "summary.json has no status") / "summary.json").write_text('{"hello": 1}')
    (run("555555555555", "per_seed[0].test.accuracy is inf") / "summary.json").write_text(
        json.dumps(summary("555555555555")).replace("0.8", "Infinity", 1))
    (run("666666666666", "summary.json is run 'aaaaaaaaaaaa', not this folder's") / "summary.json").write_text(
        json.dumps(summary("aaaaaaaaaaaa")))
    (run("777777777777", "history.parquet cannot be read") / "history.parquet").write_bytes(
        b"PAR1" + b"\0" * 64 + b"PAR1")  # the magic at both ends, nothing readable between
    (run("888888888888", "summary.json holds a JSON list") / "summary.json").write_text("[]")
    foreign = group / "notes"  # not a run folder: named, never deleted
    foreign.mkdir()
    (foreign / "summary.json").write_text('{"status": "done", "mine": true}')
    damage["notes"] = "not a lossbench run folder"
    (group / "stray.txt").write_text("a file of the user's")  # not a folder: not a run, nothing to say
    (results / "README.md").write_text("the results folder's own notes")
    return results, damage


def test_load_names_every_damaged_or_foreign_run_in_one_line_and_leaves_it_out(tmp_path, capsys):
    results, damage = damaged_results(tmp_path)
    left_out = []
    runs, history = store.load(results, left_out)
    assert sorted(runs["run_id"].unique()) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert sorted(history["run_id"].unique()) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    named = {path.name: problem for path, problem in left_out}
    assert sorted(named) == sorted(damage)
    for name, words in damage.items():
        assert words in store.left_out_line(results / "g" / name, named[name]), (name, named[name])
    assert capsys.readouterr().err == ""  # given a list, load says nothing itself
    store.load(results)  # without one, it names each on stderr, one line each, with its folder
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == len(damage) and all(line.startswith(f"left out {results / 'g'}/") for line in lines)
    # the sweep's skip check: a damaged run is not finished (the next run of its config redoes it)
    for name in damage:
        assert store.finished_status(results / "g" / name) is None
    assert store.finished_status(results / "g" / "aaaaaaaaaaaa") == "done"
    # never deleted by a sweep's cleaning: only run-id folders without summary.json are partial
    assert store.clean_partial(results / "g") == [] and (results / "g" / "notes").is_dir()


def test_bench_results_names_the_damaged_runs_and_ranks_the_others(tmp_path, capsys):
    from bench.results import main

    results, damage = damaged_results(tmp_path)
    assert main([str(results)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "g: 2 runs (2 done)" in out and out.strip().splitlines()[-1] == (
        f"left out: {len(damage)} damaged or foreign run folders (named on stderr)")
    assert len(err.strip().splitlines()) == len(damage)
    assert all(f"{results / 'g' / name}" in err for name in damage)


@pytest.mark.slow
def test_bench_report_counts_the_left_out_runs_on_the_page(tmp_path, capsys):
    from bench.report.__main__ import main

    results, damage = damaged_results(tmp_path)
    main([str(results)])
    out, err = capsys.readouterr()
    assert out.strip() == f"report: {results / 'report' / 'index.html'}" and "Traceback" not in err
    assert sorted(line.split(":")[0] for line in err.strip().splitlines()) == sorted(
        f"left out {results / 'g' / name}" for name in damage)
    page = (results / "report" / "index.html").read_text()
    assert f"{len(damage)} run folders left out: damaged or foreign" in page
    assert all(f"<code>g/{name}</code>" in page for name in damage)
    assert not list(results.glob(".report.building-*"))  # the staging folder is gone


@pytest.mark.slow
def test_a_failed_report_leaves_the_old_report_whole_and_no_new_folder(tmp_path):
    """A real write error (RLIMIT_FSIZE: the figures are larger than the limit) in the middle of a build:
    the report built before is untouched, file for file; a first build that fails leaves no folder."""
    from bench.report.__main__ import main

    results, _ = damaged_results(tmp_path)
    main([str(results)])
    report = results / "report"
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    command = [sys.executable, "-m", "bench.report", str(results)]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size(4_000))
    assert failed.returncode == 2 and failed.stderr.strip().splitlines()[-1].startswith(
        f"error: could not write the report into {report}"), failed.stderr
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    assert not list(results.glob(".report.building-*"))
    fresh = subprocess.run([*command, "--out", str(tmp_path / "new" / "report")], capture_output=True, text=True,
                           timeout=300, preexec_fn=limit_file_size(4_000))
    assert fresh.returncode == 2 and not (tmp_path / "new").exists(), fresh.stderr


# ---------------------------------------------------------------------------------------------
# finished means finished and valid

def test_a_summary_with_non_finite_figures_is_saved_failed_with_the_keys_and_no_infinity(tmp_path):
    from bench.run import settle

    overflowed = summary("aaaaaaaaaaaa")
    overflowed["per_seed"][0]["test"]["accuracy"] = float("inf")
    overflowed["per_seed"][1]["best_val"] = float("nan")
    settled = settle(overflowed)
    assert settled["status"] == "failed"
    assert settled["reason"].startswith("2 figures are not finite numbers (per_seed[0].test.accuracy=inf, "
                                        "per_seed[1].best_val=nan)")
    assert settled["per_seed"][0]["test"]["accuracy"] is None and settled["per_seed"][1]["best_val"] is None
    assert store.summary_problem(settled) is None
    store.save_run(tmp_path / "aaaaaaaaaaaa", "a: 1\n", fake_history(), settled)
    text = (tmp_path / "aaaaaaaaaaaa" / "summary.json").read_text()
    assert "Infinity" not in text and "NaN" not in text and json.loads(text)["status"] == "failed"
    assert store.finished_status(tmp_path / "aaaaaaaaaaaa") == "failed"  # a sweep retries it
    with pytest.raises(ValueError):  # nothing that is not JSON is ever written
        store.save_run(tmp_path / "bbbbbbbbbbbb", "a: 1\n", None, overflowed)
    assert settle(summary("cccccccccccc")) == summary("cccccccccccc")  # a whole summary stays as it is
    diverged = summary("dddddddddddd")  # a diverged member's undefined figures: null, the run stands
    diverged["per_seed"][1].update(status="diverged", best_val=float("nan"), auc=float("inf"))
    settled = settle(diverged)
    assert settled["status"] == "done"
    assert settled["per_seed"][1]["best_val"] is None and settled["per_seed"][1]["auc"] is None


def test_an_edited_csv_is_trained_again_not_skipped(tmp_path, cli_inline):
    table = tmp_path / "t.csv"
    table.write_text("x,y\n" + "".join(f"{i},{i % 3 + 1.5}\n" for i in range(40)))
    args = ["dataset=csv", f"dataset.path={table}", "dataset.target_column=y", "dataset.task=regression",
            "dataset.metric=rmse", "dataset.target=0.1", "seeds=[0]", "trainer.epochs=1", "results_dir=r"]
    assert cli_inline(args)[0] == 0
    code, out, err = cli_inline(args)
    assert code == 0 and "is already finished" in out + err  # the same file: the same run, skipped
    table.write_text(table.read_text().replace("\n5,", "\n5000,"))  # one feature value edited
    code, out, err = cli_inline(args)
    assert code == 0 and "already finished" not in out + err, out + err
    assert len(store.load(tmp_path / "r")[0]["run_id"].unique()) == 2


def read_only(folder):
    """Make `folder` unwritable for this process (chmod; as root, whom permissions do not stop, the
    immutable attribute); return the undo."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_group_folder_is_one_line_before_any_job(tmp_path, cli_inline):
    group = tmp_path / "r" / "g"
    group.mkdir(parents=True)
    undo = read_only(group)
    try:
        for args in (["seeds=[0]", "trainer.epochs=1"], ["-m", "loss=mse,bce", "seeds=[0]", "trainer.epochs=1"]):
            code, out, err = cli_inline([*args, f"results_dir={tmp_path / 'r'}", "group=g"], exact=args[0] == "-m")
            assert code == 2 and err.strip() == (f"error: results_dir={tmp_path / 'r'} (group=g) is not writable "
                                                 f"(no write permission on {group})") + (
                " (sweep job: loss=mse seeds=[0] trainer.epochs=1 results_dir="
                f"{tmp_path / 'r'} group=g); no job was started" if args[0] == "-m" else ""), err
            assert "sweep: " not in out and list(group.iterdir()) == []
    finally:
        undo()
    assert not (tmp_path / "r" / ".hydra").exists()


@pytest.mark.slow
def test_ctrl_c_in_the_report_is_one_line_and_leaves_the_report_as_it_was(tmp_path):
    """Ctrl-C to bench.report and its figure workers (the terminal's process group) at several moments
    of the build (counted from its first line, once the interpreter has started: a Ctrl-C before any
    of the command's code runs is Python's own): exit 130, one line, the report built before
    untouched, no staging folder."""
    from bench.report.__main__ import main

    results, damage = damaged_results(tmp_path)
    main([str(results)])
    before = {p.name: p.read_bytes() for p in (results / "report").iterdir()}
    for delay in (0.0, 2.0, 5.0):
        proc = subprocess.Popen([sys.executable, "-m", "bench.report", str(results)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        first = proc.stderr.readline()  # the first left-out line: the results are being loaded
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        err = first + err
        if proc.returncode == 0:  # the build was done before the signal came: nothing to stop
            continue
        lines = [line for line in err.strip().splitlines() if line and not line.startswith("left out ")]
        assert proc.returncode == 130 and lines == ["interrupted; the report is as it was"], (delay, err)
        assert {p.name: p.read_bytes() for p in (results / "report").iterdir()} == before
        assert not list(results.glob(".report.building-*"))
