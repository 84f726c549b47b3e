"""Losses, activations, fused objectives, the validity table, target encoding and the loss anatomy,
against independent references: scikit-learn, torch / torchvision built-ins, hand-derived formulas."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from bench.errors import UserError
from bench.heads import anatomy, check_targets, make_head
from bench.losses import (ACTIVATIONS, CLASSIFICATION_LOSSES, EPS, LOSSES, REGRESSION_LOSSES, TASKS,
                          VALIDITY, canonical_activation, check_loss_params, objective, resolve_pairing)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def float64():
    """References in float64 (the losses are dtype-generic); the global default is restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


def regression_pair(b=64, o=3, positive=False, seed=0):
    g = rng(seed)
    y = torch.randn(b, o, generator=g) * 3
    p = y + torch.randn(b, o, generator=g)
    if positive:
        y, p = y.abs() + 0.1, p.abs() + 0.05
    return p, y


def per_row(reference, p, y):
    """A scikit-learn metric applied to each example (row) separately -> [B] array."""
    return np.array([reference(y[i].numpy(), p[i].numpy()) for i in range(len(y))])


# ---------------------------------------------------------------------------------------------
# regression losses against scikit-learn and torch


@pytest.mark.parametrize("loss, reference, scale", [
    ("mse", skm.mean_squared_error, 1.0),
    ("mae", skm.mean_absolute_error, 1.0),
    ("mape", skm.mean_absolute_percentage_error, 100.0),
])
def test_regression_losses_match_scikit_learn_per_example(loss, reference, scale):
    p, y = regression_pair()
    np.testing.assert_allclose(LOSSES[loss](p, y).numpy(), scale * per_row(reference, p, y), rtol=1e-10)
    # and the batch mean is scikit-learn's figure over the whole batch (uniform over outputs)
    np.testing.assert_allclose(LOSSES[loss](p, y).mean().item(), scale * reference(y.numpy(), p.numpy()),
                               rtol=1e-10)


def test_msle_matches_scikit_learn_on_non_negative_values():
    p, y = regression_pair(positive=True)
    np.testing.assert_allclose(LOSSES["msle"](p, y).numpy(), per_row(skm.mean_squared_log_error, p, y),
                               rtol=1e-9)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_matches_torch_huber_loss(delta):
    p, y = regression_pair()
    expected = torch.nn.HuberLoss(reduction="none", delta=delta)(p, y).mean(-1)
    torch.testing.assert_close(LOSSES["huber"](p, y, delta=delta), expected)


def test_poisson_matches_torch_poisson_nll_both_forms():
    p, y = regression_pair(positive=True)
    y = y.round()  # counts
    reference = torch.nn.PoissonNLLLoss(log_input=False, full=False, eps=EPS, reduction="none")
    torch.testing.assert_close(LOSSES["poisson"](p, y), reference(p, y).mean(-1))
    # exp output: fused as exp(z) - y z = PoissonNLLLoss with log_input=True
    z = torch.randn(64, 3, generator=rng(1))
    log_input = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction="none")
    torch.testing.assert_close(objective("poisson", "exp")(z, y), log_input(z, y).mean(-1))
    torch.testing.assert_close(objective("poisson", "exp")(z, y), LOSSES["poisson"](z.exp(), y), atol=1e-5, rtol=1e-6)


def test_poisson_is_scikit_learns_deviance_less_its_y_only_terms():
    # mean_poisson_deviance = 2 (y log(y / mu) - y + mu) = 2 (loss + y log y - y): the training loss drops
    # the factor 2 and y log y - y, which do not move its minimiser
    mu, y = regression_pair(o=1, positive=True)
    y = y.round() + 1  # counts >= 1
    loss = LOSSES["poisson"](mu, y)  # [B]
    deviance = 2 * (loss + torch.xlogy(y[:, 0], y[:, 0]) - y[:, 0])
    np.testing.assert_allclose(deviance.mean().item(), skm.mean_poisson_deviance(y.numpy(), mu.numpy()), rtol=1e-6)


