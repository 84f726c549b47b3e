"""The fast harness keeps its promises: divergence is caught at the right
step and frozen exactly (against a plain step-by-step reference), FLOPs and memory are counted right
(against torch's FLOP counter and hand formulas), devices and compile agree, the run path stays
light, and bench.perf runs. Speed itself is measured by `make perf`, never asserted here."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench import store
from bench.datasets import load_dataset
from bench.errors import UserError
from bench.heads import make_head
from bench.models import build_model
from bench.run import resolve_threads, run
from bench.step import make_step
from bench.optim import EnsembleOptimizer, PlainSGD, make_optimizer
from bench.train import memory_estimate, train
from tests.conftest import CONF

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


def config(*overrides):
    """The composed config with `loss=auto` resolved, as bench.run sees it; every seed on the one split
    (`dataset.resample=false`), so the harness can be checked against plain loops over that split."""
    from bench.config import resolve_auto

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return resolve_auto(compose("config", overrides=["dataset.resample=false", *overrides]))


def setup(cfg, seeds):
    """(model, optimizer, head, data) on the CPU for these seeds, as bench.run builds them; with a
    fixed split (`config`), `data.replicate()` is every member's split."""
    data = load_dataset(cfg.dataset, seeds)
    n_targets = data.y.shape[-1] if data.task == "regression" else 1
    head = make_head(data.task, data.n_classes, n_targets, cfg.activation.name, cfg.loss.name,
                     {k: v for k, v in cfg.loss.items() if k != "name"})
    model = build_model(cfg.model, data.input_shape, head.n_outputs, seeds)
    return model, make_optimizer(cfg.optimizer, model.parameters()), head, data


def member_rows(model, k):
    """Every parameter of the ensemble as [K, -] rows, concatenated: [K, P]."""
    return torch.cat([p.detach().reshape(k, -1) for p in model.parameters()], dim=1)


# ------------------------------------------------------------------------------------------------
# divergence: found once per epoch, replayed, frozen exactly

DIVERGING = ("dataset=diabetes", "loss=mse", "optimizer.lr=0.2", "optimizer.momentum=0.9", "model.hidden=[16]")


def reference_training(cfg, seeds, epochs, batch_size):
    """The obvious loop the harness must agree with: every step, check each member's loss on the
    host; a member whose loss is NaN/inf is diverged at that step, leaves the loss, and gets its
    parameters from before the step back after the update (frozen, whatever the optimizer). A batch's
    rows are padded as the harness pads them (bench.train.padded: the same matrix kernels, whose
    last-bit differences this learning rate near divergence amplifies); the loss is the real rows'."""
    from bench.train import padded

    model, optimizer, head, data = setup(cfg, seeds)
    split = data.replicate()
    params, k, n = list(model.parameters()), len(seeds), len(split.x_train)
    targets = head.encode(split.y_train)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    alive, died, step = [True] * k, [-1] * k, 0
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators])
        for i in range(0, n, batch_size):
            step += 1
            idx = order[:, i:i + batch_size]
            rows = idx.shape[1]
            idx = padded(idx)
            losses = head.objective(model(split.x_train[idx]), targets[idx])[:, :rows].mean(1)
            for m in range(k):
                if alive[m] and not math.isfinite(losses[m].item()):
                    alive[m], died[m] = False, step
            before = [p.detach().clone() for p in params]
            sum(losses[m] for m in range(k) if alive[m]).backward()
            optimizer.step()
            optimizer.zero_grad()
            with torch.no_grad():
                for p, b in zip(params, before):
                    for m in range(k):
                        if not alive[m]:
                            p[m] = b[m]
    return member_rows(model, k), died


