"""The learning rate as an ensemble axis: members = seeds x learning rates, each member exactly the
run at its own learning rate (per optimizer and step path), and the choice made on validation only."""
import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from bench import store, tuning
from bench.config import resolve_auto
from bench.datasets import load_dataset
from bench.heads import make_head
from bench.models import build_model
from bench.optim import make_optimizer, members
from bench.run import run
from bench.step import make_step
from bench.train import train
from tests.conftest import CONF

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
OPTIMIZERS = {"sgd": [], "momentum": ["optimizer.momentum=0.9", "optimizer.weight_decay=0.001"],
              "adam": ["optimizer=adam"], "adamw": ["optimizer=adamw"]}
GRIDS = {"sgd": [0.03, 0.3, 1.0], "momentum": [0.01, 0.1], "adam": [0.001, 0.01], "adamw": [0.001, 0.01]}


def config(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return resolve_auto(compose("config", overrides=list(overrides)))


def trained_members(cfg, seeds, lrs, hand_written, device="cpu"):
    """Every member's parameters [K, P] after 2 epochs of wine, members (seeds[k], lrs[k])."""
    data = load_dataset(cfg.dataset, seeds).to(device, torch.float32)  # each seed its own split
    head = make_head(data.task, data.n_classes, 1, cfg.activation.name, cfg.loss.name, {})
    model = build_model(cfg.model, data.input_shape, head.n_outputs, seeds).to(device)
    step = make_step(model, head, make_optimizer(cfg.optimizer, model.parameters(), lrs), hand_written=hand_written)
    history = train(step, data, seeds, 2, 32, 1, lrs=lrs).history
    rows = torch.cat([p.detach().reshape(len(seeds), -1) for p in model.parameters()], 1).cpu()
    return rows, history


# the default path (plain SGD, hand-written step) always; every other optimizer and path by `make test`
PATHS = [pytest.param(name, hand, id=f"{name}-{'hand-written' if hand else 'autograd'}",
                      marks=() if (name, hand) == ("sgd", True) else pytest.mark.slow)
         for name in OPTIMIZERS for hand in (True, False)]


@pytest.mark.slow
@pytest.mark.parametrize("name, hand_written", PATHS)
def test_each_member_is_bitwise_the_run_at_its_learning_rate(name, hand_written, device="cpu"):
    """Members = for each lr, every seed; the members at one lr equal, bit for bit, a run of the same
    seeds at that scalar lr (bench.optim's K-independent update, and plain SGD's in the hand-written
    backward: one per layer, the output gradient scaled per member; the forward/backward is per member)."""
    cfg = config("dataset=wine", "model.hidden=[16]", *OPTIMIZERS[name])
    seeds, grid = [0, 1], GRIDS[name]
    member_seeds, lrs = members(seeds, grid)
    assert member_seeds == [0, 1] * len(grid) and lrs == [lr for lr in grid for _ in seeds]
    joint, history = trained_members(cfg, member_seeds, lrs, hand_written, device)
    assert {(r["seed"], r["lr"]) for r in history} == set(zip(member_seeds, lrs))
    for i, lr in enumerate(grid):
        alone, _ = trained_members(cfg, seeds, [lr] * len(seeds), hand_written, device)
        assert torch.equal(joint[2 * i:2 * i + 2], alone), (name, lr)
    assert not torch.equal(joint[0:2], joint[2:4])  # the learning rates did differ


def test_a_plain_sgd_member_is_bitwise_alone_whatever_its_position_and_neighbours():
    """The hand-written step's one update per layer for any number of learning rates: seed 1 at 0.03
    second of three members at three rates (not grouped by rate) trains to the bits of seed 1 alone."""
    cfg = config("dataset=wine", "model.hidden=[16]")
    crowd, _ = trained_members(cfg, [0, 1, 2], [1.0, 0.03, 0.3], True)
    alone, _ = trained_members(cfg, [1], [0.03], True)
    assert torch.equal(crowd[1:2], alone)


@CUDA
@pytest.mark.parametrize("hand_written", [True, False], ids=["hand-written", "autograd"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_member_is_the_run_at_its_learning_rate_on_cuda(name, hand_written):
    test_each_member_is_bitwise_the_run_at_its_learning_rate(name, hand_written, device="cuda")


def test_a_scalar_lr_is_a_grid_of_one_and_a_member_matches_torch_sgd():
    """A scalar lr: every member at it (the run id and numbers of before grids); the plain-SGD member
    follows torch.optim.SGD's own update (an independent reference) to float rounding (torch adds with
    alpha, a fused multiply-add; ours multiplies, then subtracts)."""
    cfg = config("dataset=wine", "model.hidden=[16]")
    params = [torch.nn.Parameter(torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0)))]
    reference = [torch.nn.Parameter(params[0].detach()[1].clone())]
    ours = make_optimizer(cfg.optimizer, params, [0.01, 0.1, 1.0])
    theirs = torch.optim.SGD(reference, lr=0.1)
    for step in range(3):
        params[0].grad = params[0].detach() * 0.5 + step
        reference[0].grad = params[0].grad[1].clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(params[0].detach()[1], reference[0].detach(), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# the choice: validation only, a diverged learning rate never chosen, the grid edge flagged

def member(lr, val, test, diverged=False):
    return {"lr": lr, "val": val, "test": test, "diverged": diverged}


def test_the_choice_reads_validation_never_test():
    # accuracy: lr 0.1 is best on val (0.90), lr 1 on test (0.95)
    scored = [member(0.01, 0.80, 0.80), member(0.01, 0.82, 0.81), member(0.1, 0.90, 0.85),
              member(0.1, 0.90, 0.86), member(1.0, 0.85, 0.95), member(1.0, 0.86, 0.94)]
    table = tuning.per_lr(scored, [0.01, 0.1, 1.0], higher_is_better=True)
    assert [e["val"] for e in table] == pytest.approx([0.81, 0.90, 0.855])
    assert [e["test"] for e in table] == pytest.approx([0.805, 0.855, 0.945])
    assert table[0]["val_std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))  # sample std of 0.80, 0.82
    assert tuning.choose(table, True) == 0.1
    # lower is better (rmse): the smallest val mean wins
    assert tuning.choose(tuning.per_lr(scored, [0.01, 0.1, 1.0], False), False) == 0.01
    assert [e["at_grid_edge"] for e in table] == [True, False, True]
    assert tuning.per_lr(scored[:2], [0.01], True)[0]["at_grid_edge"] is False  # a grid of one has no edge


def test_a_diverged_learning_rate_is_never_chosen():
    # lr 1: its surviving seed has the best val of all, but one seed diverged
    scored = [member(0.1, 0.80, 0.8), member(0.1, 0.81, 0.8), member(1.0, 0.99, 0.99),
              member(1.0, math.nan, None, diverged=True)]
    table = tuning.per_lr(scored, [0.1, 1.0], True)
    assert table[1]["diverged"] == 1 and table[1]["val"] == pytest.approx(0.99)
    assert tuning.choose(table, True) == 0.1
    # every lr lost a seed: the fewest diverged first
    scored += [member(0.1, math.nan, None, True), member(0.01, 0.5, 0.5, True)]
    assert tuning.choose(tuning.per_lr(scored, [0.01, 0.1, 1.0], True), True) == 1.0


def test_a_tuned_run_records_its_grid_choice_and_members(make_config, tmp_path):
    """diabetes, momentum 0.9, on the fixed split: at lr 0.2 seed 1 diverges (tests/test_perf.py
    DIVERGING); at 0.001 none does. The run picks 0.001 and its status is that of the chosen seeds."""
    cfg = make_config("dataset=diabetes", "dataset.resample=false", "loss=mse", "optimizer.momentum=0.9", "model.hidden=[16]",
                      "seeds=[0,1,2]", "trainer.epochs=5", "optimizer.lr=[0.001,0.2]", "optimizer.lr_extend=0")
    summary = run(cfg)
    assert summary["lr_grid"] == [0.001, 0.2] and summary["chosen_lr"] == summary["lr"] == 0.001
    assert summary["lr_selection"] == {"metric": "rmse", "split": "val", "epoch": "final", "rule": tuning.RULE,
                                       "speed_rule": tuning.SPEED_RULE,
                                       "extension": tuning.EXTENSION_RULE.format(cap=0)}
    assert summary["tuned"] is False and summary["lr_bound"] == "at most"  # not extended: the choice is an edge
    by_lr = {e["lr"]: e for e in summary["per_lr"]}
    assert by_lr[0.2]["diverged"] == 1 and by_lr[0.001]["diverged"] == 0
    assert summary["status"] == "done"
    assert [(s["seed"], s["lr"], s["chosen"]) for s in summary["per_seed"]] == [
        (0, 0.001, True), (1, 0.001, True), (2, 0.001, True), (0, 0.2, False), (1, 0.2, False), (2, 0.2, False)]
    # per_lr's figures are the members' own: val from the history's final epoch, test from per_seed
    runs, history = store.load(tmp_path / "results")
    assert len(runs) == 6 and runs["chosen"].sum() == 3 and set(runs[runs.chosen]["lr"]) == {0.001}
    final = history[(history.split == "val") & (history.epoch == 5)]
    for lr, entry in by_lr.items():
        vals = final[final.lr == lr]["rmse"].dropna()
        assert entry["val"] == pytest.approx(vals.mean()) and entry["val_std"] == pytest.approx(vals.std())
        tests = runs[(runs.lr == lr)]["test_rmse"].dropna()
        assert entry["test"] == pytest.approx(tests.mean())
    saved = json.loads((store.run_dir(tmp_path / "results", "default", summary["run_id"]) / "summary.json").read_text())
    assert saved["per_lr"] == summary["per_lr"]


# ------------------------------------------------------------------------------------------------
# the grid is a budget: extended past the edge the choice sits at, until the choice is inside

SGD = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


def scored(*entries, higher=True):
    """A per_lr table from (lr, mean final val, diverged seeds) entries."""
    return tuning.per_lr([{"lr": lr, "val": val, "test": None, "diverged": bool(d)} for lr, val, d in entries],
                         [lr for lr, _, _ in entries], higher)


def test_the_next_rate_continues_the_grids_own_spacing():
    assert [tuning.beyond(SGD, "above"), tuning.beyond(SGD + [10.0], "above"),
            tuning.beyond(SGD + [10.0, 30.0], "above")] == [10.0, 30.0, 100.0]
    assert [tuning.beyond(SGD, "below"), tuning.beyond([0.001] + SGD, "below")] == [0.001, 0.0003]
    adam = [0.0003, 0.001, 0.003, 0.01, 0.03]
    assert (tuning.beyond(adam, "above"), tuning.beyond(adam, "below")) == (0.1, 0.0001)
    assert (tuning.beyond([0.1, 0.2, 0.4], "above"), tuning.beyond([0.1, 0.2, 0.4], "below")) == (0.8, 0.05)


def test_an_extension_is_triggered_at_each_edge_and_stops_at_each_of_its_conditions():
    grid = [0.1, 0.3, 1.0]
    # the choice at the top edge: the next rate above; at the bottom edge: the next below
    assert tuning.extension(scored((0.1, 0.5, 0), (0.3, 0.6, 0), (1.0, 0.7, 0)), grid, True, 3) == 3.0
    assert tuning.extension(scored((0.1, 0.7, 0), (0.3, 0.6, 0), (1.0, 0.5, 0)), grid, True, 3) == 0.03
    assert tuning.extension(scored((0.1, 0.7, 0), (0.3, 0.6, 0), (1.0, 0.5, 0)), grid, False, 3) == 3.0  # lower is better
    # stop 1: the choice is inside
    assert tuning.extension(scored((0.1, 0.5, 0), (0.3, 0.8, 0), (1.0, 0.7, 0)), grid, True, 3) is None
    # stop 2: the next rate was worse (so the old edge is inside now)
    worse = scored((0.1, 0.5, 0), (0.3, 0.6, 0), (1.0, 0.7, 0), (3.0, 0.65, 0))
    assert tuning.extension(worse, grid, True, 3) is None and tuning.bound(worse, grid, True) is None
    # stop 3: the next rate diverged (its best surviving seed does not matter)
    diverged = scored((0.1, 0.5, 0), (0.3, 0.6, 0), (1.0, 0.7, 0), (3.0, 0.9, 1))
    assert tuning.choose(diverged, True) == 1.0 and tuning.extension(diverged, grid, True, 3) is None
    # stop 4: the cap: three rates added above and the best is still the largest -> "at least"
    capped = scored(*[(lr, 0.5 + i / 20, 0) for i, lr in enumerate([0.1, 0.3, 1.0, 3.0, 10.0, 30.0])])
    assert tuning.extension(capped, grid, True, 3) is None and tuning.bound(capped, grid, True) == "at least"
    assert tuning.extension(capped[:5], grid, True, 3) == 30.0  # two added: one more
    assert tuning.extension(scored((0.1, 0.5, 0), (0.3, 0.6, 0), (1.0, 0.7, 0)), grid, True, 0) is None  # cap 0
    assert tuning.extension(scored((0.1, 0.5, 0)), [0.1], True, 3) is None  # one rate: nothing is tuned


def test_the_speed_choice_is_the_rate_reaching_the_target_in_the_fewest_epochs():
    members = [{"lr": 0.1, "val": 0.95, "test": None, "diverged": False, "epochs": e} for e in (9, 10, 11)]
    members += [{"lr": 1.0, "val": 0.93, "test": None, "diverged": False, "epochs": e} for e in (3, 4, None)]
    members += [{"lr": 3.0, "val": 0.90, "test": None, "diverged": e is None, "epochs": e} for e in (1, 1, None)]
    table = tuning.per_lr(members, [0.1, 1.0, 3.0], True)
    assert [e["epochs"] for e in table] == [10, 4, 1]  # medians; a seed that never reaches it counts as never
    assert tuning.choose(table, True) == 0.1  # the best final validation value
    assert tuning.choose_speed(table, True) == 1.0  # fastest among the rates without a diverged seed
    never = tuning.per_lr([{**m, "epochs": None} for m in members], [0.1, 1.0, 3.0], True)
    assert tuning.choose_speed(never, True) == tuning.choose(never, True) == 0.1


@pytest.mark.slow
def test_a_run_extends_its_grid_with_members_equal_to_a_run_at_that_rate(make_config, tmp_path):
    """digits, linear + MSE wants a large step: from [0.1, 0.3, 1] the run trains 3 (and on while the best
    is at the top); each added rate's members are bitwise those of a run at that rate alone, and read the
    first pass's clock."""
    import pandas as pd

    small = ("loss=mse", "activation=linear", "seeds=[0,1]", "trainer.threads=1")
    summary = run(make_config(*small, "optimizer.lr=[0.1,0.3,1.0]", "group=grid"))
    assert summary["lr_declared"] == [0.1, 0.3, 1.0] and summary["lr_grid"][:4] == [0.1, 0.3, 1.0, 3.0]
    assert summary["lr_extended"]["above"] == summary["lr_grid"][3:] and summary["lr_extended"]["below"] == []
    assert summary["tuned"] == (summary["lr_bound"] is None)
    assert [(s["seed"], s["lr"]) for s in summary["per_seed"][6:8]] == [(0, 3.0), (1, 3.0)]
    alone = run(make_config(*small, "optimizer.lr=3.0", "group=alone"))
    for ours, theirs in zip(summary["per_seed"][6:8], alone["per_seed"]):
        assert ours["test"] == theirs["test"] and ours["epochs_to_target"] == theirs["epochs_to_target"]
    grid = pd.read_parquet(store.run_dir(tmp_path / "results", "grid", summary["run_id"]) / "history.parquet")
    solo = pd.read_parquet(store.run_dir(tmp_path / "results", "alone", alone["run_id"]) / "history.parquet")
    added = grid[grid.lr == 3.0].drop(columns="train_seconds").reset_index(drop=True)
    pd.testing.assert_frame_equal(added, solo.drop(columns="train_seconds"), check_exact=True)
    clock = grid[grid.lr == 0.1].groupby("epoch")["train_seconds"].first()
    assert (grid[grid.lr == 3.0].groupby("epoch")["train_seconds"].first() == clock).all()