@pytest.mark.parametrize("power", [1.1, 1.5, 1.9])
def test_tweedie_is_scikit_learns_deviance_less_its_y_only_term(power):
    # mean_tweedie_deviance = 2 [y^(2-p) / ((1-p)(2-p)) - y mu^(1-p) / (1-p) + mu^(2-p) / (2-p)]: the loss is
    # the bracket less its first term (y alone), without the factor 2
    mu, y = regression_pair(o=1, positive=True)
    y[::4] = 0.0  # Tweedie takes zeros (compound Poisson-gamma)
    loss = LOSSES["tweedie"](mu, y, power=power)
    deviance = 2 * (loss + y[:, 0] ** (2 - power) / ((1 - power) * (2 - power)))
    np.testing.assert_allclose(deviance.numpy(), [skm.mean_tweedie_deviance(y[i], mu[i], power=power)
                                                  for i in range(len(y))], rtol=1e-10)
    # on its log links, from the logits: exp (z = log mu) and softplus (z = log(e^mu - 1)) give the same values
    torch.testing.assert_close(objective("tweedie", "exp", power=power)(mu.log(), y), loss)
    torch.testing.assert_close(objective("tweedie", "softplus", power=power)(torch.log(torch.expm1(mu)), y), loss)


def test_tweedie_on_softplus_stays_finite_where_softplus_underflows():
    # float32 softplus(-120) is 0, so mu^(1-p) would be inf, yet the loss there is finite: in theta = log mu
    # (= z to float32 precision this far out, as softplus(z) = e^z (1 - e^z / 2 + ...)) it is
    # -y e^((1-p) theta) / (1-p) + e^((2-p) theta) / (2-p), and its gradient e^((2-p) theta) - y e^((1-p) theta)
    # (hand derivation; d theta / dz = 1 there)
    z = torch.tensor([[-120.0], [-10.0], [3.0]], dtype=torch.float32, requires_grad=True)
    y = torch.tensor([[2.0], [2.0], [2.0]], dtype=torch.float32)
    value = objective("tweedie", "softplus", power=1.5)(z, y)
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert F.softplus(z[0].detach()).item() == 0.0 and torch.isfinite(value).all() and torch.isfinite(grad).all()
    theta = -120.0
    assert value[0].item() == pytest.approx(2 * 2 * math.exp(60) + 2 * math.exp(-60), rel=1e-5)
    assert grad[0, 0].item() == pytest.approx(math.exp(0.5 * theta) - 2 * math.exp(-0.5 * theta), rel=1e-5)


@pytest.mark.parametrize("quantiles", [[0.5], [0.9], [0.1, 0.5, 0.9]])
def test_pinball_matches_scikit_learn_at_each_level(quantiles):
    # two targets, one unit per (target, level), levels innermost: the head repeats each target per level
    g = rng(3)
    y = torch.randn(64, 2, generator=g) * 3
    head = make_head("regression", 0, 2, "linear", "pinball", {"quantiles": quantiles})
    assert head.n_outputs == 2 * len(quantiles) and head.quantiles == tuple(quantiles)
    q = torch.randn(64, head.n_outputs, generator=g) * 3
    loss = LOSSES["pinball"](q, head.encode(y), quantiles=quantiles)  # [B]
    reference = np.mean([skm.mean_pinball_loss(y[:, t].numpy(), q[:, t * len(quantiles) + i].numpy(), alpha=tau)
                         for t in range(2) for i, tau in enumerate(quantiles)])
    np.testing.assert_allclose(loss.mean().item(), reference, rtol=1e-12)
    if quantiles == [0.5]:  # half the absolute error
        torch.testing.assert_close(loss, LOSSES["mae"](q, y) / 2)


def test_the_point_forecast_of_a_quantile_head_is_its_median_level():
    z = torch.arange(6.0).reshape(1, 6)  # one row, two targets x three levels
    head = make_head("regression", 0, 2, "linear", "pinball", {"quantiles": [0.1, 0.5, 0.9]})
    assert head.point(z).tolist() == [[1.0, 4.0]] and head.quantile_predictions(z).shape == (1, 2, 3)
    # no 0.5 level: the nearest, the lower of two equally near
    assert make_head("regression", 0, 1, "linear", "pinball", {"quantiles": [0.2, 0.9]}).point_level == 0
    assert make_head("regression", 0, 1, "linear", "pinball", {"quantiles": [0.1, 0.9]}).point_level == 0
    assert make_head("regression", 0, 1, "linear", "pinball", {"quantiles": [0.1, 0.6]}).point_level == 1
    assert make_head("regression", 0, 1, "linear", "mse").point(z[:, :1]).tolist() == [[0.0]]


