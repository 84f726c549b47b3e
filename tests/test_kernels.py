"""The C kernel (bench/kernels.c) computes what torch computes: the forward pass on every input
layout training and evaluation give it, and softmax + CCE with its gradient; it runs only where it
applies, and where it cannot be built training falls back to torch ops after one note. Its gradients
and SGD update are checked against autograd in test_perf.py (test_hand_written_backward_...).
Speed is measured by `make perf`."""
from functools import partial

import pytest
import torch

from bench import kernels
from bench.losses import _cce_and_gradient
from bench.models import EnsembleMLP, build_model
from bench.step import HandWrittenStep, TorchLayers, c_library, make_step
from bench.train import train
from tests.conftest import NEEDS_C_COMPILER
from tests.test_perf import config, setup

pytestmark = NEEDS_C_COMPILER


def kernel_of(model):
    return kernels.Kernel(model, kernels.library())


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_is_the_model_forward_on_every_input_layout(activation):
    # widths 40 (a 32-column block and a tail), 16 (one full block), 7 (a tail only); 37 rows (a partial row tile)
    model = EnsembleMLP((2, 20), [40, 16], 7, seeds=[0, 1, 2], activation=activation)
    kernel = kernel_of(model)
    rows = torch.randn(37, 2, 20, generator=torch.Generator().manual_seed(0))
    chunk = torch.randn(3, 50, 2, 20, generator=torch.Generator().manual_seed(1))
    layouts = {"expanded (evaluation)": rows.expand(3, *rows.shape),
               "per-member contiguous": torch.randn(3, 37, 2, 20),
               "a batch sliced from a gathered chunk (training)": chunk[:, 5:42]}
    with torch.no_grad():
        for name, x in layouts.items():
            torch.testing.assert_close(kernel(x), model(x), rtol=1e-5, atol=1e-6, msg=name)
            torch.testing.assert_close(kernel.forward(x), model(x), rtol=1e-5, atol=1e-6, msg=name)


def test_forward_propagates_nan_like_torch():
    model = EnsembleMLP((8,), [16], 3, seeds=[0, 1])
    with torch.no_grad():
        model.hidden[0].weight[1, 0, 0] = float("nan")  # member 1 diverged
        x = torch.randn(2, 5, 8)
        z = kernel_of(model)(x)
    assert torch.isfinite(z[0]).all() and torch.isnan(z[1]).all()
    torch.testing.assert_close(z[0], model(x)[0].detach())


def test_softmax_cce_is_torch_and_autograd_also_at_extreme_logits():
    kernel = kernel_of(EnsembleMLP((4,), [8], 5, seeds=[0, 1]))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 30, 5, generator=g) * 4
    z[0, 0] = torch.tensor([80.0, -80.0, 0.0, 0.0, 0.0])  # saturated: exp overflows without the max shift
    z[0, 1] = torch.tensor([-80.0, 80.0, 0.0, 0.0, 0.0])  # confidently wrong: a large finite loss
    z[1, 2] = 0.0  # all equal: p = 1/C
    labels = torch.randint(0, 5, (2, 40), generator=g)
    labels[0, 3:5] = 0  # the first two rows of the view below
    t = torch.nn.functional.one_hot(labels, 5).float()[:, 3:33]  # a strided batch view, as training gives
    loss, grad = kernel.cce_and_gradient(z, t)
    expected_loss, expected_grad = _cce_and_gradient(z, t)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)
    assert loss[0, 1] == pytest.approx(160.0, rel=1e-5) and torch.isfinite(loss).all()
    z_leaf = z.clone().requires_grad_(True)
    reference = torch.nn.functional.cross_entropy(z_leaf.reshape(-1, 5), labels[:, 3:33].reshape(-1),
                                                  reduction="none")
    (autograd,) = torch.autograd.grad(reference.sum(), z_leaf)
    torch.testing.assert_close(loss.reshape(-1), reference.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, autograd, rtol=1e-5, atol=1e-6)


