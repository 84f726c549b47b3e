"""Metrics: curve metrics in torch (batched over members), final metrics with scikit-learn, and the
convergence-speed figures computed from a validation curve.

Curve metrics take the raw outputs z [K, N, O] of all members at once and return one value per
member ([K] tensors). Final metrics take one member's numpy predictions. Regression metrics are in
original target units (predictions and targets multiplied back by the dataset's target_scale).
"""
import math

import numpy as np
import torch

# the main metric of each task and whether higher is better
MAIN_METRIC = {"regression": "rmse", "binary": "accuracy", "multiclass": "accuracy"}
HIGHER_IS_BETTER = {"accuracy": True, "binary_accuracy": True, "rmse": False, "mae": False}


@torch.no_grad()
def curve_metrics(head, z, y, target_scale) -> dict:
    """Per-member metrics of raw outputs z [K, N, O] against targets y ([N] classes or [N, T] values)."""
    out = {"loss": head.objective(z, head.encode(y)).mean(-1)}
    if head.task == "regression":
        err = (head.predict(z) - y) * target_scale  # [K, N, T], original units
        out["rmse"] = err.pow(2).mean((-2, -1)).sqrt()
        out["mae"] = err.abs().mean((-2, -1))
    else:
        labels = head.class_probabilities(z).argmax(-1)  # [K, N]
        out["accuracy"] = (labels == y).float().mean(-1)
        # element-wise accuracy over the output units (inflated for one-hot targets with many classes)
        out["binary_accuracy"] = (head.unit_decisions(z) == head.encode(y)).float().mean((-2, -1))
    return out


def output_gradient(head, z, y):
    """Mean |dloss_i/dz_i| over examples and output units, per member: [K] (saturation diagnostic)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(head.objective(z, head.encode(y)).sum(), z)
    return grad.abs().mean((-2, -1))


def final_metrics(task, y_true, prediction) -> dict:
    """Test metrics of one member with scikit-learn.

    y_true: [N] class indices, or [N, T] targets in original units.
    prediction: [N, C] class probabilities, or [N, T] predictions in original units.
    """
    from sklearn import metrics as skm

    if task == "regression":
        return {
            "rmse": math.sqrt(skm.mean_squared_error(y_true, prediction)),
            "mae": skm.mean_absolute_error(y_true, prediction),
            "r2": skm.r2_score(y_true, prediction),
        }
    labels = prediction.argmax(1)
    classes = np.arange(prediction.shape[1])
    return {
        "accuracy": skm.accuracy_score(y_true, labels),
        "f1_macro": skm.f1_score(y_true, labels, average="macro", labels=classes, zero_division=0),
        "log_loss": skm.log_loss(y_true, prediction, labels=classes),
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