def test_labels_name_what_a_loss_forecasts_and_read_back():
    from bench.losses import from_label

    assert LOSSES["pinball"].label({"quantiles": [0.1, 0.5, 0.9]}) == "pinball(0.1,0.5,0.9)"
    assert LOSSES["pinball"].label({}) == "pinball(0.5)"
    assert LOSSES["tweedie"].label({"power": 1.1}) == "tweedie(1.1)" and LOSSES["huber"].label({"delta": 2}) == "huber"
    assert from_label("pinball(0.1,0.9)") == ("pinball", {"quantiles": [0.1, 0.9]})
    assert from_label("tweedie(1.1)") == ("tweedie", {"power": 1.1}) and from_label("mse") == ("mse", {})
    # the report draws a labelled loss's anatomy: pinball at 0.9 against y = 1 at q = z = 0 is 0.9 (1 - 0), slope -0.9
    a = anatomy("pinball(0.9)", "linear", 1.0, z=[0.0])
    assert a["loss"][0] == pytest.approx(0.9) and a["grad"][0] == pytest.approx(-0.9)
    a = anatomy("pinball(0.1,0.9)", "linear", 1.0, z=[2.0])  # one forecast at both levels: (0.9 + 0.1) / 2
    assert a["loss"][0] == pytest.approx((0.9 * 1 + 0.1 * 1) / 2) and a["grad"][0] == pytest.approx((0.9 + 0.1) / 2)


def test_log_cosh_matches_numpy_and_stays_finite_for_large_errors():
    p, y = regression_pair()
    expected = np.log(np.cosh((p - y).numpy())).mean(-1)
    np.testing.assert_allclose(LOSSES["log_cosh"](p, y).numpy(), expected, rtol=1e-9, atol=1e-12)
    big = torch.tensor([[1000.0], [-1000.0]])  # cosh overflows float64 here; log cosh(e) = |e| - log 2
    np.testing.assert_allclose(LOSSES["log_cosh"](big, torch.zeros(2, 1)).numpy(), 1000 - math.log(2))


def test_hinge_matches_scikit_learn_and_squared_hinge_the_hand_formula():
    g = rng(2)
    labels = torch.randint(0, 2, (200,), generator=g)
    y = (2 * labels - 1).double().unsqueeze(-1)  # -1/+1
    score = torch.randn(200, 1, generator=g) * 2
    assert math.isclose(LOSSES["hinge"](score, y).mean().item(),
                        skm.hinge_loss(labels.numpy(), score[:, 0].numpy()), rel_tol=1e-12)
    hand = np.maximum(0, 1 - y.numpy() * score.numpy()) ** 2
    np.testing.assert_allclose(LOSSES["squared_hinge"](score, y).numpy(), hand.mean(-1))


# ---------------------------------------------------------------------------------------------
# classification losses against scikit-learn log_loss and the torch built-ins


def test_bce_matches_scikit_learn_log_loss_and_torch_with_logits():
    g = rng(3)
    z = torch.randn(300, 1, generator=g) * 3
    y = torch.randint(0, 2, (300, 1), generator=g).double()
    composed = LOSSES["bce"](torch.sigmoid(z), y)
    assert math.isclose(composed.mean().item(), skm.log_loss(y[:, 0].numpy(), torch.sigmoid(z)[:, 0].numpy()),
                        rel_tol=1e-9)
    for s in (0.0, 0.2):  # label smoothing by hand: y (1 - s) + s / 2
        expected = F.binary_cross_entropy_with_logits(z, y * (1 - s) + s / 2, reduction="none").mean(-1)
        torch.testing.assert_close(objective("bce", "sigmoid", label_smoothing=s)(z, y), expected)
        torch.testing.assert_close(LOSSES["bce"](torch.sigmoid(z), y, label_smoothing=s), expected)


@pytest.mark.parametrize("s", [0.0, 0.1, 0.3])
def test_cce_matches_torch_cross_entropy_with_label_smoothing(s):
    g = rng(4)
    z = torch.randn(128, 5, generator=g) * 2
    labels = torch.randint(0, 5, (128,), generator=g)
    onehot = F.one_hot(labels, 5).double()
    expected = F.cross_entropy(z, labels, label_smoothing=s, reduction="none")
    torch.testing.assert_close(objective("cce", "softmax", label_smoothing=s)(z, onehot), expected)
    torch.testing.assert_close(LOSSES["cce"](torch.softmax(z, -1), onehot, label_smoothing=s), expected)
    if s == 0:
        assert math.isclose(expected.mean().item(), skm.log_loss(labels.numpy(), torch.softmax(z, -1).numpy(),
                                                                 labels=range(5)), rel_tol=1e-9)