def test_diverged_member_is_caught_at_its_step_frozen_and_the_others_are_unaffected():
    """The parameters equal the reference loop's, the diverged member's from before its step."""
    cfg, seeds, epochs = config(*DIVERGING), [0, 1, 2], 5
    expected_rows, expected_died = reference_training(cfg, seeds, epochs, 32)
    assert expected_died[1] == 24 and expected_died[0] == expected_died[2] == -1  # the setting works

    model, optimizer, head, data = setup(cfg, seeds)
    # the autograd step, as the reference: the loop is under test here, not the step (the hand-written
    # step's gradients equal autograd's to rounding, which this learning rate near divergence amplifies)
    trained = train(make_step(model, head, optimizer, hand_written=False), data, seeds, epochs, 32, 1)
    history, died, steps = trained.history, trained.diverged_step, trained.steps_per_epoch
    assert died == expected_died and steps == 9
    torch.testing.assert_close(member_rows(model, 3), expected_rows, rtol=1e-5, atol=1e-6)
    # its curve ends at the divergence (step 24 is in epoch 3); the others' curves go on
    val = {(r["seed"], r["epoch"]): r["rmse"] for r in history if r["split"] == "val"}
    assert math.isfinite(val[1, 2]) and all(math.isnan(val[1, e]) for e in (3, 4, 5))
    # the survivors have the curves they have without the diverging member (a run of K > 1: K = 1
    # takes another torch matmul kernel, whose last-bit differences this lr near divergence amplifies)
    survivors, optimizer, _, _ = setup(cfg, [0, 2])
    trained = train(make_step(survivors, head, optimizer, hand_written=False), data, [0, 2], epochs, 32, 1)
    without, without_died = trained.history, trained.diverged_step
    assert without_died == [-1, -1]
    torch.testing.assert_close(member_rows(survivors, 2), member_rows(model, 3)[[0, 2]], rtol=1e-6, atol=1e-7)
    for seed in (0, 2):
        ours = [r["rmse"] for r in history if r["seed"] == seed]
        assert ours == pytest.approx([r["rmse"] for r in without if r["seed"] == seed], rel=1e-6)


# ------------------------------------------------------------------------------------------------
# the MLP's hand-written step: autograd's gradients and curves, selected only where it applies


@pytest.mark.parametrize("hidden_activation", ["relu", "tanh"])
@pytest.mark.parametrize("overrides", [(), ("loss.label_smoothing=0.1",),
                                       ("dataset=breast_cancer", "loss=mse", "activation=sigmoid"),
                                       ("dataset=diabetes", "loss=huber")],
                         ids=["cce", "cce-smoothed", "sigmoid-mse", "huber"])
def test_hand_written_backward_gives_autograd_gradients(hidden_activation, overrides):
    """The hand-written step (bench.step.TorchLayers) at odd sizes (37 rows, widths 40 and 20)."""
    from bench.step import HandWrittenStep, TorchLayers, member_losses

    cfg = config(*overrides, f"model.activation={hidden_activation}", "model.hidden=[40,20]")
    model, _, head, data = setup(cfg, [0, 1, 2])
    split = data.replicate()
    x = split.x_train[:37].expand(3, *split.x_train[:37].shape)
    t = head.encode(split.y_train[:37]).to(x.dtype).expand(3, 37, head.n_outputs)
    weights = torch.tensor([1.0, 0.0, 1.0])  # a diverged member's loss leaves the sum
    reference = member_losses(model, head, torch.float32)(x, t)
    expected = torch.autograd.grad(reference, list(model.parameters()), weights)
    layers = TorchLayers(model)
    step = HandWrittenStep(model, head, torch.optim.SGD(model.parameters(), lr=0.1), layers)
    assert step.sgd_step is None  # a torch optimizer: the backward sets .grad
    losses = step(x, t)
    assert not losses.requires_grad  # no autograd graph through the layers
    step.backward(weights)
    torch.testing.assert_close(losses, reference.detach())
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
    # with plain SGD its backward applies the update itself, p -= lr * grad, and leaves no .grad
    before = [p.detach().clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    step = HandWrittenStep(model, head, PlainSGD(model.parameters(), 0.1), layers)
    assert torch.equal(step.sgd_step, torch.full((3, 1, 1), -0.1))  # every member at 0.1
    step(x, t)
    step.update(weights)
    for p, b, g in zip(model.parameters(), before, expected):
        assert p.grad is None
        torch.testing.assert_close(p.detach(), b - 0.1 * g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides", [(), ("optimizer=adam",), ("optimizer.momentum=0.9",),
                                       ("dataset=diabetes", "loss=mae", "model.activation=tanh")],
                         ids=["sgd", "adam", "momentum", "tanh-mae"])
