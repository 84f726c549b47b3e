"""Metrics: curve metrics in torch (batched over members), final metrics with scikit-learn, and the
convergence-speed figures computed from a validation curve.

Curve metrics take the raw outputs z [K, N, O] of all members at once and return one value per
member ([K] tensors), computed in the outputs' dtype (float32 in training: half the time of float64,
~1e-6 relative on the figures); they are every figure below but roc_auc (TEST_ONLY_METRICS: a sort
per member and class at every evaluation cost more than all the other curves together).
Final metrics take one member's raw outputs [N, O] and compute the same figures with scikit-learn,
in float64. Both read the outputs through the run's `Head`
(bench.losses), so a metric sees what the loss trained: class probabilities, per-unit decisions,
regression predictions. Regression metrics are in original target units (predictions and targets
multiplied back by the dataset's target_scale).

Classification: accuracy (argmax, "categorical"), binary_accuracy (each output unit's 0/1
decision against its one-hot bit, element-wise: inflated for many classes), log_loss, f1_macro,
roc_auc (one-vs-rest, macro), brier (mean squared distance of the probability vector to the
one-hot target; halved on binary data, as scikit-learn). Regression: rmse, mae, mape (percent),
r2, bias (mean signed error in percent of the mean target: negative = under-forecast).
Several regression targets: every figure is the uniform average over targets.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

# the main metric of each task and whether higher is better
MAIN_METRIC = {"regression": "rmse", "binary": "accuracy", "multiclass": "accuracy"}
# (the candidates for dataset.metric: every one is a curve, read every evaluation)
HIGHER_IS_BETTER = {"accuracy": True, "binary_accuracy": True, "f1_macro": True,
                    "log_loss": False, "brier": False,
                    "rmse": False, "mae": False, "mape": False, "r2": True}
# the metrics of each kind of task in the test summary; bias has no "better" direction
CLASSIFICATION_METRICS = ("accuracy", "binary_accuracy", "log_loss", "f1_macro", "roc_auc", "brier")
REGRESSION_METRICS = ("rmse", "mae", "mape", "r2", "bias")
# test figures that are not curves: roc_auc's per-member, per-class sort of every split cost ~6x
# the rest of the curve metrics together at every evaluation (digits, K = 8)
TEST_ONLY_METRICS = ("roc_auc",)
MAPE_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's floor for |y| in MAPE
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clip of float64 probabilities


def _for_metrics(z):
    """The metrics' dtype: the outputs' own if float32 or wider (float32 halves the time of the curves
    at K = 8 against float64, ~1e-6 relative on the figures), else float32."""
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def _classification_curves(head, z, y):
    """z [K, N, O] float32 or float64, y [N] -> {name: [K]}; the accuracies are float64 fractions
    (a float32 0.95 is below a target of 0.95)."""
    n_classes = head.n_classes
    onehot = F.one_hot(y, n_classes).to(z.dtype)  # [N, C]
    labels, p, decisions = head.classify(z)  # [K, N], [K, N, C], [K, N, O]
    out = {"accuracy": (labels == y).sum(-1).double() / y.shape[0],
           # element-wise accuracy over the output units (inflated for one-hot targets with many classes)
           "binary_accuracy": (decisions == head.unit_bits(y).to(z.dtype)).sum((-2, -1)).double()
           / (y.shape[0] * z.shape[-1])}
    eps = LOG_LOSS_EPS  # float64's, as scikit-learn clips the float64 probabilities of the test summary
    p_true = p.gather(-1, y.expand(*p.shape[:-1]).unsqueeze(-1)).squeeze(-1)  # [K, N]
    out["log_loss"] = -p_true.clamp(eps, 1 - eps).log().mean(-1)
    predicted = F.one_hot(labels, n_classes).to(z.dtype)  # [K, N, C]
    both = (predicted * onehot).sum(-2)  # true positives per class [K, C]
    size = predicted.sum(-2) + onehot.sum(-2)  # predicted + actual per class
    f1 = torch.where(size > 0, 2 * both / size.clamp_min(1), 0.0)  # zero_division=0
    out["f1_macro"] = f1.mean(-1)
    out["brier"] = (p - onehot).pow(2).sum(-1).mean(-1) * (0.5 if n_classes < 3 else 1.0)
    return out


def _regression_curves(head, z, y, target_scale):
    """z [K, N, T] float32 or float64, y [N, T] scaled targets -> {name: [K]} in original units."""
    truth = y.to(z.dtype) * target_scale  # [N, T]
    err = head.predict(z) * target_scale - truth  # [K, N, T]
    spread = (truth - truth.mean(0)).pow(2).sum(0)  # [T]
    sse = err.pow(2).sum(-2)  # [K, T]
    # scikit-learn's r2 with force_finite: a constant target scores 1 if fitted exactly, else 0
    r2 = torch.where(spread > 0, 1 - sse / spread.clamp_min(1e-300), (sse == 0).to(z.dtype))
    return {"rmse": err.pow(2).mean((-2, -1)).sqrt(),
            "mae": err.abs().mean((-2, -1)),
            "mape": 100 * (err.abs() / truth.abs().clamp_min(MAPE_EPS)).mean((-2, -1)),
            "r2": r2.mean(-1),
            "bias": (100 * err.mean(-2) / truth.mean(0)).mean(-1)}


def curve_metrics(head, z, y, target_scale, out_grad=False) -> dict:
    """Per-member metrics of raw outputs z [K, N, O] against targets y ([N] classes or [N, T] values
    as stored): {"loss": [K], metric: [K] ...}; the loss is the training objective's mean.
    out_grad=True adds "out_grad" (`output_gradient`) from the same evaluation of the objective."""
    z = z.detach()
    if out_grad:
        out = dict(zip(("loss", "out_grad"), _loss_and_output_gradient(head, z, y)))
    else:
        with torch.no_grad():
            out = {"loss": head.objective(z, head.encode(y)).mean(-1)}
    wide = _for_metrics(z)
    with torch.no_grad():
        if head.task == "regression":
            out.update(_regression_curves(head, wide, y, target_scale))
        else:
            out.update(_classification_curves(head, wide, y))
    return out


def _loss_and_output_gradient(head, z, y):
    """(mean objective [K], mean |dloss_i/dz_ij| [K]) from one pass of the objective over z [K, N, O]."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        per_example = head.objective(z, head.encode(y))  # [K, N]
        (grad,) = torch.autograd.grad(per_example.sum(), z)
    return per_example.detach().mean(-1), grad.abs().mean((-2, -1))