@pytest.mark.parametrize("s", [0.0, 0.2])
def test_kl_div_matches_torch_kl_div(s):
    g = rng(5)
    z = torch.randn(64, 4, generator=g)
    onehot = F.one_hot(torch.randint(0, 4, (64,), generator=g), 4).double()
    target = onehot * (1 - s) + s / 4
    expected = F.kl_div(torch.log_softmax(z, -1), target, reduction="none").sum(-1)
    torch.testing.assert_close(objective("kl_div", "softmax", label_smoothing=s)(z, onehot), expected)
    torch.testing.assert_close(LOSSES["kl_div"](torch.softmax(z, -1), onehot, label_smoothing=s), expected)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_matches_torchvision_sigmoid_focal_loss(gamma):
    from torchvision.ops import sigmoid_focal_loss

    g = rng(6)
    z = torch.randn(100, 3, generator=g) * 3
    y = torch.randint(0, 2, (100, 3), generator=g).double()
    expected = sigmoid_focal_loss(z, y, alpha=-1, gamma=gamma, reduction="none").mean(-1)
    torch.testing.assert_close(objective("focal", "sigmoid", gamma=gamma)(z, y), expected)
    torch.testing.assert_close(LOSSES["focal"](torch.sigmoid(z), y, gamma=gamma), expected)
    if gamma == 0:  # no focusing: binary cross-entropy
        torch.testing.assert_close(expected, F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(-1))


@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_two_softmax_units_equal_one_sigmoid_unit_on_the_logit_margin(loss):
    # softmax(z0, z1) = (1 - s, s) with s = sigmoid(z1 - z0): the element-wise loss over the two
    # one-hot units equals the one-unit loss on the margin (each unit sees the same pair)
    g = rng(7)
    z = torch.randn(50, 2, generator=g) * 4
    labels = torch.randint(0, 2, (50,), generator=g)
    two = objective(loss, "softmax")(z, F.one_hot(labels, 2).double())
    one = objective(loss, "sigmoid")((z[:, 1] - z[:, 0]).unsqueeze(-1), labels.double().unsqueeze(-1))
    torch.testing.assert_close(two, one)


def test_fused_softmax_bce_equals_the_composition_on_multiclass():
    g = rng(8)
    z = torch.randn(40, 6, generator=g) * 2
    onehot = F.one_hot(torch.randint(0, 6, (40,), generator=g), 6).double()
    for loss in ("bce", "focal"):
        torch.testing.assert_close(objective(loss, "softmax")(z, onehot), LOSSES[loss](torch.softmax(z, -1), onehot))


# ---------------------------------------------------------------------------------------------
# gradients at the logits, hand-derived


def grad_at(loss, activation, z, y):
    z = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(loss, activation)(z, y).sum(), z)
    return g


def test_gradients_match_the_hand_derived_formulas():
    z = torch.linspace(-6, 6, 49).unsqueeze(-1)  # [B, 1]
    for target in (0.0, 1.0):
        y = torch.full_like(z, target)
        s = torch.sigmoid(z)
        torch.testing.assert_close(grad_at("bce", "sigmoid", z, y), s - y)
        torch.testing.assert_close(grad_at("mse", "sigmoid", z, y), 2 * (s - y) * s * (1 - s))
    logits = torch.randn(30, 4, generator=rng(9)) * 3
    onehot = F.one_hot(torch.randint(0, 4, (30,), generator=rng(10)), 4).double()
    torch.testing.assert_close(grad_at("cce", "softmax", logits, onehot), torch.softmax(logits, -1) - onehot)


