"""The fused objectives training uses (bench.losses.objective) against float64 hand formulas in numpy,
value and gradient, from moderate logits to saturation (|z| = 50 and 100), where float32 p and 1 - p
round to 0 or 1; and the element-wise losses that call torch's fused functions against hand formulas."""
import math

import numpy as np
import pytest
import torch

from bench.losses import LOSSES, objective

# rows of softmax logits: saturated (|z| = 50, 100), a tie at the top, moderate
SOFTMAX_Z = [[50.0, -50.0, 0.0], [100.0, -100.0, 0.0], [-100.0, 100.0, 20.0], [30.0, 30.0, -30.0],
             [0.5, -1.0, 2.0], [3.0, 2.9, -2.0], [0.0, 0.0, 0.0]]
SIGMOID_Z = [-100.0, -50.0, -17.0, -3.0, -0.2, 0.0, 0.7, 4.0, 17.0, 50.0, 100.0]


def softmax_logs(z):
    """float64 (log p, log(1 - p)) [N, C] by their definitions: log(1 - p_c) = log sum_{j != c} e^z_j
    - log sum_j e^z_j, each sum taken directly (leave-one-out), no cancellation."""
    c = z.shape[-1]
    total = np.logaddexp.reduce(z, axis=-1, keepdims=True)
    others = np.stack([np.logaddexp.reduce(np.delete(z, k, axis=-1), axis=-1) for k in range(c)], -1)
    return z - total, others - total


def sigmoid_logs(z):
    """float64 (log sigmoid(z), log sigmoid(-z)) = (-log(1 + e^-z), -log(1 + e^z))."""
    return -np.logaddexp(0, -z), -np.logaddexp(0, z)


def focal_and_slopes(a, b, y, gamma):
    """Per unit f = -(y a + (1 - y) b) exp(gamma (y b + (1 - y) a)) with a = log p, b = log(1 - p),
    0/1 targets y (gamma = 0: BCE), and its partial derivatives in a and b."""
    cross, log_miss = -(y * a + (1 - y) * b), y * b + (1 - y) * a
    factor = np.exp(gamma * log_miss)
    return cross * factor, factor * (gamma * cross * (1 - y) - y), factor * (gamma * cross * y - (1 - y))


def softmax_reference(z, y, gamma):
    """float64 loss [N] (mean over units) and gradient [N, C] of softmax + focal (gamma = 0: BCE), by hand:
    d log p_c / dz_k = [c = k] - p_k and d log(1 - p_c) / dz_k = -(p_c / (1 - p_c)) ([c = k] - p_k), so
    dL/dz_k = (g_k (1 - p_k) - p_k sum_{c != k} g_c) / C with g_c = df/da - p_c / (1 - p_c) df/db, where
    (1 - p_k) g_k is formed without the ratio (it overflows float64's exp range nowhere here)."""
    a, b = softmax_logs(z)
    f, df_da, df_db = focal_and_slopes(a, b, y, gamma)
    odds = np.exp(a - b)  # p / (1 - p)
    g = df_da - odds * df_db
    own = df_da * np.exp(b) - np.exp(a) * df_db  # g_k (1 - p_k)
    c = z.shape[-1]
    others = np.stack([np.delete(g, k, axis=-1).sum(-1) for k in range(c)], -1)
    return f.mean(-1), (own - np.exp(a) * others) / c


def sigmoid_reference(z, y, gamma):
    """float64 loss and d/dz of one sigmoid unit: d log p / dz = 1 - p, d log(1 - p) / dz = -p."""
    a, b = sigmoid_logs(z)
    f, df_da, df_db = focal_and_slopes(a, b, y, gamma)
    return f, df_da * np.exp(b) - df_db * np.exp(a)