def test_hand_written_step_trains_the_autograd_curves(overrides):
    cfg, seeds = config(*overrides, "model.hidden=[16]"), [0, 1]
    curves = []
    for hand in (True, False):
        model, optimizer, head, data = setup(cfg, seeds)
        history = train(make_step(model, head, optimizer, hand_written=hand), data, seeds, 3, 32, 1).history
        curves.append([[r.get(c, math.nan) for c in ("loss", "out_grad", cfg.dataset.metric)] for r in history])
        curves.append(member_rows(model, 2))
    # float32 sums in another order: 1e-5 absolute on losses near 1, 1e-6 relative on an rmse near 200
    np.testing.assert_allclose(np.array(curves[0], dtype=float), np.array(curves[2], dtype=float),
                               rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(curves[1], curves[3], rtol=1e-5, atol=1e-6)


def test_cnn_channels_must_be_a_list_of_widths():
    from bench.config import check_model
    from bench.datasets import DATASETS

    for channels in ("8", "[]", "[8,0]"):
        with pytest.raises(UserError, match=r"model.channels=.* must be a non-empty list of positive integers"):
            check_model(config("model=cnn", f"model.channels={channels}").model, DATASETS["mnist"])


@pytest.mark.slow
def test_plain_sgd_is_torch_sgd_and_only_where_torch_sgd_would_be_plain():

    for settings in ("", "optimizer.momentum=0", "optimizer.weight_decay=0.0"):
        cfg = config(*[s for s in [settings] if s])
        params = [torch.nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(i))) for i in range(2)]
        reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
        ours, torchs = make_optimizer(cfg.optimizer, params), torch.optim.SGD(reference, lr=cfg.optimizer.lr)
        assert isinstance(ours, PlainSGD)
        for step in range(3):
            for p, r in zip(params, reference):
                p.grad = torch.full_like(p, 0.5 * step) + p.detach()
                r.grad = p.grad.clone()
            ours.step()
            torchs.step()
        for p, r in zip(params, reference):  # torch adds with alpha (fused): float rounding apart
            torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-7)
    for settings in ("optimizer.momentum=0.9", "optimizer.weight_decay=0.01", "+optimizer.maximize=true", "optimizer=adam"):
        assert isinstance(make_optimizer(config(settings).optimizer, [torch.nn.Parameter(torch.zeros(1))]),
                          EnsembleOptimizer), settings


def test_models_without_a_hand_written_backward_train_through_autograd():
    from bench.step import AutogradStep, member_losses

    head = make_head("multiclass", 10, 1, "softmax", "cce")
    t = torch.nn.functional.one_hot(torch.arange(8) % 10, 10).float().expand(2, 8, 10)
    gelu = build_model(config("model.activation=gelu").model, (64,), 10, [0, 1])
    cnn = build_model(config("model=cnn").model, (1, 8, 8), 10, [0, 1])
    for model, x in ((gelu, torch.randn(2, 8, 64)), (cnn, torch.randn(2, 8, 1, 8, 8))):
        expected = torch.autograd.grad(member_losses(model, head, torch.float32)(x, t).sum(),
                                       list(model.parameters()))
        step = make_step(model, head, PlainSGD(model.parameters(), 0.1))
        assert isinstance(step, AutogradStep) and step.sgd_step is None  # autograd sets .grad for the optimizer
        losses = step(x, t)
        assert losses.shape == (2,)
        step.backward(torch.ones(2))
        for p, g in zip(model.parameters(), expected):
            torch.testing.assert_close(p.grad, g)


# ------------------------------------------------------------------------------------------------
# evaluation: a fixed subset of the training split, metrics batched over evaluation points

