"""Packed jobs (bench.pack): configurations that differ only in what a member carries train as one
ensemble, and each is stored as its run alone stores it.

References: each configuration run by itself (`bench.run.run`, the path every unpacked run takes), and
bench.same_results, whose own test below feeds it folders that differ in one value each."""
import json
import shutil

import pandas as pd
import pytest
import torch

from bench import store
from bench.pack import form_packs, pack_key, run_pack
from bench.run import run
from bench.same_results import compare, compare_run

# one thread: the condition of the guarantee that a member's numbers do not depend on its neighbours
ONE_THREAD = ["trainer.threads=1"]
# breast_cancer: output widths 1 (sigmoid + BCE; linear + hinge, -1/+1) and 2 (softmax + CCE, + MSE);
# the grid's 30 makes seeds of sigmoid + BCE diverge, the choice at 0.1 extends CCE's and hinge's grid
BINARY = ["dataset=breast_cancer", "seeds=[0,1]", "trainer.epochs=3", "optimizer.lr=[0.1,3,30]",
          "optimizer.lr_extend=1", *ONE_THREAD]
BINARY_LOSSES = [("loss=bce",), ("loss=cce",), ("loss=hinge",), ("loss=mse", "activation=softmax")]
# digits: every configuration 10 units wide, so the groups share one output layer
DIGITS = ["dataset=digits", "seeds=[0,1,2,3,4]", "trainer.epochs=10", "optimizer.lr=${optimizer.lr_grid}",
          "optimizer.lr_extend=0", *ONE_THREAD]
DIGITS_LOSSES = [("loss=cce",), ("loss=mse",), ("loss=bce", "activation=sigmoid")]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def folder(results, summary):
    return store.run_dir(results, "default", summary["run_id"])


@pytest.mark.slow
@pytest.mark.parametrize("common, losses", [(BINARY, BINARY_LOSSES), (DIGITS, DIGITS_LOSSES)],
                         ids=["widths-1-and-2-diverging", "one-width-10"])
def test_a_seed_is_a_seed_in_a_pack_of_any_size_and_order(make_config, tmp_path, common, losses):
    """Each configuration alone, then in packs of every configuration, of the others in reverse order,
    and of two: its summary (seconds aside) and its history (train_seconds aside) bit for bit the same.
    digits: 35 members each, 11 evaluation points, whose curves a run computes 9 points at a time
    (bench.train.Evaluation.KEEP_ELEMENTS): a pack must too (batches of other sizes round the curves'
    sums differently; seen in the binary_vs_categorical preset)."""
    alone = {}
    for loss in losses:
        summary = run(make_config(*common, *loss, f"results_dir={tmp_path / 'alone'}"))
        alone[loss] = folder(tmp_path / "alone", summary)
    bce = json.loads((alone[losses[0]] / "summary.json").read_text())
    if common is BINARY:  # the cases the test is for happened: a diverged member, an extended grid, two widths
        assert any(s["status"] == "diverged" for s in bce["per_seed"])
        cce = json.loads((alone[losses[1]] / "summary.json").read_text())
        assert cce["lr_extended"]["below"] == [0.01]
    orders = {"all": list(losses), "reversed": list(reversed(losses[1:])), "two": [losses[-1], losses[0]]}
    for name, order in orders.items():
        outcomes = run_pack([make_config(*common, *loss, f"results_dir={tmp_path / name}") for loss in order],
                            clock_epochs=1)
        assert [outcome for outcome, _ in outcomes] == [json.loads((alone[loss] / "summary.json").read_text())["status"]
                                                          for loss in order], name
        for loss in order:
            summary = json.loads((alone[loss] / "summary.json").read_text())
            packed = folder(tmp_path / name, summary)
            assert compare_run(alone[loss], packed) == [], (name, loss)
            assert json.loads((packed / "summary.json").read_text())["packed"]["configurations"] == len(order)


