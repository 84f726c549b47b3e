"""The loss x metric matrix: every test metric a task has, per configuration, so "what does each loss
optimise?" is read off one table (Hui & Belkin's tables: one row per contender).

    columns(task, present)    the metrics shown for a task, in order (of those the runs recorded)
    scores(runs)              one row per (group, dataset, setting, config, metric): mean, lo, hi, n
    best(frame)               per (group, dataset, setting, metric): the configurations with the best mean

Means and 95 % t intervals over replicates (`stats.band`, clipped to the metric's bounds), over the
replicates with a value: this table describes, it tests nothing (the head-to-head and significance
tables do).
"""
import numpy as np
import pandas as pd

from bench import stats
from bench.metric_facts import CLASSIFICATION_METRICS, HIGHER_IS_BETTER, REGRESSION_METRICS
from bench.report.tables import within_bounds

# the metrics a practitioner chooses by, per kind of task; binary_accuracy (element-wise, misleading on
# one-hot outputs: the pitfall), f1_macro, roc_auc and r2 are in the ranking's sources, not here
SHOWN = {"classification": ("accuracy", "log_loss", "brier"), "regression": ("rmse", "mae", "mape", "bias")}
KNOWN = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
# what each metric is, for a column header (units; a metric not listed shows its name)
LABELS = {"accuracy": "accuracy", "log_loss": "log_loss", "brier": "Brier", "rmse": "RMSE (target units)",
          "mae": "MAE (target units)", "mape": "MAPE (%)", "bias": "bias (% of mean target)"}


def columns(task, present) -> list:
    """The task's shown metrics that the runs recorded, then any metric the runs recorded that the
    project's lists do not name yet (a calibration or forecast metric added later), sorted."""
    kind = "regression" if task == "regression" else "classification"
    present = set(present)
    extra = sorted(m for m in present - KNOWN)
    return [m for m in SHOWN[kind] if m in present] + extra


def scores(runs) -> pd.DataFrame:
    """runs: `tables.prepare` rows at each configuration's chosen learning rate. One row per (group,
    dataset, setting, config, metric) with the configuration's activation and loss, and the mean, lo,
    hi and n of its test values over replicates."""
    keys = ["group", "dataset", "setting", "config", "activation", "loss", "task"]
    trained = runs[runs["trained"]]
    parts = []
    for task, t in trained.groupby("task", sort=False):
        for metric in columns(task, [c[5:] for c in t.columns if c.startswith("test_") and t[c].notna().any()]):
            values = t.assign(value=pd.to_numeric(t[f"test_{metric}"], errors="coerce"))
            values = values.assign(value=values["value"].where(np.isfinite(values["value"])))
            parts.append(stats.band(values, keys, "value").assign(metric=metric))
    if not parts:
        return pd.DataFrame(columns=[*keys, "metric", "mean", "lo", "hi", "n"])
    return within_bounds(pd.concat(parts, ignore_index=True))


def best(frame) -> pd.Series:
    """True where a row's mean is the best of its (group, dataset, setting, metric) column: the highest
    or lowest by the metric's direction, bias closest to 0; False for a metric without a direction."""
    def column(c):
        m = c["metric"].iloc[0]
        if m.startswith("bias"):
            score = c["mean"].abs()
        elif m in HIGHER_IS_BETTER:
            score = -c["mean"] if HIGHER_IS_BETTER[m] else c["mean"]
        else:
            return pd.Series(False, index=c.index)
        return score == score.min()

    if frame.empty:
        return pd.Series(dtype=bool)
    return frame.groupby(["group", "dataset", "setting", "metric"], group_keys=False, sort=False)[
        ["metric", "mean"]].apply(column).reindex(frame.index).fillna(False).astype(bool)