def test_evaluation_outputs_in_chunks_are_the_outputs_in_one_pass(monkeypatch):
    """Chunks are sized by the widest activation (128 here, twice the input), and change no value."""
    from bench import train as train_module
    from bench.step import TorchLayers

    cfg = config("model.hidden=[128]", "dataset.resample=true")
    model = build_model(cfg.model, (64,), 10, [0, 1, 2])
    data = load_dataset(cfg.dataset, [0, 1, 2])  # each member its own rows
    rep = data.replicate_of([0, 1, 2])
    rows = data.test[rep][:, :100]  # [3, 100]
    for forward in (model, TorchLayers(model)):
        sizes = []
        with torch.no_grad():
            whole = train_module._outputs(forward, data, rep, rows, model.widest_row())
            monkeypatch.setattr(train_module, "EVAL_ELEMENTS", 3 * 128 * 32)  # chunks of 32 rows: 32, 32, 32, 4
            chunked = train_module._outputs(lambda x: sizes.append(x.shape[1]) or forward(x), data, rep, rows,
                                            model.widest_row())
            monkeypatch.undo()
        assert sizes == [32, 32, 32, 16]  # the last chunk padded to whole ROW_ALIGN rows
        assert whole.shape == chunked.shape == (3, 100, 10)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
        x = torch.stack([data.replicate(r).x_test[:100] for r in range(3)])  # each member's own test rows
        torch.testing.assert_close(whole, model(x).detach(), rtol=1e-5, atol=1e-6)


def test_train_curves_use_a_fixed_subset_as_large_as_val():
    from bench.train import train_curve_rows

    rows = train_curve_rows(1000, 200)
    assert len(rows) == 200 == len(set(rows.tolist())) and bool((rows.diff() > 0).all())
    assert 0 <= rows.min() and rows.max() < 1000
    assert torch.equal(rows, train_curve_rows(1000, 200))  # the same rows for every run and member
    assert torch.equal(train_curve_rows(1000, 200, -1), torch.arange(1000))
    assert len(train_curve_rows(1000, 200, 300)) == 300
    assert torch.equal(train_curve_rows(100, 200), torch.arange(100))  # a small split: every row


def test_train_curves_are_the_metrics_of_those_rows(make_config):
    """The history's train rows equal scikit-learn on the subset's rows for the final parameters,
    and trainer.train_curve_rows=-1 evaluates every row."""
    from bench.metrics import final_metrics
    from bench.train import train_curve_rows

    for rows_setting in (0, -1):
        cfg = config("seeds=[0,1]", f"trainer.train_curve_rows={rows_setting}", "model.hidden=[16]")
        model, optimizer, head, data = setup(cfg, [0, 1])
        history = train(make_step(model, head, optimizer), data, [0, 1], 2, 32, 1,
                        train_curve_rows=rows_setting).history
        split = data.replicate()
        rows = train_curve_rows(len(split.x_train), len(split.x_val), rows_setting)
        with torch.no_grad():
            z = model(split.x_train[rows].expand(2, len(rows), -1))
        last = [r for r in history if r["epoch"] == 2 and r["split"] == "train"]
        for k, row in enumerate(last):
            reference = final_metrics(head, split.y_train[rows], z[k])
            assert row["seed"] == k
            for name in ("accuracy", "log_loss", "f1_macro", "brier"):
                assert math.isclose(row[name], reference[name], rel_tol=1e-5, abs_tol=1e-6), (rows_setting, name)


def test_metrics_batched_over_evaluation_points_equal_point_by_point(monkeypatch):
    """Evaluation keeps the outputs of several points and computes their metrics in one pass; the
    history is the one computed point by point (KEEP_ELEMENTS = 1)."""
    from bench.train import Evaluation

    cfg = config("seeds=[0,1,2]", "model.hidden=[16]")
    histories = []
    for keep in (Evaluation.KEEP_ELEMENTS, 1):
        monkeypatch.setattr(Evaluation, "KEEP_ELEMENTS", keep)
        model, optimizer, head, data = setup(cfg, [0, 1, 2])
        history = train(make_step(model, head, optimizer), data, [0, 1, 2], 4, 32, 1).history
        histories.append(history)
    assert len(histories[0]) == len(histories[1]) == 5 * 2 * 3  # points x splits x seeds
    for batched, single in zip(*histories):
        assert batched.keys() == single.keys()
        for key, value in batched.items():
            if key == "train_seconds":  # a clock reading
                continue
            if isinstance(value, float):
                assert math.isclose(value, single[key], rel_tol=1e-6, abs_tol=1e-7), key
            else:
                assert value == single[key], key


# ------------------------------------------------------------------------------------------------
# counting: FLOPs of a step, memory of a run, threads