@pytest.mark.slow
def test_a_packed_configurations_clock_is_its_own_run_alone(make_config, tmp_path, monkeypatch):
    """train_seconds are epoch x the seconds per epoch of the configuration trained by itself (its own
    members, K = seeds x its declared rates), never the pack's; two configurations get their own."""
    from bench import train as train_module

    trained_k = []
    real_train = train_module.train

    def counting(step, data, seeds, epochs, *args, **kwargs):  # the real loop, its ensemble size noted
        trained_k.append((len(seeds), epochs))
        return real_train(step, data, seeds, epochs, *args, **kwargs)

    monkeypatch.setattr(train_module, "train", counting)
    common = ["dataset=wine", "seeds=[0,1,2]", "trainer.epochs=4", "optimizer.lr=[0.1,0.3]", "optimizer.lr_extend=0"]
    outcomes = run_pack([make_config(*common, "loss=cce"), make_config(*common, "loss=mse")], clock_epochs=2)
    assert [o for o, _ in outcomes] == ["done", "done"]
    # the pack (2 x 6 members, 4 epochs), then each configuration alone (6 members, 2 epochs)
    assert trained_k == [(12, 4), (6, 2), (6, 2)]
    per_epoch = []
    for path in sorted((tmp_path / "results" / "default").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        facts = summary["packed"]
        assert facts == {"configurations": 2, "members": 12, "clock_epochs": 2,
                         "seconds_per_epoch_alone": facts["seconds_per_epoch_alone"]}
        seconds = facts["seconds_per_epoch_alone"]
        assert seconds > 0 and all(s["train_seconds"] == 4 * seconds for s in summary["per_seed"])
        history = pd.read_parquet(path.parent / "history.parquet")
        assert (history["train_seconds"] == history["epoch"] * seconds).all()
        per_epoch.append(seconds)
    assert per_epoch[0] != per_epoch[1]  # each its own measurement


def test_packs_are_formed_of_what_members_can_carry(make_config):
    configs = [make_config(*c) for c in (
        ("loss=cce",), ("loss=mse", "activation=sigmoid"), ("loss=bce", "optimizer.lr=[0.1,1]", "seeds=[7]"),
        ("loss=cce", "dataset=wine"),  # another dataset
        ("loss=cce", "optimizer.momentum=0.9"),  # another optimizer setting
        ("loss=cce", "trainer.batch_size=64"),  # another trainer setting
        ("loss=cce", "model=cnn", "dataset=mnist"),  # a grouped convolution: alone
        ("loss=mse", "results_dir=elsewhere", "group=other"),  # where a run is stored does not matter
    )]
    assert pack_key(configs[0]) == pack_key(configs[1]) == pack_key(configs[2]) == pack_key(configs[7])
    assert len({pack_key(c) for c in configs[:6]}) == 4 and pack_key(configs[6]) is None
    assert form_packs(configs, 1000) == [[0, 1, 2, 7], [3], [4], [5], [6]]
    # at most max_members members a pack (2 seeds each; the bce one 1 seed x 2 rates): consecutive runs
    assert form_packs(configs, 4) == [[0, 1], [2, 7], [3], [4], [5], [6]]
    # at least as many packs as workers: the largest split in two
    three = [configs[0], configs[1], configs[7]]
    assert form_packs(three, 1000, min_packs=2) == [[0, 1], [2]]
    assert form_packs(three[:1], 1000, min_packs=4) == [[0]]


def test_same_results_finds_every_kind_of_difference(make_config, tmp_path):
    """The comparator the packed tests and the lead's sweep comparison rely on: the same folder copied
    compares equal, seconds may differ, and a changed value in summary.json, history.parquet or
    config.yaml, or a run missing, is reported."""
    first = tmp_path / "a"
    run(make_config("dataset=wine", "loss=cce", f"results_dir={first}"))
    run(make_config("dataset=wine", "loss=mse", f"results_dir={first}"))
    paths = sorted(first.glob("default/*/summary.json"))
    second = tmp_path / "b"
    shutil.copytree(first, second)
    assert compare(first, second) == []
    target = second / paths[0].relative_to(first)
    summary = json.loads(target.read_text())
    summary["seconds"] += 1.0
    summary["per_seed"][0]["train_seconds"] += 1.0
    summary["packed"] = {"configurations": 2}
    target.write_text(json.dumps(summary))
    history_path = target.parent / "history.parquet"
    history = pd.read_parquet(history_path)
    history["train_seconds"] += 1.0
    history.to_parquet(history_path, index=False)
    assert compare(first, second) == []  # seconds aside
    summary["per_seed"][1]["test"]["accuracy"] = 0.5
    target.write_text(json.dumps(summary))
    history.loc[3, "loss"] = history.loc[3, "loss"] + 1e-7
    history.to_parquet(history_path, index=False)
    config = target.parent / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 3", "epochs: 4"))
    found = compare(first, second)
    name = f"default/{target.parent.name}"
    assert found == [f"{name}: summary.json per_seed.1.test.accuracy: "
                     f"{json.loads(paths[0].read_text())['per_seed'][1]['test']['accuracy']!r} against 0.5",
                     f"{name}: config.yaml trainer.epochs: 3 against 4",
                     f"{name}: history.parquet loss: 1 of {len(history)} rows differ"]
    shutil.rmtree(second / paths[1].parent.relative_to(first))
    assert f"default/{paths[1].parent.name}: only in {first}" in compare(first, second)


@pytest.mark.slow
def test_a_packed_sweep_killed_while_it_stores_resumes_to_the_unpacked_sweeps_runs(tmp_path, cli_inline):
    """SIGKILL (bench.store.write_atomic's 8th write, half written: the second trained run's summary) in a
    pack of 6 configurations (one invalid), then the same command: every run finished once, whole, and
    equal to the unpacked sweep's runs (bench.same_results)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_sweep import GRID, KILLER, check_store, summary_counts, sweep_inline

    packed = [a for a in GRID if a != "pack.enabled=false"] + ["pack.enabled=true"]
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    results = tmp_path / "results"
    env = {**os.environ, "KILL_AT_WRITE": "8", "KILL_PHASE": "mid-write"}
    killed = subprocess.run([sys.executable, str(script), "-m", f"results_dir={results}", *packed], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    finished = check_store(results, {})
    assert len(finished) == 2 and len(store.partial_runs(results / "default")) == 1  # invalid + one stored
    again = sweep_inline(cli_inline, tmp_path, *packed)
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_counts(again.stdout) == {"done": 4, "invalid": 0, "diverged": 0, "failed": 0, "skipped": 2}
    assert "removed partial run folder" in again.stdout
    check_store(results, finished)
    alone = sweep_inline(cli_inline, tmp_path / "alone", *GRID)  # the same sweep, a job per configuration
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert compare(results, tmp_path / "alone" / "results") == []