def test_fused_objectives_stay_finite_and_correct_where_the_composition_saturates():
    # sigmoid + BCE at z = -100 with target 1: loss = -log sigmoid(-100) = 100 + log(1 + e^-100)
    z = torch.tensor([[-100.0], [100.0]], dtype=torch.float32)
    y = torch.tensor([[1.0], [0.0]], dtype=torch.float32)
    fused = objective("bce", "sigmoid")(z, y)
    torch.testing.assert_close(fused, torch.tensor([100.0, 100.0], dtype=torch.float32))
    torch.testing.assert_close(grad_at("bce", "sigmoid", z, y), torch.sigmoid(z) - y)  # -1, +1
    composed = LOSSES["bce"](torch.sigmoid(z), y)
    assert composed.max().item() < 17  # clipped at -log(1e-7) = 16.1: the composition saturates
    zc = z.clone().requires_grad_(True)
    (gc,) = torch.autograd.grad(LOSSES["bce"](torch.sigmoid(zc), y).sum(), zc)
    assert gc.abs().max().item() == 0  # and has lost its gradient
    # softmax + CCE: logits (100, -100, 0), true class 1: loss = 200 + log(1 + e^-100 + e^-200)
    logits = torch.tensor([[100.0, -100.0, 0.0]], dtype=torch.float32)
    onehot = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float32)
    torch.testing.assert_close(objective("cce", "softmax")(logits, onehot), torch.tensor([200.0], dtype=torch.float32))
    torch.testing.assert_close(grad_at("cce", "softmax", logits, onehot), torch.softmax(logits, -1) - onehot)
    assert LOSSES["cce"](torch.softmax(logits, -1), onehot).item() < 17
    # focal and kl_div keep finite values and gradients at |z| = 100 as well
    for loss, act, zz, yy in (("focal", "sigmoid", z, y), ("kl_div", "softmax", logits, onehot),
                              ("bce", "softmax", logits, onehot), ("focal", "softmax", logits, onehot)):
        assert torch.isfinite(objective(loss, act)(zz, yy)).all(), (loss, act)
        assert torch.isfinite(grad_at(loss, act, zz, yy)).all(), (loss, act)
    # focal at z = -100, target 1: (1 - p_t)^2 ~ 1, so about BCE's 100
    assert math.isclose(objective("focal", "sigmoid")(z, y)[0].item(), 100.0, rel_tol=1e-6)


# ---------------------------------------------------------------------------------------------
# the validity table


def test_validity_covers_every_triple_and_every_invalid_one_has_a_reason():
    assert set(VALIDITY) == {(t, a, l) for t in TASKS for a in ACTIVATIONS for l in LOSSES}
    for (task, activation, loss), reason in VALIDITY.items():
        if reason is not None:
            assert reason.strip() and "\n" not in reason
            assert "use activation=" in reason or "fits:" in reason  # says what would work
    # every loss is valid somewhere, every activation too
    assert {l for (t, a, l), r in VALIDITY.items() if r is None} == set(LOSSES)
    assert {a for (t, a, l), r in VALIDITY.items() if r is None} == set(ACTIVATIONS)


VALID = [
    ("regression", "linear", "mse"), ("regression", "linear", "mae"), ("regression", "linear", "huber"),
    ("regression", "linear", "mape"), ("regression", "linear", "log_cosh"), ("regression", "softplus", "msle"),
    ("regression", "softplus", "mse"), ("regression", "exp", "mape"), ("regression", "exp", "poisson"),
    ("regression", "softplus", "poisson"), ("binary", "sigmoid", "bce"), ("binary", "softmax", "cce"),
    ("binary", "softmax", "bce"), ("binary", "sigmoid", "mse"), ("binary", "linear", "mse"),
    ("binary", "linear", "hinge"), ("binary", "tanh", "squared_hinge"), ("binary", "sigmoid", "focal"),
    ("multiclass", "softmax", "cce"), ("multiclass", "sigmoid", "bce"), ("multiclass", "softmax", "kl_div"),
    ("multiclass", "softmax", "mse"), ("multiclass", "linear", "mae"), ("multiclass", "sigmoid", "huber"),
    ("multiclass", "linear", "hinge"), ("multiclass", "tanh", "mse"), ("multiclass", "softmax", "focal"),
]
INVALID = [  # (triple, words the reason must contain)
    (("regression", "linear", "cce"), ["class targets", *REGRESSION_LOSSES]),
    (("regression", "sigmoid", "mse"), ["(0, 1)", "linear"]),
    (("regression", "softmax", "mae"), ["distribution"]),
    (("regression", "linear", "poisson"), ["positive", "exp"]),
    (("binary", "sigmoid", "mape"), ["divides", "bce"]),
    (("multiclass", "softmax", "poisson"), ["regression"]),
    (("binary", "linear", "bce"), ["probabilities", "sigmoid or softmax"]),
    (("multiclass", "sigmoid", "cce"), ["independent", "softmax"]),
    (("multiclass", "linear", "cce"), ["distribution", "softmax"]),
    (("binary", "sigmoid", "hinge"), ["-1/+1", "linear or tanh"]),
    (("multiclass", "exp", "mse"), ["not a class score"]),
    (("regression", "linear", "tweedie"), ["log link", "positive", "exp or softplus"]),
    (("binary", "linear", "pinball"), ["quantile loss for regression"]),
]