def test_step_flops_agree_with_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from bench.perf import step_flops

    cfg = config("model.hidden=[32,16]")
    model = build_model(cfg.model, (12,), 5, [0, 1, 2, 3])
    x = torch.randn(4, 16, 12)
    with FlopCounterMode(display=False) as counter:
        model(x).square().sum().backward()
    # by hand: forward and weight gradient 2*K*B*in*out per layer, input gradient for layers 2 and 3
    by_hand = 2 * 4 * 16 * (2 * (12 * 32 + 32 * 16 + 16 * 5) + 32 * 16 + 16 * 5)
    assert step_flops(model, 16) == counter.get_total_flops() == by_hand


def test_memory_estimate_counts_parameters_and_activations_by_hand():
    cfg = config("model.hidden=[32,16]")
    model = build_model(cfg.model, (12,), 5, [0, 1, 2])
    parts = memory_estimate(model, (12,), k=3, batch_size=64, n_rows=1000, n_outputs=5, state_size=2)
    per_member = 12 * 32 + 32 + 32 * 16 + 16 + 16 * 5 + 5
    assert parts["parameters"] == 3 * per_member * 4 * (3 + 2)  # value, grad, snapshot, 2 Adam moments
    # kept for the backward per example: the input and each hidden activation; plus the output;
    # twice over for the gradients flowing back
    assert parts["activations"] == 2 * 64 * 3 * (12 + 32 + 16 + 5) * 4
    assert parts["data"] == 1000 * 12 * 4
    from bench.train import EVAL_ELEMENTS, Evaluation
    # an evaluation chunk: its input, 2 hidden activations and the output, each at most EVAL_ELEMENTS
    assert parts["evaluation"] == (4 * EVAL_ELEMENTS + 2 * 3 * 1000 * 5 + 1000 * 12 + 10 * Evaluation.KEEP_ELEMENTS) * 4
    deeper = build_model(config("model.hidden=[32,16,8]").model, (12,), 5, [0, 1, 2])
    assert memory_estimate(deeper, (12,), 3, 64, 1000, 5, 2)["evaluation"] - parts["evaluation"] == EVAL_ELEMENTS * 4


def test_models_know_their_widest_activation_per_example():
    assert build_model(config("model.hidden=[32,100]").model, (12,), 5, [0]).widest_row() == 100
    assert build_model(config("model.hidden=[]").model, (700,), 5, [0]).widest_row() == 700  # the input
    cnn = build_model(config("model=cnn", "model.channels=[8,16]", "model.hidden=[64]").model, (1, 8, 8), 10, [0])
    assert cnn.widest_row() == 8 * 8 * 8  # the first convolution's output, before its pooling


def test_a_run_that_cannot_fit_is_refused_before_training(make_config, monkeypatch, tmp_path):
    import bench.run

    monkeypatch.setattr(bench.run, "available_memory", lambda device: 2 ** 20)  # a 1 MiB device
    with pytest.raises(UserError, match=r"members \(seeds x learning rates\) x trainer.batch_size = 2 x 32 needs "
                                        r"about .* fewer seeds or learning rates or a smaller trainer.batch_size"):
        run(make_config())
    results = tmp_path / "results"
    assert not results.exists() or not any(p.name == "summary.json" for p in results.rglob("*"))


def test_a_model_too_large_for_the_machine_is_one_line_exit_2(cli_inline, tmp_path):
    # moons (2 inputs): the first layer is small (digits' 64 inputs make it 1.3 GB to fill first)
    code, _, err = cli_inline(["dataset=moons", "model.hidden=[1000000,1000000]"])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "fewer seeds or learning rates or a smaller model" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("summary.json"))


def test_auto_threads_use_one_core_for_a_small_step_or_a_busy_machine(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0))
    small = build_model(config().model, (64,), 10, [0, 1, 2, 3, 4])  # 5 x 8906 parameters
    large = build_model(config().model, (64,), 10, list(range(32)))  # 32 x 8906
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # a quiet machine
    assert resolve_threads(0, small, 32) == 1  # 6 * 32 * 44530 = 8.5 MFLOP a step
    assert resolve_threads(0, large, 32) == cores  # 6 * 32 * 284992 = 55 MFLOP a step
    assert resolve_threads(3, small, 32) == 3  # as set
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 0.0, 0.0))  # every core already busy
    assert resolve_threads(0, large, 32) == 1


# ------------------------------------------------------------------------------------------------
# devices, dtype, compile

