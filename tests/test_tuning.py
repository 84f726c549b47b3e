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
from bench.losses import make_head
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
    """diabetes, momentum 0.9: at lr 0.2 seed 1 diverges (tests/test_perf.py DIVERGING); at 0.001
    none does. The run picks 0.001 and its status is that of the chosen seeds."""
    cfg = make_config("dataset=diabetes", "loss=mse", "optimizer.momentum=0.9", "model.hidden=[16]",
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
