"""Forecast metrics of one member on one split: plain numpy functions of the targets and predictions,
both in the target's own units.

    y: targets [N] or [N, T];  p: point forecasts, the same shape;  q: quantile forecasts [N, T, L] at
    increasing levels tau [L] (a single target may pass [N, L]).

    wape(y, p)              100 sum |p - y| / sum |y|                     percent, 0 is best
    smape(y, p)             100 mean 2 |p - y| / (|y| + |p|), 0 where both are 0   percent, in [0, 200]
    naive_scale(y_train)    MASE's scale: the in-sample MAE of the training-mean forecast
    mase(y, p, scale)       MAE / scale                                   < 1: beats the naive forecast
    bias(y, p)              mean signed error p - y, target units         < 0: under-forecast
    bias_share(y, p)        the same in percent of the mean target; None unless every target is > 0
    pinball(y, q, tau)      the pinball loss per level [L] (scikit-learn's mean_pinball_loss)
    coverage(y, q)          per level [L], the share of targets at or below its forecast (about tau)
    crossing(q)             the share of rows where some level's forecast is above the next level's

Several targets: each figure is the uniform average over targets (scikit-learn's multioutput default).

MASE (Hyndman & Koehler 2006) divides by the in-sample MAE of a naive forecast. The rows here are not
a time series (a demand row is one item on one day, drawn in no order), so there is no "previous
value"; the naive forecast is the training mean, as Hyndman suggests for non-time-series data: the
constant a forecaster without features would use, and the one MSE's optimum tends to when features
carry nothing. Its scale is 0 only when every training target is the same (bench.heads.check_targets
refuses such data before training).
"""
import numpy as np


def _columns(y, p):
    """y, p -> float64 [N, T] each (a [N] array is one target)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} and forecasts {p.shape} differ in shape")
    return (y[:, None], p[:, None]) if y.ndim == 1 else (y, p)


def _levels(y, q):
    """y -> [N, T], q -> [N, T, L] (a single target's [N, L] made [N, 1, L])."""
    y, q = np.asarray(y, dtype=np.float64), np.asarray(q, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    q = q[:, None, :] if q.ndim == 2 and y.shape[1] == 1 else q
    if q.shape[:2] != y.shape:
        raise ValueError(f"quantile forecasts {q.shape} do not match targets {y.shape}: [N, T, L] expected")
    return y, q


def wape(y, p) -> float | None:
    """Weighted absolute percentage error, 100 sum |p - y| / sum |y| per target (percent); None where every
    target is 0.

    >>> wape([100, 300], [110, 270])
    10.0
    """
    y, p = _columns(y, p)
    total = np.abs(y).sum(0)
    return float(np.mean(100 * np.abs(p - y).sum(0) / total)) if np.all(total > 0) else None


def smape(y, p) -> float:
    """Symmetric MAPE, 100 mean 2 |p - y| / (|y| + |p|), in [0, 200] percent; a row where y = p = 0 scores 0.
    Not symmetric in what it punishes: at y = 100, p = 150 scores 40 and p = 50 scores 66.7.

    >>> round(smape([100], [150]), 3), round(smape([100], [50]), 3)
    (40.0, 66.667)
    """
    y, p = _columns(y, p)
    total = np.abs(y) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - y), total, out=np.zeros_like(total), where=total > 0)
    return float(100 * ratio.mean())


def naive_scale(y_train) -> np.ndarray:
    """MASE's scale per target [T]: the in-sample MAE of the training-mean forecast, mean |y - mean(y)|."""
    y = np.asarray(y_train, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    return np.abs(y - y.mean(0)).mean(0)


def mase(y, p, scale) -> float:
    """Mean absolute scaled error: MAE / scale per target (scale: `naive_scale` of the training targets).

    >>> mase([1.0, 3.0], [2.0, 2.0], naive_scale([0.0, 2.0, 4.0]))   # MAE 1 / (4/3)
    0.75
    """
    y, p = _columns(y, p)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (y.shape[1],))
    if np.any(scale <= 0):
        raise ValueError("MASE's scale is 0: every training target is the same")
    return float(np.mean(np.abs(p - y).mean(0) / scale))


def bias(y, p) -> float:
    """Mean signed error p - y, in the target's units (negative: the forecasts are too low)."""
    y, p = _columns(y, p)
    return float((p - y).mean())


def bias_share(y, p) -> float | None:
    """Mean signed error in percent of the mean target, per target; None unless every target is > 0
    (a mean near 0, or targets of both signs, make a share of the mean meaningless)."""
    y, p = _columns(y, p)
    if not np.all(y > 0):
        return None
    return float(np.mean(100 * (p - y).mean(0) / y.mean(0)))


def pinball(y, q, tau) -> np.ndarray:
    """The mean pinball loss per level [L], max(tau e, (tau - 1) e) with e = y - q, averaged over rows
    and targets (at tau = 0.5 it is half the MAE).

    >>> pinball([1.0, 2.0], [[0.0], [4.0]], [0.9]).round(3).tolist()   # (0.9 * 1 + 0.1 * 2) / 2
    [0.55]
    """
    y, q = _levels(y, q)
    tau = np.asarray(tau, dtype=np.float64)
    err = y[..., None] - q  # [N, T, L]
    return np.maximum(tau * err, (tau - 1) * err).mean((0, 1))


def coverage(y, q) -> np.ndarray:
    """Per level [L], the share of targets at or below that level's forecast (a tau-quantile covers tau)."""
    y, q = _levels(y, q)
    return (y[..., None] <= q).mean((0, 1))


def crossing(q) -> float:
    """The share of (row, target) pairs whose forecasts at increasing levels do not increase: some level's
    forecast lies above the next level's (quantiles must not cross). 0 for a single level."""
    q = np.asarray(q, dtype=np.float64)
    q = q[:, None, :] if q.ndim == 2 else q
    return float((np.diff(q, axis=-1) < 0).any(-1).mean())


def level_name(name, tau) -> str:
    """The summary key of a per-level figure: coverage_0.9, pinball_0.1."""
    return f"{name}_{tau:g}"


def metrics(y, p, q=None, tau=(), scale=None) -> dict:
    """The forecast figures of one member: {wape, smape, mase (when `scale` is given), bias, bias_pct,
    and for quantile forecasts q [N, T, L] at levels tau: pinball_<tau>, coverage_<tau>, crossing}."""
    out = {"wape": wape(y, p), "smape": smape(y, p), "bias": bias(y, p), "bias_pct": bias_share(y, p)}
    if scale is not None:  # (None where a training split's targets are all equal: MASE is undefined there)
        out["mase"] = mase(y, p, scale) if np.all(np.asarray(scale) > 0) else None
    if q is not None and len(tau):
        for t, loss, share in zip(tau, pinball(y, q, tau), coverage(y, q)):
            out[level_name("pinball", t)], out[level_name("coverage", t)] = float(loss), float(share)
        out["crossing"] = crossing(q)
    return out