def output_gradient(head, z, y):
    """Mean |dloss_i/dz_ij| over examples i and output units j, per member: [K] (saturation diagnostic).

    loss_i is the per-example objective (mean over units for element-wise losses), z the output
    pre-activations [K, N, O]. For 1 sigmoid unit with MSE it is mean |2 (s - y) s (1 - s)|, s = sigmoid(z):
    small wherever the unit saturates, which is why MSE on a sigmoid output learns slowly.
    """
    return _loss_and_output_gradient(head, z, y)[1]


def final_metrics(head, y_true, z, target_scale=1.0) -> dict:
    """Test metrics of one member with scikit-learn: {metric: float or None (undefined)}.

    y_true: [N] class indices, or [N, T] regression targets as stored (y / target_scale).
    z: the member's raw outputs [N, O] (tensor or array); read through the head in float64.
    None marks a figure that is undefined on this split: roc_auc when a class is absent, bias
    when the mean target is 0.
    """
    from sklearn import metrics as skm

    z = torch.as_tensor(z).detach().cpu().double()
    y = torch.as_tensor(y_true).detach().cpu()
    if head.task == "regression":
        truth = y.double().numpy() * target_scale
        pred = (head.predict(z) * target_scale).numpy()
        mean = truth.mean(0)
        return {
            "rmse": math.sqrt(skm.mean_squared_error(truth, pred)),
            "mae": skm.mean_absolute_error(truth, pred),
            "mape": 100 * skm.mean_absolute_percentage_error(truth, pred),
            "r2": skm.r2_score(truth, pred),
            "bias": float(np.mean(100 * (pred - truth).mean(0) / mean)) if np.all(mean != 0) else None,
        }
    labels_true = y.numpy()
    classes = np.arange(head.n_classes)
    labels, proba, decisions = (t.numpy() for t in head.classify(z))
    bits = head.unit_bits(y).numpy()
    every_class = len(np.unique(labels_true)) == head.n_classes
    if not every_class:
        auc = None
    elif head.n_classes == 2:
        auc = skm.roc_auc_score(labels_true, proba[:, 1])
    else:
        auc = skm.roc_auc_score(labels_true, proba, multi_class="ovr", average="macro", labels=classes)
    return {
        "accuracy": skm.accuracy_score(labels_true, labels),
        "binary_accuracy": skm.accuracy_score(bits.ravel(), decisions.ravel()),
        "log_loss": skm.log_loss(labels_true, proba, labels=classes),
        "f1_macro": skm.f1_score(labels_true, labels, average="macro", labels=classes, zero_division=0),
        "roc_auc": None if auc is None else float(auc),
        "brier": skm.brier_score_loss(labels_true, proba, labels=classes),
    }


def convergence(epochs, steps, seconds, values, target, higher_is_better) -> dict:
    """Speed figures of one validation curve (evaluation points in order, epoch 0 first).

    epochs/steps/seconds/values: 1-D arrays over evaluation points; values may contain NaN after a
    divergence. Returns epochs/steps/seconds to the first point at or beyond `target` (None if never),
    the best value, and `auc`: the trapezoidal mean of the curve over epochs (the area under the
    curve divided by the epoch span, so it is in the metric's units; NaN points count as missing).
    """
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    reached = finite & ((values >= target) if higher_is_better else (values <= target))
    first = int(np.argmax(reached)) if reached.any() else None
    best = (np.nanmax if higher_is_better else np.nanmin)(values) if finite.any() else None
    e, v = np.asarray(epochs, dtype=float)[finite], values[finite]
    auc = float(np.trapezoid(v, e) / (e[-1] - e[0])) if len(e) > 1 else None
    return {
        "best_val": None if best is None else float(best),
        "epochs_to_target": None if first is None else int(epochs[first]),
        "steps_to_target": None if first is None else int(steps[first]),
        "seconds_to_target": None if first is None else float(seconds[first]),
        "auc": auc,
    }
