"""Calibration errors and temperature scaling (bench.calibration) against hand computations,
torchmetrics' CalibrationError (equal-width bins: its definition) and torch's own softmax / cross-entropy."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import calibration as cal
from bench.heads import Head

# a binary model's probabilities of class 1 and the labels: the top-label and positive-class forms differ
P1 = torch.tensor([0.2, 0.4, 0.7, 0.9], dtype=torch.float64)
Y = torch.tensor([0, 1, 1, 1])
P = torch.stack([1 - P1, P1], -1)  # [4, 2]


def test_binary_top_label_and_positive_class_ece_by_hand():
    # top label: confidences 0.8 0.6 0.7 0.9, predicted 0 0 1 1, right 1 0 1 1; sorted 0.6(0) 0.7(1) | 0.8(1) 0.9(1):
    # bins |0.5 - 0.65| and |1 - 0.85|, each half the rows
    assert float(cal.ece(P, Y, 2)) == pytest.approx(0.5 * 0.15 + 0.5 * 0.15)
    # positive class: p1 sorted 0.2(0) 0.4(1) | 0.7(1) 0.9(1): |0.5 - 0.3| and |1 - 0.8|; class 0 mirrors it
    assert float(cal.binned_error(P1, Y.double(), 2)) == pytest.approx(0.2)
    assert float(cal.classwise_ece(P, Y, 2)) == pytest.approx(0.2)
    # equal width, 10 bins: every top-label confidence alone in its bin, |hit - conf| = 0.6 0.3 0.2 0.1
    assert float(cal.ece(P, Y, 10, "width")) == pytest.approx(1.2 / 4)


def test_equal_width_forms_equal_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    # the binary pitfall: torchmetrics' binary form scores P(y = 1), its multiclass form the top label
    top = tm.MulticlassCalibrationError(num_classes=2, n_bins=2, norm="l1")(P.float(), Y)
    positive = tm.BinaryCalibrationError(n_bins=2, norm="l1")(P1.float(), Y)
    assert float(top) == pytest.approx(0.0, abs=1e-7)  # all four confidences in [0.5, 1): 0.75 right, 0.75 claimed
    assert float(positive) == pytest.approx(0.2, abs=1e-7)
    assert float(cal.ece(P, Y, 2, "width")) == pytest.approx(float(top), abs=1e-7)
    assert float(cal.binned_error(P1, Y.double(), 2, "width")) == pytest.approx(float(positive), abs=1e-7)
    g = torch.Generator().manual_seed(0)
    for n_classes, n_bins in ((3, 15), (10, 10)):
        p = torch.softmax(3 * torch.randn(500, n_classes, generator=g, dtype=torch.float64), -1)
        y = torch.randint(0, n_classes, (500,), generator=g)
        ref = tm.MulticlassCalibrationError(num_classes=n_classes, n_bins=n_bins, norm="l1")(p.float(), y)
        assert float(cal.ece(p, y, n_bins, "width")) == pytest.approx(float(ref), abs=1e-5)


def sweep_case():
    # sorted confidences and hits: b = 2 rises (1/3, 1), b = 3 rises (1/2, 1/2, 1), b = 4 falls (1/2, 0, 1, 1)
    conf = torch.tensor([0.55, 0.6, 0.7, 0.8, 0.9, 0.95], dtype=torch.float64)
    hit = torch.tensor([0, 1, 0, 1, 1, 1])
    p = torch.stack([conf, 1 - conf], -1)  # the top class is class 0
    return p, 1 - hit  # right where the label is 0


def test_ece_sweep_by_hand_stops_before_the_first_fall():
    p, y = sweep_case()
    shuffle = torch.tensor([3, 0, 5, 1, 4, 2])
    # b = 3 bins of two rows: |1 - 1.15| + |1 - 1.5| + |2 - 1.85|, over 6 rows
    assert float(cal.ece_sweep(p[shuffle], y[shuffle])) == pytest.approx(0.8 / 6)
    assert float(cal.ece(p, y, 3)) == pytest.approx(0.8 / 6)
    assert float(cal.ece(p, y, 2)) == pytest.approx((0.85 + 0.35) / 6)  # the sweep's b = 2 candidate
    # right on the three least confident rows only: b = 2 already falls (1, 0), so one bin, |3 - 4.5| / 6
    falling = torch.tensor([0, 0, 0, 1, 1, 1])
    assert float(cal.ece_sweep(p, falling)) == pytest.approx(1.5 / 6)


def test_batched_forms_equal_one_member_at_a_time():
    g = torch.Generator().manual_seed(1)
    p = torch.softmax(2 * torch.randn(3, 80, 4, generator=g, dtype=torch.float64), -1)  # [K, N, C]
    y = torch.randint(0, 4, (3, 80), generator=g)  # [K, N]: each member its own rows
    for fn in (lambda p, y: cal.ece(p, y, 7), lambda p, y: cal.classwise_ece(p, y, 7), cal.ece_sweep):
        batched = fn(p, y)
        assert batched.shape == (3,)
        for k in range(3):
            assert float(batched[k]) == pytest.approx(float(fn(p[k], y[k])), abs=1e-14)


def test_reliability_bins_by_hand():
    p, y = sweep_case()
    bins = cal.reliability(p, y, 3)
    assert bins["count"].tolist() == [2, 2, 2]
    assert bins["confidence"].tolist() == pytest.approx([0.575, 0.75, 0.925])
    assert bins["accuracy"].tolist() == pytest.approx([0.5, 0.5, 1.0])
    many = cal.reliability(p, y, 9)  # more bins than rows: empty bins have no mean
    assert int(many["count"].sum()) == 6 and torch.isnan(many["accuracy"]).sum() == 3


def test_probability_metrics_take_scikit_learn_scores_and_the_errors():
    from sklearn.metrics import brier_score_loss, log_loss

    out = cal.probability_metrics(Y, P, [0, 1], 2)
    assert out["log_loss"] == pytest.approx(log_loss(Y.numpy(), P.numpy()))
    assert out["brier"] == pytest.approx(brier_score_loss(Y.numpy(), P1.numpy()))
    assert out["ece"] == pytest.approx(0.15) and out["ece_classwise"] == pytest.approx(0.2)


# ---------------------------------------------------------------------------------------------
# temperature scaling

def test_scaling_log_probabilities_is_softmax_and_sigmoid_of_z_over_t():
    g = torch.Generator().manual_seed(2)
    z = 4 * torch.randn(2, 50, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0.5, 2.5], dtype=torch.float64)
    softmax = Head("multiclass", 5, 1, "softmax", "cce")
    assert torch.allclose(cal.scaled(softmax.log_class_probabilities(z), t), torch.softmax(z / t[:, None, None], -1),
                          atol=1e-12)
    one = z[..., :1] * 10  # saturated too: |z| up to ~100
    sigmoid = Head("binary", 2, 1, "sigmoid", "bce")
    p = cal.scaled(sigmoid.log_class_probabilities(one), t)
    assert torch.allclose(p[..., 1], torch.sigmoid(one[..., 0] / t[:, None]), atol=1e-12)
    assert torch.allclose(p[..., 0], torch.sigmoid(-one[..., 0] / t[:, None]), atol=1e-12)


def test_fitted_temperature_is_the_nll_minimum_of_torch_cross_entropy():
    from scipy.optimize import minimize_scalar

    g = torch.Generator().manual_seed(3)
    n, c = 300, 4
    y = torch.randint(0, c, (3, n), generator=g)
    # over-confident (x3), about right, under-confident (x0.3) logits of a signal
    z = torch.randn(3, n, c, generator=g, dtype=torch.float64) + 2 * F.one_hot(y, c)
    z = z * torch.tensor([3.0, 1.0, 0.3], dtype=torch.float64)[:, None, None]
    head = Head("multiclass", c, 1, "softmax", "cce")
    t = cal.fit_temperature(head.log_class_probabilities(z), y)
    for k in range(3):
        best = minimize_scalar(lambda s: float(F.cross_entropy(z[k] / math.exp(s), y[k])), bounds=(-5, 5),
                               method="bounded", options={"xatol": 1e-9})
        assert float(t[k]) == pytest.approx(math.exp(best.x), rel=1e-6)
        # it lowers the validation NLL (or keeps it, at T = 1)
        assert float(F.cross_entropy(z[k] / t[k], y[k])) <= float(F.cross_entropy(z[k], y[k])) + 1e-12
    assert t[0] > 1 > t[2]  # the over-confident member is cooled, the under-confident one sharpened


def test_a_separable_validation_split_gives_the_lower_bound():
    z = torch.tensor([[[3.0, 0.0], [0.0, 2.0], [5.0, 1.0]]], dtype=torch.float64)  # every row right
    head = Head("multiclass", 2, 1, "softmax", "cce")
    t = cal.fit_temperature(head.log_class_probabilities(z), torch.tensor([[0, 1, 0]]))
    assert float(t[0]) == pytest.approx(cal.TEMPERATURE_RANGE[0], rel=1e-6)


@pytest.mark.parametrize("activation, loss, task, outputs", [
    ("softmax", "cce", "multiclass", 6), ("sigmoid", "bce", "multiclass", 6), ("sigmoid", "bce", "binary", 1),
    ("linear", "mse", "binary", 1), ("softmax", "mse", "binary", 2)])
def test_temperature_scaling_never_changes_the_accuracy(activation, loss, task, outputs):
    g = torch.Generator().manual_seed(4)
    n_classes = 6 if task == "multiclass" else 2
    head = Head(task, n_classes, 1, activation, loss)
    z_val = 3 * torch.randn(4, 60, outputs, generator=g, dtype=torch.float64)
    z_test = 3 * torch.randn(4, 90, outputs, generator=g, dtype=torch.float64)
    y_val, y_test = torch.randint(0, n_classes, (60,), generator=g), torch.randint(0, n_classes, (90,), generator=g)
    out = cal.temperature_scaling(head, z_val, y_val, z_test, y_test, n_bins=5)
    labels = head.classify(z_test)[0]  # [K, N]: the head's own decisions
    t = torch.tensor([o["temperature"] for o in out], dtype=torch.float64)
    p = cal.scaled(head.log_class_probabilities(z_test), t)
    assert torch.equal(p.argmax(-1), labels)
    for m, o in enumerate(out):
        # the validation NLL after scaling is at most the one before (T = 1 is a candidate)
        log_val = head.log_class_probabilities(z_val[m:m + 1])
        assert float(cal.nll(log_val, y_val[None], t[m:m + 1])) <= float(
            cal.nll(log_val, y_val[None], torch.ones(1, dtype=torch.float64))) + 1e-12
        assert set(o["test_scaled"]) == {"log_loss", "brier", "ece", "ece_classwise", "ece_sweep"}
        assert sum(o["reliability"]["after"]["count"]) == 90


def test_a_member_with_non_finite_outputs_gets_none():
    head = Head("multiclass", 3, 1, "softmax", "cce")
    z = torch.randn(2, 10, 3, dtype=torch.float64)
    z[1, 4, 0] = float("nan")
    y = torch.randint(0, 3, (10,))
    out = cal.temperature_scaling(head, z, y, z, y)
    assert out[0] is not None and out[1] is None
    assert np.isfinite(out[0]["temperature"])
