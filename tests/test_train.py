"""The training loop's promises that the step does not keep by itself: parameters made NaN by an
update (the last one of an epoch or of the run included) mark the member diverged and freeze it at
its last finite values, and the run is recorded, never failed, for it."""
import json

import pytest
import torch

from tests.test_perf import config, member_rows, setup
from bench.step import make_step
from bench.train import train


class PoisonLastUpdate:
    """A real step whose update makes member `victim`'s parameters NaN at the last step of the first
    `passes` passes over the data (the epoch and its replay), after a finite loss: the case a check of
    the loss alone misses. `before`: that member's parameters just before the last poisoned update."""

    def __init__(self, step, steps_per_epoch, victim=1, passes=2):
        self.step, self.spe, self.victim, self.passes = step, steps_per_epoch, victim, passes
        self.updates, self.before = 0, None

    def __getattr__(self, name):
        return getattr(self.step, name)

    def __call__(self, x, t, n=None):
        return self.step(x, t, n)

    def update(self, weights):
        self.updates += 1
        done = self.updates - 1  # training's updates so far (the first is train's untimed warm-up, undone)
        poison = done > 0 and done % self.spe == 0 and done <= self.passes * self.spe
        if poison:
            self.before = [p.detach()[self.victim].clone() for p in self.step.params]
        self.step.update(weights)
        if poison:
            with torch.no_grad():
                self.step.params[0][self.victim].fill_(float("nan"))


def test_nan_parameters_after_an_epochs_last_update_freeze_the_member_at_its_last_finite_values():
    cfg, seeds, epochs = config("dataset=digits", "model.hidden=[16]"), [0, 1, 2], 3
    model, optimizer, head, data = setup(cfg, seeds)
    spe = -(-data.train.shape[1] // 256)
    step = PoisonLastUpdate(make_step(model, head, optimizer), spe)
    trained = train(step, data, seeds, epochs, 256, 1)
    assert trained.diverged_step == [-1, spe, -1]  # the last update of epoch 1
    rows = member_rows(model, 3)
    assert torch.isfinite(rows).all()
    torch.testing.assert_close(rows[1], torch.cat([b.reshape(-1) for b in step.before]), rtol=0, atol=0)
    val = {(r["seed"], r["epoch"]): r["accuracy"] for r in trained.history if r["split"] == "val"}
    assert all(val[1, e] != val[1, e] for e in (1, 2, 3)) and val[1, 0] == val[1, 0]  # NaN from epoch 1
    # the others train as they do alone
    alone, optimizer, _, _ = setup(cfg, [0, 2])
    train(make_step(alone, head, optimizer), data, [0, 2], epochs, 256, 1)
    torch.testing.assert_close(member_rows(alone, 2), rows[[0, 2]], rtol=1e-6, atol=1e-7)


def test_nan_after_the_last_update_of_the_run_is_a_recorded_run_not_failed(tmp_path, cli_inline):
    # `python -m bench.run ARGS`, in this process: one step of lr 1e30; every seed
    # ends non-finite after the only update
    args = ["dataset=digits", "trainer.epochs=1", "trainer.batch_size=5000", "seeds=[0,1]", "optimizer.lr=1e30"]
    code, _, err = cli_inline(args)
    assert code == 0, err
    (path,) = (tmp_path / "results").glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["status"] == "diverged" and summary["reason"].startswith("2 of 2 seeds diverged")
    assert [(s["status"], s["diverged_step"], s["test"]) for s in summary["per_seed"]] == [("diverged", 1, {})] * 2


def seed_one(overrides, seeds, epochs, optimizer=None):
    """(seed 1's history rows, its parameters [P]) of a run of `seeds`, on one thread."""
    from bench.optim import EnsembleOptimizer

    cfg = config(*overrides)
    model, torch_optimizer, head, data = setup(cfg, seeds)
    opt = torch_optimizer if optimizer is None else EnsembleOptimizer(model.parameters(), optimizer,
                                                                       [cfg.optimizer.lr] * len(seeds))
    trained = train(make_step(model, head, opt), data, seeds, epochs, 32, 1)
    rows = [{k: v for k, v in r.items() if k != "train_seconds"} for r in trained.history if r["seed"] == 1]
    return rows, member_rows(model, len(seeds))[seeds.index(1)]


def bitwise_alike(runs):
    (rows, params), *others = runs
    for other_rows, other_params in others:
        assert torch.equal(other_params, params)
        assert all(r["loss"] == r["loss"] for r in rows)  # no NaN: a diverged member would compare unequal
        assert other_rows == rows  # every curve value, bit for bit


@pytest.mark.slow
def test_a_seed_is_a_seed_one_output_unit_alone_or_among_others():
    """One regression target (one output unit, where torch's K = 1 product takes a matrix-vector kernel):
    seed 1 alone, second of 3 and last of 2 train to the same bits, plain SGD, one thread (as runs of a
    small model use)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    overrides = ("dataset=demand", "loss=mape", "optimizer.lr=0.001", "model.hidden=[16]")
    try:
        bitwise_alike([seed_one(overrides, seeds, 3) for seeds in ([1], [0, 1, 2], [5, 1])])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_seed_is_a_seed_over_60_epochs_of_adam():
    """A case once seen (demand, MAPE, Adam: seed 1 alone vs among 8 drifted to a bias of -14.21 vs
    -19.32), 60 epochs, with bench.optim's Adam (torch's fused Adam rounds a member's elements in its
    vector body and its scalar tail differently, so its numbers depend on where the member sits).
    Small: 400 rows (8 steps an epoch), one hidden layer of 16; torch's fused Adam in its place still
    gives seed 1 other bits alone than among 8 here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    overrides = ("dataset=demand", "dataset.n_samples=400", "model.hidden=[16]", "loss=mape", "optimizer=adam")
    try:
        bitwise_alike([seed_one(overrides, seeds, 60, "adam") for seeds in ([1], list(range(8)), [3, 1, 9])])
    finally:
        torch.set_num_threads(threads)


def test_finite_members_reads_every_element_as_isfinite_does():
    from bench.train import finite_members

    params = [torch.ones(5, 3, 4), torch.ones(5, 1, 4)]
    params[0][0] = 3e38  # large but finite: x * 0 is still 0
    params[0][1, 2, 3], params[1][3, 0, 1], params[1][4, 0, 0] = float("nan"), float("inf"), -float("inf")
    expected = torch.stack([p.view(5, -1).isfinite().all(1) for p in params]).all(0)
    assert finite_members(params, 5).tolist() == expected.tolist() == [True, False, True, False, False]


def test_a_held_member_is_put_back_by_its_own_rows_and_no_other():
    from bench.train import _hold

    params = [torch.randn(4, 3, 2), torch.randn(4, 1, 2)]
    before = [p.clone() for p in params]
    _hold(params, {})  # nobody held: nothing happens
    for p in params:
        p.fill_(float("nan"))
    _hold(params, {m: [v[m] for v in before] for m in (1, 3)})
    for p, b in zip(params, before):
        assert torch.equal(p[[1, 3]], b[[1, 3]]) and p[[0, 2]].isnan().all()
