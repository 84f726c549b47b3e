"""The calibration losses (bench.calibration_losses: categorical focal, FLSD-53) against float64 hand
formulas built on torch's cross-entropy and numpy's log-sum-exp, value and gradient, up to saturation;
label smoothing's range; a gamma sweep labelled by its parameter in the report's tables."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import calibration_losses
from bench.errors import UserError
from bench.losses import EPS, LOSSES, check_loss_params, objective

# softmax logits: saturated both ways (|z| = 50, 100), a tie at the top, moderate
ROWS = [[50.0, -50.0, 0.0], [100.0, -100.0, 0.0], [-100.0, 100.0, 20.0], [30.0, 30.0, -30.0],
        [0.5, -1.0, 2.0], [3.0, 2.9, -2.0], [0.0, 0.0, 0.0]]


def every_target(rows):
    z = np.repeat(np.array(rows), 3, axis=0)  # every row with every class as its target
    return z, np.tile(np.eye(3), (len(rows), 1))


def hand_focal(z, y, gamma):
    """float64 -(1 - p_t)^gamma log p_t with log p_t and log(1 - p_t) each a direct log-sum-exp (numpy):
    log p_t = z_t - logsumexp(z), log(1 - p_t) = logsumexp_{c != t}(z) - logsumexp(z)."""
    total = np.logaddexp.reduce(z, axis=-1)
    t = y.argmax(-1)
    others = np.array([np.logaddexp.reduce(np.delete(row, k)) for row, k in zip(z, t)])
    log_p, log_miss = z[np.arange(len(z)), t] - total, others - total
    gamma = np.asarray(gamma, dtype=float)
    return -np.exp(gamma * log_miss) * log_p


def value_and_grad(loss, z, y, dtype=torch.float32, **params):
    z = torch.tensor(z, dtype=dtype, requires_grad=True)
    value = objective(loss, "softmax", **params)(z, torch.tensor(y, dtype=dtype))
    (grad,) = torch.autograd.grad(value.sum(), z)
    return value.detach().double().numpy(), grad.double().numpy()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_categorical_focal_is_the_focal_factor_times_torch_cross_entropy(gamma):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (200,), generator=g)
    onehot = F.one_hot(labels, 5).double()
    ce = F.cross_entropy(z, labels, reduction="none")
    expected = (1 - torch.exp(-ce)).pow(gamma) * ce  # p_t = exp(-CE)
    torch.testing.assert_close(objective("categorical_focal", "softmax", gamma=gamma)(z, onehot), expected)
    torch.testing.assert_close(LOSSES["categorical_focal"](torch.softmax(z, -1), onehot, gamma=gamma), expected)
    if gamma == 0:  # CCE itself
        torch.testing.assert_close(objective("categorical_focal", "softmax", gamma=0.0)(z, onehot), ce)


@pytest.mark.parametrize("gamma", [0.5, 3.0])
def test_categorical_focal_in_float32_matches_float64_hand_formula_up_to_saturation(gamma):
    z, y = every_target(ROWS)
    value, grad = value_and_grad("categorical_focal", z, y, gamma=gamma)
    expected = hand_focal(z, y, gamma)
    assert expected.max() > 150  # the wrong-way saturated rows cost ~ |z| twice over
    np.testing.assert_allclose(value, expected, rtol=2e-6, atol=1e-6)
    assert np.isfinite(grad).all()
    _, grad64 = value_and_grad("categorical_focal", z, y, dtype=torch.float64, gamma=gamma)
    np.testing.assert_allclose(grad, grad64, rtol=1e-5, atol=1e-6)
    # float64 autograd of the hand formula's own torch form (log_softmax; leave-one-out logsumexp)
    zt = torch.tensor(z, requires_grad=True)
    log_p = torch.log_softmax(zt, -1)
    t = torch.tensor(y.argmax(-1))
    mask = torch.tensor(y, dtype=torch.bool)
    log_miss = zt.masked_fill(mask, -torch.inf).logsumexp(-1) - zt.logsumexp(-1)
    ref = -(gamma * log_miss).exp() * log_p.gather(-1, t[:, None])[:, 0]
    (ref_grad,) = torch.autograd.grad(ref.sum(), zt)
    np.testing.assert_allclose(grad64, ref_grad.numpy(), rtol=1e-9, atol=1e-12)


def test_flsd53_takes_gamma_5_below_p_t_0_2_else_3_and_does_not_differentiate_it():
    z, y = every_target(ROWS + [[1.0, 0.2, 0.0], [-1.0, 1.5, 0.3]])
    p_true = np.exp(-hand_focal(z, y, 0.0))
    gamma = np.where(p_true < 0.2, 5.0, 3.0)
    assert {5.0, 3.0} <= set(gamma)
    value, grad = value_and_grad("flsd53", z, y, dtype=torch.float64)
    np.testing.assert_allclose(value, hand_focal(z, y, gamma), rtol=1e-12, atol=1e-12)  # (the hand form rounds
    # log p_t to 0 where p_t is within 1e-16 of 1; the fused form keeps ~e^-100 there)
    # its gradient is categorical focal's at each row's gamma, held fixed
    for g in (5.0, 3.0):
        rows = gamma == g
        _, fixed = value_and_grad("categorical_focal", z[rows], y[rows], dtype=torch.float64, gamma=g)
        np.testing.assert_allclose(grad[rows], fixed, rtol=1e-12, atol=1e-300)
    moderate = np.abs(z).max(-1) <= 3  # the probability form clips p to [eps, 1 - eps], as cce's does
    p = torch.softmax(torch.tensor(z[moderate]), -1)
    np.testing.assert_allclose(LOSSES["flsd53"](p, torch.tensor(y[moderate])).numpy(),
                               hand_focal(z[moderate], y[moderate], gamma[moderate]), rtol=1e-9)
    assert calibration_losses.EPS == EPS


def test_calibration_losses_broadcast_targets_over_members():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 20, 4, generator=g, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, 4, (20,), generator=g), 4).double()
    for loss in ("categorical_focal", "flsd53"):
        f = objective(loss, "softmax")
        torch.testing.assert_close(f(z, y), f(z, y.expand(3, -1, -1)))


@pytest.mark.parametrize("loss, key, value", [("cce", "label_smoothing", 1.0), ("cce", "label_smoothing", 1.5),
                                              ("bce", "label_smoothing", -0.1), ("categorical_focal", "gamma", -1.0)])
def test_out_of_range_parameters_are_one_line_errors(loss, key, value):
    with pytest.raises(UserError, match=rf"loss.{key}={value}"):
        check_loss_params(loss, {key: value})
    check_loss_params("cce", {"label_smoothing": 0.999})  # below 1: allowed


def test_a_loss_parameter_is_part_of_the_configuration_label():
    import pandas as pd

    from bench.report.tables import prepare

    base = {"group": "g", "dataset": "digits", "task": "multiclass", "activation": "softmax", "metric": "accuracy",
            "higher_is_better": True, "status": "done", "seed": 0, "seed_status": "done", "test_accuracy": 0.9}
    runs = pd.DataFrame([
        {**base, "run_id": "a", "loss": "cce", "loss.label_smoothing": 0.0, "loss.gamma": None},
        {**base, "run_id": "b", "loss": "cce", "loss.label_smoothing": 0.1, "loss.gamma": None},
        {**base, "run_id": "c", "loss": "categorical_focal", "loss.label_smoothing": None, "loss.gamma": 1.0},
        {**base, "run_id": "d", "loss": "categorical_focal", "loss.label_smoothing": None, "loss.gamma": 3.0},
        {**base, "run_id": "e", "loss": "flsd53", "loss.label_smoothing": None, "loss.gamma": None}])
    out = prepare(runs).set_index("run_id")
    # a parameter at its conf/loss default is not repeated: the canonical pairing keeps its plain label
    assert out["config"].to_dict() == {"a": "softmax+cce", "b": "softmax+cce(label_smoothing=0.1)",
                                       "c": "softmax+categorical_focal(gamma=1)", "d": "softmax+categorical_focal",
                                       "e": "softmax+flsd53"}
    assert (out["setting"] == "").all()  # a loss parameter is what is compared, never a knob
    assert out["loss_name"].to_dict() == {"a": "cce", "b": "cce", "c": "categorical_focal", "d": "categorical_focal",
                                          "e": "flsd53"}
