"""One run end to end: the ensemble equals separate runs, runs repeat exactly, finished runs are
skipped, training beats a trivial baseline, and bad input is one line + exit 2 with nothing written."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench import store
from bench.run import run

CURVE_COLUMNS = ["loss", "accuracy", "binary_accuracy", "out_grad"]


def history_of(summary, results_dir):
    path = store.run_dir(results_dir, summary["group"], summary["run_id"])
    return pd.read_parquet(path / "history.parquet")


def test_run_writes_the_three_files_and_a_complete_summary(make_config):
    cfg = make_config()
    summary = run(cfg)
    path = store.run_dir(cfg.results_dir, "default", summary["run_id"])
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "history.parquet", "summary.json"]
    on_disk = json.loads((path / "summary.json").read_text())
    assert on_disk["status"] == "done" and on_disk["activation"] == "softmax"
    assert [s["seed"] for s in on_disk["per_seed"]] == [0, 1]
    assert on_disk["environment"]["torch"] and "bitwise repeatable" in on_disk["environment"]["nondeterminism"]
    history = pd.read_parquet(path / "history.parquet")
    # (seed, epoch, split) rows: 2 seeds x 4 evaluations (epoch 0..3) x 2 splits
    assert len(history) == 16 and set(history["split"]) == {"train", "val"}
    assert history.groupby(["seed", "split"])["epoch"].apply(list).map(lambda e: e == [0, 1, 2, 3]).all()


@pytest.mark.slow
def test_ensemble_of_three_equals_three_single_runs(make_config):
    joint = run(make_config("seeds=[3,5,7]", "optimizer=adam"))
    joint_history = history_of(joint, make_config().results_dir)
    for seed in (3, 5, 7):
        single = run(make_config(f"seeds=[{seed}]", "optimizer=adam"))
        alone = history_of(single, make_config().results_dir).drop(columns=["train_seconds"])
        together = joint_history[joint_history.seed == seed].drop(columns=["train_seconds"])
        np.testing.assert_allclose(together[CURVE_COLUMNS].to_numpy(), alone[CURVE_COLUMNS].to_numpy(),
                                   rtol=0, atol=1e-5)
        assert list(together["step"]) == list(alone["step"])


def test_same_config_twice_gives_identical_history(make_config, tmp_path):
    first = run(make_config("dataset=breast_cancer", "loss=bce"))
    a = history_of(first, make_config().results_dir)
    shutil.rmtree(tmp_path / "results")
    second = run(make_config("dataset=breast_cancer", "loss=bce"))
    b = history_of(second, make_config().results_dir)
    assert first["run_id"] == second["run_id"]
    pd.testing.assert_frame_equal(a.drop(columns=["train_seconds"]), b.drop(columns=["train_seconds"]))


def test_finished_run_is_skipped_and_unfinished_run_is_redone(make_config, capsys):
    cfg = make_config("dataset=moons", "loss=mse")
    first = run(cfg)
    path = store.run_dir(cfg.results_dir, "default", first["run_id"])
    stamp = (path / "summary.json").stat().st_mtime_ns
    assert run(cfg)["run_id"] == first["run_id"]
    assert "skip" in capsys.readouterr().out
    assert (path / "summary.json").stat().st_mtime_ns == stamp  # not rewritten
    # a folder without summary.json is not finished: rerun redoes it
    (path / "summary.json").unlink()
    assert not store.is_finished(path)
    run(cfg)
    assert store.is_finished(path)
    # force=true reruns a finished run
    run(make_config("dataset=moons", "loss=mse", "force=true"))
    assert (path / "summary.json").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("dataset, loss, epochs", [
    ("digits", "cce", 5), ("breast_cancer", "bce", 5), ("moons", "bce", 10), ("diabetes", "mse", 20),
])
def test_training_beats_a_trivial_baseline(make_config, dataset, loss, epochs):
    cfg = make_config(f"dataset={dataset}", f"loss={loss}", f"trainer.epochs={epochs}", "seeds=[0,1,2]")
    summary = run(cfg)
    from bench.datasets import load_dataset

    data = load_dataset(cfg.dataset, cfg.seeds)
    for s in summary["per_seed"]:  # each seed against the trivial baseline of its own split
        split = data.replicate(data.seeds.index(s["seed"]))
        if data.task == "regression":
            # the mean predictor's test RMSE, in original units, from the raw split
            y_train = split.y_train.numpy() * split.target_scale
            y_test = split.y_test.numpy() * split.target_scale
            baseline = float(np.sqrt(((y_test - y_train.mean(0)) ** 2).mean()))
            assert s["test"]["rmse"] < 0.85 * baseline
        else:
            majority = np.bincount(split.y_train.numpy()).argmax()
            baseline = float((split.y_test.numpy() == majority).mean())
            assert s["test"]["accuracy"] > baseline + 0.1


BAD_INPUT = [
    (["dataset=nope"], "dataset"),
    (["loss=nope"], "loss"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["seeds=[]"], "seeds"),
    (["device=cuda"], "device=cuda"),
    (["device=tpu"], "device='tpu'"),
]


@pytest.mark.parametrize("args, named", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(cli_inline, tmp_path, args, named):
    if args == ["device=cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: device=cuda is valid here")
    code, out, err = cli_inline(args)  # `python -m bench.run ARGS`, in this process
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], err
    assert "Traceback" not in err + out
    assert "allowed" in lines[0] or "not available" in lines[0]
    assert not (tmp_path / "results").exists()


def test_diverging_seeds_are_marked_and_counted_from_summary_to_report(make_config):
    # SGD at lr 0.8 on diabetes: some members blow up within a few epochs, others survive
    cfg = make_config("dataset=diabetes", "loss=mse", "optimizer.lr=0.8", "seeds=[0,1,2,3,4,5,6,7]",
                      "trainer.epochs=5")
    summary = run(cfg)
    steps = {s["seed"]: s["diverged_step"] for s in summary["per_seed"]}
    diverged = sorted(seed for seed, step in steps.items() if step is not None)
    assert 0 < len(diverged) < 8, steps  # the lr was chosen to split the ensemble
    assert summary["status"] == "diverged"
    assert summary["reason"].startswith(f"{len(diverged)} of 8 seeds diverged")
    history = history_of(summary, cfg.results_dir)
    for s in summary["per_seed"]:
        rows = history[(history.seed == s["seed"]) & (history.split == "val")]
        if s["diverged_step"] is None:
            assert s["status"] == "done" and np.isfinite(s["test"]["rmse"])
            assert rows["rmse"].notna().all()
        else:
            # no test metrics; the curve is NaN from the first evaluation after the bad step on
            assert s["status"] == "diverged" and s["test"] == {}
            after = rows[rows.step >= s["diverged_step"]]
            assert len(after) and after["rmse"].isna().all()
            assert rows[rows.step < s["diverged_step"]]["rmse"].notna().all()
    # the report's ranking table counts the diverged seeds
    from bench.report import prepare, ranking

    runs, _ = store.load(cfg.results_dir)
    table = ranking(prepare(runs, cfg.results_dir))
    assert int(table["diverged"].sum()) == len(diverged)
    assert int(table["done"].sum()) == 8 - len(diverged)