def history_without_time(summary, results_dir):
    import pandas as pd

    frame = pd.read_parquet(store.run_dir(results_dir, summary["group"], summary["run_id"]) / "history.parquet")
    return frame.drop(columns=["train_seconds"])


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="device=auto is CUDA on this machine")
def test_device_cpu_and_auto_give_identical_results_on_a_cpu_machine(make_config):
    import pandas as pd

    a = run(make_config("device=cpu", "dataset=breast_cancer", "loss=bce"))
    b = run(make_config("device=auto", "dataset=breast_cancer", "loss=bce"))
    assert a["environment"]["device"] == b["environment"]["device"] == "cpu"
    results = make_config().results_dir
    pd.testing.assert_frame_equal(history_without_time(a, results), history_without_time(b, results))
    assert [s["test"] for s in a["per_seed"]] == [s["test"] for s in b["per_seed"]]


@pytest.mark.slow
def test_compile_gives_the_same_curves(make_config):

    eager = run(make_config("trainer.epochs=2"))
    compiled = run(make_config("trainer.epochs=2", "trainer.compile=true"))
    results = make_config().results_dir
    a, b = history_without_time(eager, results), history_without_time(compiled, results)
    for column in ("loss", "accuracy", "out_grad"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-4, atol=1e-5)


def test_bfloat16_autocast_step_keeps_float32_weights_and_loss():
    """The bfloat16 path (CUDA in a run) checked with CPU autocast: the model's matmuls in bfloat16,
    the loss in float32, close to the float32 loss, and gradients for the float32 weights."""
    from bench.step import member_losses

    cfg = config()
    model, _, head, data = setup(cfg, [0, 1])
    split = data.replicate()
    x = split.x_train[:32].expand(2, 32, 64)
    t = head.encode(split.y_train[:32]).expand(2, 32, 10)
    full = member_losses(model, head, torch.float32)(x, t)
    mixed = member_losses(model, head, torch.float32, torch.bfloat16)(x, t)
    assert mixed.dtype == torch.float32 and mixed.shape == (2,)
    torch.testing.assert_close(mixed, full, rtol=2e-2, atol=0)  # bfloat16 keeps ~3 significant digits
    mixed.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@CUDA
def test_cuda_run_matches_the_cpu_run(make_config):

    cpu = run(make_config("device=cpu", "trainer.epochs=2"))
    gpu = run(make_config("device=cuda", "trainer.epochs=2"))
    assert gpu["environment"]["device"].startswith("cuda") and gpu["status"] == "done"
    results = make_config().results_dir
    a, b = history_without_time(cpu, results), history_without_time(gpu, results)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-3, atol=1e-4)


@CUDA
def test_bfloat16_on_cuda_learns(make_config):
    summary = run(make_config("device=cuda", "trainer.dtype=bfloat16", "trainer.epochs=5"))
    assert summary["status"] == "done"
    assert all(s["test"]["accuracy"] > 0.8 for s in summary["per_seed"])  # 10 classes: chance is 0.1


@CUDA
def test_cuda_memory_check_reads_the_device(make_config):
    from bench.run import available_memory

    free, total = torch.cuda.mem_get_info()
    assert 0 < available_memory(torch.device("cuda")) <= total