@pytest.mark.parametrize("triple", VALID)
def test_sensible_pairings_are_valid(triple):
    assert VALIDITY[triple] is None
    assert resolve_pairing(*triple) == triple[1]


@pytest.mark.parametrize("triple, words", INVALID)
def test_nonsense_pairings_say_why(triple, words):
    reason = VALIDITY[triple]
    assert reason is not None and all(w in reason for w in words), reason
    with pytest.raises(UserError, match=re.escape(reason)):
        resolve_pairing(*triple)


def test_sweep_grids_are_valid_where_they_should_be():
    # classification preset: {linear, sigmoid, softmax} x {mse, mae, huber, bce, cce}
    invalid = {(a, l) for t in ("binary", "multiclass") for a in ("linear", "sigmoid", "softmax")
               for l in ("mse", "mae", "huber", "bce", "cce") if VALIDITY[(t, a, l)]}
    assert invalid == {("linear", "bce"), ("linear", "cce"), ("sigmoid", "cce")}
    # regression preset: {mse, mae, huber, mape, log_cosh} with linear (and positive outputs)
    for loss in ("mse", "mae", "huber", "mape", "log_cosh"):
        for activation in ("linear", "softplus", "exp"):
            assert VALIDITY[("regression", activation, loss)] is None


@pytest.mark.parametrize("task, loss, expected", [
    ("regression", "mse", "linear"), ("regression", "poisson", "exp"), ("regression", "msle", "softplus"),
    ("binary", "mse", "sigmoid"), ("binary", "bce", "sigmoid"), ("binary", "cce", "softmax"),
    ("binary", "hinge", "linear"), ("multiclass", "cce", "softmax"), ("multiclass", "mae", "softmax"),
    ("multiclass", "bce", "sigmoid"), ("multiclass", "kl_div", "softmax"),
])
def test_auto_resolves_to_the_canonical_activation(task, loss, expected):
    assert canonical_activation(task, loss) == expected
    assert resolve_pairing(task, "auto", loss) == expected


def test_loss_parameters_are_checked():
    check_loss_params("huber", {"delta": 2})
    check_loss_params("cce", {"label_smoothing": 0.1})
    for loss, params, named in [("mse", {"delta": 1.0}, "loss.delta"), ("huber", {"delta": 0}, "loss.delta=0"),
                                ("huber", {"delta": "x"}, "loss.delta"), ("bce", {"label_smoothing": 1.5}, "[0, 1)"),
                                ("focal", {"gamma": -1}, "loss.gamma"), ("mape", {"eps": 0.0}, "loss.eps"),
                                ("tweedie", {"power": 2.0}, "in (1, 2)"), ("tweedie", {"power": 1}, "loss.power=1"),
                                ("pinball", {"quantiles": [0.5, 1.0]}, "loss.quantiles=[0.5, 1.0]"),
                                ("pinball", {"quantiles": [0.9, 0.1]}, "increasing"),
                                ("pinball", {"quantiles": []}, "non-empty"), ("pinball", {"quantiles": 0.9}, "a non-empty list")]:
        with pytest.raises(UserError, match=re.escape(named)):
            check_loss_params(loss, params)


# ---------------------------------------------------------------------------------------------
# target encoding and output units