def test_the_kernels_run_only_where_they_apply():
    from bench.losses import make_head

    cpu = torch.device("cpu")
    assert c_library(torch.float32, cpu) is not None  # this machine has a C compiler
    assert c_library(torch.float64, cpu) is None and c_library(torch.float32, torch.device("cuda")) is None
    head = make_head("multiclass", 10, 1, "softmax", "cce")

    def layers(model):  # the layers of the step make_step picks, None for autograd
        step = make_step(model, head, torch.optim.SGD(model.parameters(), lr=0.1))
        return step.layers if isinstance(step, HandWrittenStep) else None

    head_widths = dict(input_shape=(64,), n_outputs=10, seeds=[0, 1])
    mlp = build_model(config().model, **head_widths)
    assert isinstance(layers(mlp), kernels.Kernel)
    # a softmax output's curves come from kernels.c on the CPU in float32 (the CNN's too: autograd's step)
    assert make_step(mlp, head, torch.optim.SGD(mlp.parameters(), lr=0.1)).curve_rows is not None
    assert make_step(mlp, head, torch.optim.SGD(mlp.parameters(), lr=0.1), cpu_kernels=False).curve_rows is None
    assert isinstance(layers(mlp.double()), TorchLayers)  # the kernel is float32
    cnn = build_model(config("model=cnn").model, (1, 8, 8), 10, [0, 1])
    assert make_step(cnn, head, torch.optim.SGD(cnn.parameters(), lr=0.1)).curve_rows is not None
    assert layers(build_model(config("model.activation=gelu").model, **head_widths)) is None
    assert layers(build_model(config("model=cnn").model, (1, 8, 8), 10, [0, 1])) is None


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_without_a_compiler_training_falls_back_to_torch_after_one_note(monkeypatch, tmp_path, capsys, compiler):
    cfg, seeds = config("model.hidden=[16]"), [0, 1]
    model, optimizer, head, data = setup(cfg, seeds)
    with_kernel = train(make_step(model, head, optimizer), data, seeds, 2, 32, 1).history
    cc = tmp_path / "cc"
    if compiler == "failing":  # as a compiler without OpenMP: its first error line is the reason given
        cc.write_text("#!/bin/sh\necho 'kernels.c:14:10: fatal error: omp.h: No such file or directory' >&2\nexit 1\n")
        cc.chmod(0o755)
    monkeypatch.setattr(kernels, "_library", None)  # as in a fresh process
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no build cached there
    monkeypatch.setenv("CC", str(cc))
    model, optimizer, head, data = setup(cfg, seeds)
    assert kernels.library() is None
    without = train(make_step(model, head, optimizer), data, seeds, 2, 32, 1).history
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("note: bench/kernels.c could not be built")
    assert "training uses torch ops" in note[0]
    assert ("omp.h: No such file" if compiler == "failing" else "No such file or directory") in note[0]
    for a, b in zip(with_kernel, without):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        assert a["accuracy"] == b["accuracy"]


def test_a_compiler_without_openmp_builds_one_thread_kernels_that_train_the_same(monkeypatch, tmp_path, capsys):
    cfg, seeds = config("model.hidden=[16]"), [0, 1, 2]
    trained = []
    for openmp in (True, False):
        if not openmp:  # as a compiler without OpenMP: it refuses -fopenmp, and is the real one otherwise
            cc = tmp_path / "cc"
            cc.write_text('#!/bin/sh\ncase " $* " in *" -fopenmp "*) '
                          'echo "cc: error: unsupported option \'-fopenmp\'" >&2; exit 1;; esac\nexec cc "$@"\n')
            cc.chmod(0o755)
            monkeypatch.setattr(kernels, "_library", None)  # as in a fresh process
            monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no build cached there
            monkeypatch.setenv("CC", str(cc))
            assert kernels.library() is not None
        model, optimizer, head, data = setup(cfg, seeds)
        train(make_step(model, head, optimizer), data, seeds, 2, 32, 1)
        trained.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "built without OpenMP" in note[0] and "unsupported option" in note[0]
    assert torch.equal(trained[0], trained[1])  # each member is computed the same on one thread
    monkeypatch.setattr(kernels, "_library", None)  # the next process finds that build, and says nothing
    assert kernels.library() is not None and not capsys.readouterr().err


