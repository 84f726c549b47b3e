"""Metrics: curve metrics in torch (batched over members), final metrics with scikit-learn, and the
convergence-speed figures computed from a validation curve.

Curve metrics (`Curves`) take the raw outputs z [K, N, O] of all members at once and return one
value per member and split, computed in the outputs' dtype (float32 in training: half the time of
float64, ~1e-6 relative on the figures); they are every figure below but roc_auc (TEST_ONLY_METRICS:
a sort per member and class at every evaluation cost more than all the other curves together).
Final metrics take one member's raw outputs [N, O] and compute the same figures with scikit-learn,
in float64. Both read the outputs through the run's `Head` (bench.losses), so a metric sees what the
loss trained: class probabilities, per-unit decisions, regression predictions. Regression metrics
are in original target units (predictions and targets multiplied back by the dataset's target_scale).

Classification: accuracy (argmax, "categorical"), binary_accuracy (each output unit's 0/1
decision against its one-hot bit, element-wise: inflated for many classes), log_loss, f1_macro,
roc_auc (one-vs-rest, macro), brier (mean squared distance of the probability vector to the
one-hot target; halved on binary data, as scikit-learn); the test metrics add the calibration errors
ece, ece_classwise and ece_sweep (bench.calibration; not curves: CALIBRATION_METRICS). Regression: rmse, mae, mape (percent),
r2, bias (mean signed error in the target's units: negative = under-forecast); on test also the
forecast figures of bench.forecast (wape, smape, mase, bias_pct: the bias in percent of the mean target,
for positive targets only; a quantile head's pinball loss and coverage per level, and crossing). A
quantile head's regression figures read its point forecast (`Head.point`: the median level where it
is one). Several regression targets: every figure is the uniform average over targets.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.calibration import probability_metrics
from bench.losses import _over_classes
# the metric facts live in a torch-free module (bench.config reads them before torch loads)
from bench.metric_facts import (BOUNDS, CLASSIFICATION_METRICS, HIGHER_IS_BETTER, REGRESSION_METRICS,  # noqa: F401
                                TEST_ONLY_METRICS)

MAPE_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's floor for |y| in MAPE
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)  # scikit-learn's clip of float64 probabilities


class Curves:
    """Curve metrics of several splits from one pass over their rows, per member.

    Built once per run for each member's targets of every split one after the other (y [K, N] classes
    or [K, N, T] values as stored, each member its own rows; [N] / [N, T] when every member shares
    them), each member's target scale [K] (or one float) and the split sizes; called on the raw outputs
    z [M, N, O] of those rows (M = P x K: P evaluation points of the K members, points outermost), it
    returns {name: [M, S]} for the S splits. Every figure is finished from per-split sums of per-example
    quantities (correct or not, -log p, squared error, ...): those are computed once over all N rows and
    summed per split by a matmul against the split indicator [N, S]: a few dozen tensor operations
    whatever the number of splits, members and points.
    """

    def __init__(self, head, y, sizes, target_scale, dtype=torch.float32, padding=0):
        """dtype: the outputs'; the figures are computed in it if float32 or wider (float32 halves the
        time of float64, ~1e-6 relative on the figures), else in float32. padding: rows after the splits'
        that pad each member's rows to whole ROW_ALIGN blocks (bench.models; they count in no split)."""
        dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        shared = y.dim() == (2 if head.task == "regression" else 1)  # one set of targets for every member
        y = y.unsqueeze(0) if shared else y  # [K, N] / [K, N, T] (K = 1: broadcast over the members)
        scale = torch.as_tensor(target_scale, dtype=torch.float64, device=y.device).reshape(-1)  # [K] or [1]
        self.head, self.y, self.dtype = head, y, dtype
        self.target_scale = scale.to(dtype).view(-1, 1, 1)  # [K, 1, 1]
        # softmax + CCE: its loss and gradient are read off the per-row figures (`__call__`)
        self.by_hand = head.plain_cce
        counts = torch.tensor([*sizes, padding], device=y.device)
        split = torch.repeat_interleave(torch.arange(len(sizes) + 1, device=y.device), counts)
        self.split, self.n_splits = split, len(sizes)  # each row's split [N] (S: padding)
        self.indicator = F.one_hot(split, len(sizes) + 1)[:, :-1].to(dtype)  # [N, S]: padding rows all 0
        self.count = self.indicator.sum(0).double()  # rows per split [S] (exact: float64)
        # [K, N, O]: what the loss sees, the units outermost in memory as evaluation keeps the outputs
        self.objective_targets = _units_outermost(head.encode(y.flatten(0, 1)).view(*y.shape[:2], -1))
        if head.task == "regression":
            truth = y.to(dtype) * self.target_scale  # [K, N, T] in original units
            self.truth, self.abs_truth = truth, truth.abs().clamp_min(MAPE_EPS)
            self.mean_truth = (self.indicator.T @ truth) / self.count.to(dtype)[:, None]  # [K, S, T]
            # sum of squares about each split's own mean (r2's denominator) [K, S, T]
            self.spread = ((truth[:, :, None, :] - self.mean_truth[:, None]).pow(2)
                           * self.indicator[None, :, :, None]).sum(1)
        else:
            c = head.n_classes
            onehot = F.one_hot(y, c).to(dtype)  # [K, N, C]
            self.bits = _units_outermost(head.unit_bits(y.flatten()).view(*y.shape, -1).to(dtype))  # [K, N, O]
            # row i contributes to (its class, its split): true positives per class and split come from
            # "correct" [M, N] by one matmul
            self.class_split = (onehot[..., None] * self.indicator[None, :, None, :]).flatten(2)  # [K, N, C*S]
            self.actual = onehot.transpose(1, 2) @ self.indicator  # rows of each class per split [K, C, S]

    @torch.no_grad()
    def __call__(self, z) -> dict:
        """z [M, N, O] -> {"loss": [M, S], "out_grad": [M, S], metric: [M, S], ...}: loss is the training
        objective's mean, out_grad the mean |d loss_i / d z_ij| over examples i and output units j (the
        saturation diagnostic: for 1 sigmoid unit with MSE it is mean |2 (s - y) s (1 - s)|, small
        wherever the unit saturates, which is why MSE on a sigmoid output learns slowly)."""
        z = z.detach()
        m = len(z)
        z = z.view(m // len(self.y), len(self.y), *z.shape[1:])  # [P, K, N, O]
        wide = z.to(self.dtype)
        if self.head.task == "regression":
            out = self._regression(wide, self._objective(z))
        else:
            figures, labels = self.rows(wide, self.y)  # [P, K, N] each
            if self.by_hand:  # softmax + CCE on one-hot targets: loss -log p_y, d loss / dz = p - t, and
                # sum_c |p_c - t_c| = 2 (1 - p_y)
                columns = {"loss": -figures["log_p_true"],
                           "out_grad": 2 * (1 - figures["p_true"]) / self.head.n_classes}
            else:
                columns = self._objective(z)
            out = self._classification(wide, columns, figures, labels)
        return {name: value.reshape(m, self.n_splits) for name, value in out.items()}

    def _objective(self, z) -> dict:
        """{"loss", "out_grad"} per example [P, K, N]: the objective and its gradient by autograd."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            per_example = self.head.objective(z, self.objective_targets)  # [P, K, N]
            (grad,) = torch.autograd.grad(per_example.sum(), z)
        return {"loss": per_example.detach(), "out_grad": grad.abs().mean(-1)}

    def rows(self, z, y):
        """z [P, K, N, O], y [K, N] -> (per-row figures {"p_true", "sum_squares", "units_wrong",
        "log_p_true"} [P, K, N], labels [P, K, N]), from the head's probabilities and decisions,
        "log_p_true" from the logits (`log_p_true`)."""
        labels, p, decisions = self.head.classify(z)  # [P, K, N], [P, K, N, C], [P, K, N, O]
        at_y = y[None, ..., None].expand(*p.shape[:-1], 1)  # [P, K, N, 1]
        figures = {"p_true": p.gather(-1, at_y).squeeze(-1), "sum_squares": p.square().sum(-1)}  # [P, K, N]
        if decisions.shape[-1] == 1:
            figures["units_wrong"] = (decisions[..., 0] - self.bits[..., 0]).abs()
        else:  # one-hot bits
            figures["units_wrong"] = decisions.sum(-1) + 1 - 2 * decisions.gather(-1, at_y).squeeze(-1)
        figures["log_p_true"] = self.log_p_true(z, at_y, p_true=figures["p_true"])
        return figures, labels

    def log_p_true(self, z, at_y, p_true):
        """log p(true class) [P, K, N] from the logits where the head has a log form (softmax: log-softmax;
        one sigmoid/tanh unit: log-sigmoid of +-a z), else log p_true: finite and exact at saturation,
        where float32 p or 1 - p round to 0 or 1. at_y: the true class [P, K, N, 1]."""
        head = self.head
        if head.activation == "softmax":
            if self.by_hand:  # softmax + CCE on one-hot targets: minus its objective
                return -head.objective(z, self.objective_targets)
            log_p = _over_classes(torch.log_softmax, z)
            return log_p.gather(-1, at_y).squeeze(-1)
        if head.n_outputs == 1 and head.logit_slope is not None:
            sign = 2 * self.bits[..., 0] - 1  # +1 for class 1, -1 for class 0 [K, N]
            return F.logsigmoid(head.logit_slope * sign * z[..., 0])
        return p_true.log()

    def _sums(self, columns: dict) -> dict:
        """{name: per-example [P, K, N]} -> {name: per-split sums [P, K, S]} by a matmul each."""
        # a matmul per figure: stacking the figures first copies them all (twice the time)
        return {name: v.to(self.dtype) @ self.indicator for name, v in columns.items()}

    def _classification(self, z, columns, figures, labels):
        """Each per-example figure with as few passes over [P, K, N, C] as its formula allows: on a CPU
        these passes are most of an evaluation's cost. With one-hot targets t and probabilities p
        (rows summing to 1), where y is the true class:
          sum_c (p_c - t_c)^2 = sum_c p_c^2 - 2 p_y + 1                      (brier)
          units wrong         = sum_c d_c + 1 - 2 d_y  for 0/1 decisions d     (binary_accuracy)"""
        head, y = self.head, self.y
        points, k = z.shape[:2]
        n_classes, units = head.n_classes, head.n_outputs
        p_true = figures["p_true"]
        eps = LOG_LOSS_EPS  # float64's, as scikit-learn clips the float64 probabilities of the test summary
        columns.update({
            "correct": labels == y,
            "units_correct": units - figures["units_wrong"],  # element-wise: inflated for many classes
            # scikit-learn's clip of p to [eps, 1 - eps], in logs
            "log_loss": -figures["log_p_true"].clamp(math.log(eps), math.log1p(-eps)),
            "brier": (figures["sum_squares"] - 2 * p_true + 1).clamp_min(0) * (0.5 if n_classes < 3 else 1.0),
        })
        sums = self._sums(columns)
        count = self.count.to(z.dtype)
        out = {name: sums[name] / count for name in ("loss", "out_grad", "log_loss", "brier")}
        # the accuracies are float64 fractions of exact counts (a float32 0.95 is below a target of 0.95)
        out["accuracy"] = sums["correct"].double() / self.count
        out["binary_accuracy"] = sums["units_correct"].double() / (self.count * units)
        # f1 per class and split: true positives (correct rows of the class), predicted and actual counts
        true_pos = (columns["correct"].to(z.dtype).unsqueeze(-2) @ self.class_split).view(points, k, n_classes, -1)
        # rows predicted as each class, per point, member and split: one bincount of (member, class, split)
        member = torch.arange(points * k, device=z.device).view(points, k, 1)
        cell = (member * n_classes + labels) * (self.n_splits + 1) + self.split
        predicted = torch.bincount(cell.view(-1), minlength=points * k * n_classes * (self.n_splits + 1))
        predicted = predicted.view(points, k, n_classes, -1)[..., :-1]  # the padding rows left out
        size = predicted.to(z.dtype) + self.actual  # predicted + actual [P, K, C, S]
        f1 = torch.where(size > 0, 2 * true_pos / size.clamp_min(1), 0.0)  # zero_division=0
        out["f1_macro"] = f1.mean(2)
        return out

    def _regression(self, z, columns):
        head = self.head
        err = head.point(z) * self.target_scale - self.truth  # [P, K, N, T]
        squared = err.pow(2)
        columns.update({"squared": squared.mean(-1), "absolute": err.abs().mean(-1),
                        "percent": (err.abs() / self.abs_truth).mean(-1)})
        for t in range(err.shape[-1]):  # per target: r2 and bias are averaged over targets
            columns[f"err{t}"], columns[f"squared{t}"] = err[..., t], squared[..., t]
        sums = self._sums(columns)
        count = self.count.to(z.dtype)
        targets = range(err.shape[-1])
        sse = torch.stack([sums[f"squared{t}"] for t in targets], -1)  # [P, K, S, T]
        mean_err = torch.stack([sums[f"err{t}"] for t in targets], -1) / count[:, None]  # [P, K, S, T]
        # scikit-learn's r2 with force_finite: a constant target scores 1 if fitted exactly, else 0
        r2 = torch.where(self.spread > 0, 1 - sse / self.spread.clamp_min(1e-300), (sse == 0).to(z.dtype))
        out = {name: sums[name] / count for name in ("loss", "out_grad")}
        out.update({"rmse": (sums["squared"] / count).sqrt(),
                    "mae": sums["absolute"] / count,
                    "mape": 100 * sums["percent"] / count,
                    "r2": r2.mean(-1),
                    "bias": mean_err.mean(-1)})
        return out


def _units_outermost(t):
    """t [..., N, O] with the output units outermost in memory (the layout evaluation keeps the outputs
    in: torch's CPU kernels reduce over a few units fast), the same values and shape."""
    return t.movedim(-1, 0).contiguous().movedim(0, -1)


def final_metrics(head, y_true, z, target_scale=1.0, y_train=None, calibration_bins=15) -> dict:
    """Test metrics of one member with scikit-learn (and bench.forecast): {metric: float or None (undefined)}.

    y_true: [N] class indices, or [N, T] regression targets as stored (y / target_scale).
    z: the member's raw outputs [N, O] (tensor or array); read through the head in float64.
    y_train: the training targets as stored, for MASE's scale (regression; without them no mase).
    None marks a figure that is undefined on this split: roc_auc when a class is absent, bias_pct
    unless every target is positive. Classification adds the calibration errors (bench.calibration) with
    `calibration_bins` equal-mass bins.
    """
    from sklearn import metrics as skm

    from bench import forecast

    z = torch.as_tensor(z).detach().cpu().double()
    y = torch.as_tensor(y_true).detach().cpu()
    if head.task == "regression":
        truth = y.double().numpy() * target_scale  # [N, T]
        pred = (head.point(z) * target_scale).numpy()  # [N, T]
        quantiles = (head.quantile_predictions(z) * target_scale).numpy() if head.quantiles else None  # [N, T, L]
        train = None if y_train is None else torch.as_tensor(y_train).double().numpy() * target_scale  # [n, T]
        scale = None if train is None else forecast.naive_scale(train)  # MASE's, per target
        return {
            "rmse": math.sqrt(skm.mean_squared_error(truth, pred)),
            "mae": skm.mean_absolute_error(truth, pred),
            "mape": 100 * skm.mean_absolute_percentage_error(truth, pred),
            "r2": skm.r2_score(truth, pred),
            **forecast.metrics(truth, pred, quantiles, head.quantiles, scale),
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
        "f1_macro": skm.f1_score(labels_true, labels, average="macro", labels=classes, zero_division=0),
        "roc_auc": None if auc is None else float(auc),
        **probability_metrics(labels_true, proba, list(classes), calibration_bins),  # log_loss, brier, ece, ...
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