@CUDA
def test_perf_runs_on_cuda(tmp_path):
    out = tmp_path / "perf.json"
    subprocess.run([sys.executable, "-m", "bench.perf", "device=cuda", "epochs=1", "repeats=1", "seeds=1,8",
                    "cli=false", f"out={out}"], check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["environment"]["device"].startswith("cuda") and report["matmul_flops"]["median"] > 0


# ------------------------------------------------------------------------------------------------
# the run path and the benchmark tool

@pytest.mark.slow
def test_the_run_path_imports_no_report_or_plot_library(tmp_path):
    # nor torch._dynamo, which building a torch optimizer imports (~1 s): the default SGD is PlainSGD
    code = ("import sys, runpy\n"
            f"sys.argv = ['bench.run', 'trainer.epochs=1', 'seeds=[0]', 'progress=false', 'results_dir={tmp_path}']\n"
            "try:\n    runpy.run_module('bench.run', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('matplotlib', 'seaborn', 'jinja2', 'torch._dynamo') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_plain_baseline_is_a_real_training_loop():
    from bench.tutorial_loop import plain_loop

    data = load_dataset(config().dataset).replicate()
    seconds, model = plain_loop(data.x_train, data.y_train, "multiclass", [64, 64], 10, 5, 32, 0.1, "sgd", 0,
                                torch.device("cpu"))
    accuracy = (model(data.x_val).argmax(1) == data.y_val).float().mean().item()
    assert seconds > 0 and accuracy > 0.85  # digits after 5 epochs of SGD; chance is 0.1


@pytest.fixture
def perf_inline(monkeypatch, capsys):
    """perf_inline(*args) -> (exit code, stdout, stderr) of `python -m bench.perf ARGS` called in this
    process (bench.perf.main, without the start-up), its large-matmul reference at n = 1024 (2 GFLOP
    a product) instead of 4096 (137 GFLOP: seconds on this machine); torch's threads restored after."""
    import functools

    from bench import perf

    monkeypatch.setattr(perf, "matmul_flops", functools.partial(perf.matmul_flops, n=1024))
    threads = torch.get_num_threads()

    def call(*args):
        try:
            code = perf.main(list(args))
        except SystemExit as exit:
            code = exit.code
        finally:
            torch.set_num_threads(threads)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


@pytest.mark.slow
def test_perf_writes_its_figures(tmp_path, perf_inline):
    out = tmp_path / "perf.json"
    code, stdout, err = perf_inline("epochs=1", "repeats=1", "seeds=1,2", "grid=2x3", "cli=false", "objectives=false",
                                    "packed=false", f"out={out}")
    assert code == 0, err
    report = json.loads(out.read_text())
    assert [row["row"] for row in report["rows"]] == ["harness K=1", "harness K=2", "harness K=6 (2 seeds x 3 lrs)"]
    assert report["rows"][2]["grid"] == [0.003, 0.01, 0.03]  # the first 3 of SGD's lr_grid
    assert len(report["seconds"]["plain"]) == 1 and report["median_seconds"]["plain"] > 0
    for row, k in zip(report["rows"], (1, 2, 6)):
        assert row["seconds_per_member"] == pytest.approx(row["seconds"] / k)
        assert 0 < row["flops_fraction"] < 1.5
    assert set(report["checks"]) == {"speedup_k1", "speedup_per_member_k8", "speedup_per_member_k32",
                                     "flops_fraction_k32", "eval_overhead_k8", "cli_seconds",
                                     "grid_per_member_vs_k32", "objective_spread", "kl_div_vs_cce",
                                     "second_vs_first_job",
                                     "packed_clock_deviation", "packed_vs_alone"}
    assert report["checks"]["packed_vs_alone"]["value"] is None and "pack" not in report
    assert "plain loop" in stdout and "harness K=2" in stdout


@pytest.mark.slow
def test_perf_times_a_pack_its_configurations_alone_and_their_clocks(tmp_path, perf_inline):
    """The packed rows on wine: the classification grid's 12 valid (activation, loss) pairs, each 5 seeds
    x SGD's 7 rates; every figure follows from the rounds' own seconds."""
    out = tmp_path / "perf.json"
    code, stdout, err = perf_inline("dataset=wine", "epochs=2", "repeats=1", "seeds=1", "grid=none", "cli=false",
                                    "objectives=false", "packed=true", "clock_epochs=1", f"out={out}")
    assert code == 0, err
    pack = json.loads(out.read_text())["pack"]
    assert len(pack["configurations"]) == 12 and pack["members"] == 12 * 35
    (round_,) = pack["rounds"]
    assert pack["packed_seconds"] == round_["packed"] > 0 and pack["alone_seconds"] == pytest.approx(sum(round_["alone"]))
    for i, name in enumerate(pack["configurations"]):
        per_epoch = round_["alone"][i] / 2
        assert pack["clock_vs_alone_per_epoch"][name] == pytest.approx(round_["clock_per_epoch"][i] / per_epoch)
    assert pack["clock_deviation"] == pytest.approx(max(abs(r - 1) for r in pack["clock_vs_alone_per_epoch"].values()))
    assert "packed classification wine pack: 12 configurations, 420 members" in stdout


@pytest.mark.slow
def test_perf_times_every_valid_objective_and_the_job_order(tmp_path, perf_inline):
    from bench.losses import VALIDITY

    out = tmp_path / "perf.json"
    # small: a narrow MLP, 9 steps an epoch, no learning-rate grid row (not what this test checks)
    code, stdout, err = perf_inline("epochs=1", "repeats=1", "seeds=8", "cli=false", "objective_epochs=1",
                                    "hidden=16", "batch_size=128", "grid=none", f"out={out}")
    assert code == 0, err
    report = json.loads(out.read_text())
    valid = {f"{a}+{l}" for (t, a, l), why in VALIDITY.items() if t == "multiclass" and why is None}
    assert set(report["objective_seconds_per_epoch"]) == valid and len(valid) == 32  # 26 + 4 robust + 2 calibration losses
    assert all(s > 0 for s in report["objective_seconds_per_epoch"].values())
    assert set(report["objective_ratio"]) == valid and report["objective_ratio"]["softmax+cce"] > 0
    first, second = report["job_order_seconds"]["repeats"][0]
    assert first > 0 and second > 0
    for name in ("objective_spread", "kl_div_vs_cce", "second_vs_first_job"):
        assert report["checks"][name]["value"] is not None
    assert "softmax+kl_div" in stdout and "first / second job" in stdout


@pytest.mark.slow
def test_one_off_costs_are_paid_before_the_clock_starts(tmp_path):
    """In a fresh process, the first autograd.grad with grad_outputs (every objective's gradient) imports
    torch.fx's symbolic shapes and sympy (~1.1 s): train's untimed warm-up step pays it before the clock's
    first read, and undoes its update (the same parameters as a run without it: K = 2 vs 1 + 1)."""
    script = """
import sys, torch
from tests.test_perf import config, setup, member_rows
from bench.step import make_step
from bench.train import train
MODULE = "torch.fx.experimental.symbolic_shapes"
assert MODULE not in sys.modules
seen = []
def clock():
    seen.append(MODULE in sys.modules)
    return 0.0
cfg = config("dataset=wine", "loss=kl_div", "model.hidden=[8]")
model, optimizer, head, data = setup(cfg, [0, 1])
train(make_step(model, head, optimizer), data, [0, 1], 2, 16, 1, clock=clock)
print(seen[0], len(seen))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=str(CONF.parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "4"]  # imported before the first of 2 epochs x 2 clock reads


@pytest.mark.parametrize("args, named", [(["bogus=1"], "option='bogus'"), (["epochs=0"], "epochs=0"),
                                         (["device=tpu"], "device='tpu'"), (["dtype=int8"], "dtype='int8'"),
                                         (["grid=5"], "grid='5'"), (["grid=0x7"], "grid='0x7'")])
def test_perf_bad_option_is_one_line_exit_2(tmp_path, perf_inline, args, named):
    code, _, err = perf_inline(*args, f"out={tmp_path / 'p.json'}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in err
    assert not (tmp_path / "p.json").exists()


def test_perf_help_lists_every_option(perf_inline):
    code, out, _ = perf_inline("--help")
    assert code == 0
    for option in ("dataset", "hidden", "batch_size", "device", "threads", "repeats", "out"):
        assert f"  {option} " in out


def test_grid_check_is_the_median_of_per_round_ratios():
    from bench.perf import checks

    # round 2 ran in a slow phase for both rows: the paired ratios say 1.0, 1.0, 0.5 -> median 1.0;
    # the ratio of the medians (0.2/32) / (0.4/35) would say 0.55
    rounds = [(0.1, 35 / 32 * 0.1), (0.2, 35 / 32 * 0.2), (0.4, 35 / 32 * 0.8)]
    report = {"rows": [{"row": "harness K=32", "seconds_per_member": 0.2 / 32},
                       {"row": "harness K=35 (5 seeds x 7 lrs)", "grid": [0.1], "seconds_per_member": 0.4 / 35}],
              "eval_k8": {"overhead": 0.1},
              "grid_vs_k32_by_round": [(a / 32) / (b / 35) for a, b in rounds]}
    assert checks(report)["grid_per_member_vs_k32"]["value"] == pytest.approx(1.0)
    del report["grid_vs_k32_by_round"]  # an older report: the ratio of the medians
    assert checks(report)["grid_per_member_vs_k32"]["value"] == pytest.approx((0.2 / 32) / (0.4 / 35))