def test_target_encoding_per_triple():
    y = torch.tensor([0, 2, 1])
    yb = torch.tensor([1, 0])
    assert make_head("binary", 2, 1, "sigmoid", "bce").encode(yb).tolist() == [[1.0], [0.0]]
    assert make_head("binary", 2, 1, "softmax", "cce").encode(yb).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert make_head("binary", 2, 1, "linear", "hinge").encode(yb).tolist() == [[1.0], [-1.0]]
    assert make_head("multiclass", 3, 1, "sigmoid", "bce").encode(y).tolist() == \
        [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert make_head("multiclass", 3, 1, "softmax", "mse").encode(y).tolist() == \
        [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert make_head("multiclass", 3, 1, "linear", "squared_hinge").encode(y).tolist() == \
        [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]]
    assert make_head("multiclass", 3, 1, "tanh", "mse").encode(y).tolist() == \
        [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]]
    values = torch.tensor([[0.5], [-2.0]])
    assert torch.equal(make_head("regression", 0, 1, "linear", "mse").encode(values), values)
    n_outputs = {("binary", "sigmoid", "bce"): 1, ("binary", "softmax", "bce"): 2, ("binary", "linear", "mse"): 1,
                 ("multiclass", "sigmoid", "bce"): 10, ("multiclass", "linear", "hinge"): 10}
    for (task, act, loss), n in n_outputs.items():
        assert make_head(task, 2 if task == "binary" else 10, 1, act, loss).n_outputs == n
    assert make_head("regression", 0, 3, "linear", "mse").n_outputs == 3


def test_unit_decisions_use_the_midpoint_of_the_encoding():
    hinge = make_head("binary", 2, 1, "linear", "hinge")
    z = torch.tensor([[-0.2], [0.3]])
    labels, _, decisions = hinge.classify(z)
    assert decisions.tolist() == [[0.0], [1.0]]  # threshold 0 for -1/+1
    assert labels.tolist() == [0, 1]
    mse = make_head("binary", 2, 1, "linear", "mse")
    assert mse.classify(z)[2].tolist() == [[0.0], [0.0]]  # threshold 0.5 for 0/1
    p = make_head("multiclass", 3, 1, "linear", "hinge").classify(torch.tensor([[-3.0, -0.5, 2.0]]))[1]
    torch.testing.assert_close(p.sum(-1), torch.ones(1))
    assert p.argmax(-1).item() == 2


# ---------------------------------------------------------------------------------------------
# targets the loss cannot use


def test_check_targets_rejects_what_the_loss_cannot_use():
    zeros = torch.tensor([[1.0], [0.0], [2.0]])
    with pytest.raises(UserError, match=r"mape.*1 of 3 training targets are 0"):
        check_targets(make_head("regression", 0, 1, "linear", "mape"), zeros)
    negative = torch.tensor([[1.0], [-0.5], [2.0]])
    for loss, act in (("msle", "softplus"), ("poisson", "exp")):
        with pytest.raises(UserError, match=rf"loss={loss}.*1 of 3 training targets are negative"):
            check_targets(make_head("regression", 0, 1, act, loss), negative)
    with pytest.raises(UserError, match=r"activation=softplus.*negative"):
        check_targets(make_head("regression", 0, 1, "softplus", "mse"), negative)
    with pytest.raises(UserError, match="NaN"):
        check_targets(make_head("regression", 0, 1, "linear", "mse"), torch.tensor([[1.0], [math.nan]]))
    with pytest.raises(UserError, match="classes"):
        check_targets(make_head("multiclass", 3, 1, "softmax", "cce"), torch.tensor([0, 3]))
    # fine: zeros for mse/msle/poisson, negatives for mape with a linear output
    check_targets(make_head("regression", 0, 1, "linear", "mse"), zeros)
    check_targets(make_head("regression", 0, 1, "softplus", "msle"), zeros)
    check_targets(make_head("regression", 0, 1, "exp", "poisson"), zeros)
    check_targets(make_head("regression", 0, 1, "linear", "mape"), negative)


# ---------------------------------------------------------------------------------------------
# anatomy