def test_cpu_kernels_false_trains_with_torch_ops_and_is_the_same_run(make_config, monkeypatch):
    from bench.run import run, run_path

    calls = []
    monkeypatch.setattr(kernels.Kernel, "backward",
                        lambda self, *a, original=kernels.Kernel.backward: calls.append(1) or original(self, *a))
    on = make_config("trainer.epochs=1")
    off = make_config("trainer.epochs=1", "trainer.cpu_kernels=false")
    assert run_path(on)[1] == run_path(off)[1]  # how it is computed, not what: the same run
    run(off)
    assert not calls
    run(make_config("trainer.epochs=1", "force=true"))
    assert calls


@pytest.mark.parametrize("task, classes, loss, params", [
    ("multiclass", 5, "cce", {}), ("multiclass", 5, "cce", {"label_smoothing": 0.1}),
    ("multiclass", 5, "bce", {}), ("binary", 2, "cce", {})],
    ids=["cce", "cce-smoothed", "bce", "binary-cce"])
def test_softmax_curves_from_the_kernel_are_the_torch_curves(task, classes, loss, params):
    """Curves reads a softmax output's per-row figures (and softmax + CCE's loss) from kernels.c; torch's
    path gives the same curves, also for a row of ties, a saturated row and a diverged (NaN) member."""
    from bench.losses import make_head
    from bench.metrics import Curves

    g = torch.Generator().manual_seed(0)
    head = make_head(task, classes, 1, "softmax", loss, params)
    y = torch.randint(0, classes, (60,), generator=g)
    z = torch.randn(4, 60, classes, generator=g) * 3
    z[0, 0] = 0.0  # ties: the first class is the label
    z[1, 1, 0], z[1, 1, 1:] = 60.0, -60.0  # saturated: p underflows to 0 off the top class
    z[3] = float("nan")  # a diverged member
    z = z.permute(2, 0, 1).contiguous().permute(1, 2, 0)  # the units outermost, as Evaluation keeps them
    by_torch = Curves(head, y, [40, 20], 1.0, torch.float32)(z)
    by_kernel = Curves(head, y, [40, 20], 1.0, torch.float32, rows=partial(kernels.softmax_figures, kernels.library()))(z)
    assert by_kernel.keys() == by_torch.keys()
    for name, value in by_torch.items():
        torch.testing.assert_close(by_kernel[name], value, rtol=1e-5, atol=1e-6, equal_nan=True, msg=name)
    assert torch.isnan(by_kernel["loss"][3]).all() and torch.isfinite(by_kernel["loss"][:3]).all()


def test_softmax_figures_match_float64_across_the_exponent_range():
    """kernels.c's own exp (e^x for x <= 0, vectorised) against float64, from 0 past float32's smallest
    normal number: rows z = [0, x] of true class 1, whose p is e^x / (1 + e^x)."""
    x = torch.linspace(-104.0, 0.0, 20001)
    z = torch.stack([torch.zeros_like(x), x], -1)[None]  # [1, N, 2]
    figures, labels = kernels.softmax_figures(kernels.library(), z, torch.ones(len(x), dtype=torch.long))
    e = torch.exp(x.double())
    p, sum_exp = e / (1 + e), 1 + e
    torch.testing.assert_close(figures["p_true"][0].double(), p, rtol=1e-6, atol=1e-37)
    torch.testing.assert_close(figures["log_p_true"][0].double(), x.double() - sum_exp.log(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(figures["sum_squares"][0].double(), (1 + e * e) / sum_exp**2, rtol=1e-6, atol=0)
    assert bool((labels == 0).all())  # z = [0, 0] at x = 0: the first
    decided = (1 / sum_exp > 0.5).float() + 1 - 2 * (p > 0.5).float()  # the largest p, 1 / (1 + e^x), and p_y
    assert torch.equal(figures["units_wrong"][0], decided.float()) and figures["units_wrong"][0, -1] == 1


def test_a_member_trains_bit_for_bit_the_same_whatever_k_and_the_threads():
    """Each member's step runs on one thread from start to end: seed 0's parameters after training are the
    same bits alone or among three seeds, on one thread or three (batch 37: a partial last batch)."""
    cfg = config("model.hidden=[40,20]")
    results = []  # seed 0's parameters
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            for seeds in ([0], [0, 1, 2]):
                model, optimizer, head, data = setup(cfg, seeds)
                train(make_step(model, head, optimizer), data, seeds, 2, 37, 1)
                results.append(torch.cat([p.detach()[0].flatten() for p in model.parameters()]))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(r, results[0]) for r in results[1:])