def value_and_grad(loss, activation, z, y, **params):
    z = z.clone().requires_grad_(True)
    value = objective(loss, activation, **params)(z, y)
    (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach(), grad


@pytest.mark.parametrize("loss, gamma", [("bce", 0.0), ("focal", 2.0), ("focal", 0.5)])
def test_softmax_bce_and_focal_match_float64_hand_formulas_up_to_saturation(loss, gamma):
    rows = np.array(SOFTMAX_Z)
    z64 = np.repeat(rows, 3, axis=0)  # every row with every class as the target
    y64 = np.tile(np.eye(3), (len(rows), 1))
    params = {"gamma": gamma} if loss == "focal" else {}
    value, grad = value_and_grad(loss, "softmax", torch.tensor(z64, dtype=torch.float32),
                                 torch.tensor(y64, dtype=torch.float32), **params)
    ref_value, ref_grad = softmax_reference(z64, y64, gamma)
    assert np.isfinite(ref_value).all() and ref_value.max() > 60  # saturated rows cost ~ |z|
    np.testing.assert_allclose(value.numpy(), ref_value, rtol=2e-6, atol=1e-6)
    assert torch.isfinite(grad).all()
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss, gamma", [("bce", 0.0), ("focal", 2.0), ("focal", 0.5)])
def test_sigmoid_bce_and_focal_match_float64_hand_formulas_up_to_saturation(loss, gamma):
    z64 = np.repeat(np.array(SIGMOID_Z), 2)[:, None]  # [N, 1], targets 0 and 1 for each logit
    y64 = np.tile([0.0, 1.0], len(SIGMOID_Z))[:, None]
    params = {"gamma": gamma} if loss == "focal" else {}
    value, grad = value_and_grad(loss, "sigmoid", torch.tensor(z64, dtype=torch.float32),
                                 torch.tensor(y64, dtype=torch.float32), **params)
    ref_value, ref_grad = sigmoid_reference(z64, y64, gamma)
    np.testing.assert_allclose(value.numpy(), ref_value[:, 0], rtol=2e-6, atol=1e-6)
    assert torch.isfinite(grad).all()
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-5, atol=1e-6)


def test_bce_label_smoothing_on_both_outputs_matches_the_hand_formula():
    # y -> y (1 - s) + s / 2, then -(y log p + (1 - y) log(1 - p)), float64
    s = 0.2
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 4, generator=g, dtype=torch.float64) * 4
    onehot = torch.nn.functional.one_hot(torch.randint(0, 4, (40,), generator=g), 4).double()
    smooth = onehot.numpy() * (1 - s) + s / 2
    for activation, logs in (("sigmoid", sigmoid_logs), ("softmax", softmax_logs)):
        a, b = logs(z.numpy())
        expected = -(smooth * a + (1 - smooth) * b).mean(-1)
        got = objective("bce", activation, label_smoothing=s)(z, onehot)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_huber_and_log_cosh_match_their_hand_formulas():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(200, 3, generator=g, dtype=torch.float64) * 3
    y = torch.randn(200, 3, generator=g, dtype=torch.float64)
    err = (p - y).numpy()
    for delta in (0.3, 1.0, 2.5):  # 0.5 e^2 inside delta, delta (|e| - delta / 2) outside
        hand = np.where(np.abs(err) <= delta, 0.5 * err ** 2, delta * (np.abs(err) - 0.5 * delta)).mean(-1)
        np.testing.assert_allclose(LOSSES["huber"](p, y, delta=delta).numpy(), hand, rtol=1e-12)
    np.testing.assert_allclose(LOSSES["log_cosh"](p, y).numpy(), np.log(np.cosh(err)).mean(-1), rtol=1e-9,
                               atol=1e-12)
    # float32 at |e| = 100 (cosh overflows there): |e| - log 2, gradient tanh(e) = +-1
    e = torch.tensor([[100.0], [-100.0], [1e-3]], requires_grad=True)
    value = LOSSES["log_cosh"](e, torch.zeros(3, 1))
    torch.testing.assert_close(value[:2], torch.full((2,), 100 - math.log(2)))
    (grad,) = torch.autograd.grad(value.sum(), e)
    torch.testing.assert_close(grad[:, 0], torch.tanh(e.detach()[:, 0]))


def test_targets_broadcast_over_the_member_axis_as_the_curves_pass_them():
    # evaluation passes targets [N, O] against outputs [K, N, O]: the same values as expanded targets
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 20, 4, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (20,), generator=g), 4).double()
    for loss, activation in (("mse", "linear"), ("huber", "sigmoid"), ("bce", "sigmoid"), ("focal", "sigmoid"),
                             ("bce", "softmax"), ("focal", "softmax"), ("log_cosh", "tanh")):
        f = objective(loss, activation)
        torch.testing.assert_close(f(z, y), f(z, y.expand(3, -1, -1)))


def test_mixed_dtypes_promote_as_torch_arithmetic_does():
    # float64 outputs against float32 targets (the curves' case) give float64 losses, the same values
    z = torch.randn(6, 3, dtype=torch.float64)
    y = (torch.rand(6, 3) > 0.5).float()
    for loss, activation in (("mse", "sigmoid"), ("huber", "linear"), ("bce", "sigmoid"), ("bce", "softmax")):
        f = objective(loss, activation)
        assert f(z, y).dtype == torch.float64 == f(z.float(), y.double()).dtype
        torch.testing.assert_close(f(z, y), f(z, y.double()))