def test_anatomy_matches_the_hand_formulas():
    z = np.linspace(-8, 8, 33)
    s = 1 / (1 + np.exp(-z))
    a = anatomy("bce", "sigmoid", 1, z=z)
    assert set(a) == {"z", "loss", "grad"} and all(isinstance(v, np.ndarray) for v in a.values())
    np.testing.assert_allclose(a["z"], z)
    np.testing.assert_allclose(a["loss"], np.log1p(np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(a["grad"], s - 1, atol=1e-12)
    a = anatomy("mse", "sigmoid", 0, z=z)
    np.testing.assert_allclose(a["loss"], s**2, rtol=1e-12)
    np.testing.assert_allclose(a["grad"], 2 * s * s * (1 - s), atol=1e-12)
    # softmax: two units with logits (0, z): cce equals bce on sigmoid(z)
    a = anatomy("cce", "softmax", 1, z=z)
    np.testing.assert_allclose(a["loss"], np.log1p(np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(a["grad"], s - 1, atol=1e-12)
    # hinge reads target 0 as class -1: max(0, 1 + z)
    a = anatomy("hinge", "linear", 0, z=z)
    np.testing.assert_allclose(a["loss"], np.maximum(0, 1 + z))
    # the default grid, and a regression target for a regression loss
    assert len(anatomy("huber", "linear", 0)["z"]) == 401
    a = anatomy("mape", "linear", 2.0, z=z)
    np.testing.assert_allclose(a["loss"], 100 * np.abs(z - 2) / 2, rtol=1e-12)


def test_anatomy_refuses_what_a_run_would_refuse():
    with pytest.raises(UserError, match="non-zero target"):
        anatomy("mape", "linear", 0)  # division by a zero target
    with pytest.raises(UserError, match=">= 0"):
        anatomy("poisson", "exp", -1.0)
    with pytest.raises(UserError, match="valid for no task"):
        anatomy("cce", "sigmoid", 1)
    with pytest.raises(UserError, match="not a class"):
        anatomy("bce", "sigmoid", 0.3)
    # msle on a linear output would get exactly zero gradient at every prediction <= eps (z = -2: loss
    # 0.48, gradient 0, a silent stall): refused; on its positive outputs (unclipped: softplus(-20) is
    # below eps) the gradient never vanishes
    assert "exactly zero gradient" in VALIDITY[("regression", "linear", "msle")]
    with pytest.raises(UserError, match="valid for no task"):
        anatomy("msle", "linear", 1.0)
    with pytest.raises(UserError, match="activation=linear.*zero gradient.*use activation=softplus or exp"):
        make_head("regression", 0, 1, "linear", "msle")
    for act in ("softplus", "exp"):
        a = anatomy("msle", act, 1.0, z=np.linspace(-30, -1, 30))
        p = np.log1p(np.exp(a["z"])) if act == "softplus" else np.exp(a["z"])
        np.testing.assert_allclose(a["loss"], (np.log1p(p) - np.log(2)) ** 2, rtol=1e-12)
        assert (a["grad"] < 0).all()


# ---------------------------------------------------------------------------------------------
# configs


def test_every_loss_and_activation_has_a_documented_config():
    import yaml

    for group, names in (("loss", [*LOSSES, "auto", "custom"]), ("activation", [*ACTIVATIONS, "auto"])):
        files = {p.stem for p in (ROOT / "conf" / group).glob("*.yaml")}
        variants = files - set(names)  # a loss's settings under a name of their own (pinball90: pinball at 0.9)
        assert set(names) <= files and (group == "loss" or not variants), (group, files)
        for variant in variants:
            text = (ROOT / "conf" / group / f"{variant}.yaml").read_text()
            config = yaml.safe_load(text)
            base = config["defaults"][0]
            assert text.startswith("#") and base in LOSSES and config["defaults"][1:] == ["_self_"], variant
            for line in text.splitlines():
                if line.split(":")[0] in config and line.split(":")[0] != "defaults":
                    assert line.split(":")[0] in LOSSES[base].params and "#" in line, line
        for name in names:
            path = ROOT / "conf" / group / f"{name}.yaml"
            text = path.read_text()
            assert text.startswith("#"), path  # opens with what it is
            config = yaml.safe_load(text)
            assert config["name"] == name
            if group == "loss" and name not in ("auto", "custom"):  # custom: tests/test_custom_loss.py
                params = {k for k in config if k != "name"}
                assert params == set(list(__import__("inspect").signature(LOSSES[name].fn).parameters)[2:])
                for line in text.splitlines():  # every parameter carries a comment
                    if line.split(":")[0] in params:
                        assert "#" in line, line
    assert set(CLASSIFICATION_LOSSES) | set(REGRESSION_LOSSES) == set(LOSSES)
    # loss=auto lists every loss parameter (null), so loss.<param>=... composes before auto resolves
    auto = yaml.safe_load((ROOT / "conf" / "loss" / "auto.yaml").read_text())
    assert {k for k in auto if k != "name"} == {p for loss in LOSSES.values() for p in loss.params}
    assert all(auto[k] is None for k in auto if k != "name")


def test_docstring_examples_run():
    import doctest

    import bench.heads
    import bench.losses

    assert doctest.testmod(bench.losses).failed == 0
    assert doctest.testmod(bench.heads).failed == 0
