"""The loss x metric matrix: every test metric a task has, per configuration, so "what does each loss
optimise?" is read off one table (Hui & Belkin's tables: one row per contender).

    columns(task, present)    the metrics shown for a task, in order (of those the runs recorded)
    scores(runs)              one row per (group, dataset, setting, config, metric): mean, lo, hi, n, label
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
SHOWN = {"classification": ("accuracy", "log_loss", "brier"),
         "regression": ("rmse", "mae", "mape", "wape", "smape", "mase", "bias", "bias_pct")}
KNOWN = set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS)
# what each metric is, for a column header (units; a metric not listed shows its name)
LABELS = {"accuracy": "accuracy", "log_loss": "log_loss", "brier": "Brier", "rmse": "RMSE (target units)",
          "mae": "MAE (target units)", "mape": "MAPE (%)", "wape": "WAPE", "smape": "sMAPE (%)", "mase": "MASE",
          "bias": "bias (target units)", "bias_pct": "bias (% of mean target)"}


def label(metric, runs) -> str:
    """A metric's column header. `bias` is in the target's units where the runs also record `bias_pct`
    (its share of the mean, for positive targets only); results without `bias_pct` recorded `bias` as
    the share itself."""
    if metric == "bias" and "test_bias_pct" not in runs:
        return LABELS["bias_pct"]
    return LABELS.get(metric, metric)


def columns(task, present) -> list:
    """The task's shown metrics that the runs recorded, then any metric the runs recorded that the
    project's lists do not name yet (a calibration or forecast metric added later), sorted."""
    kind = "regression" if task == "regression" else "classification"
    present = set(present)
    shown = [m for m in SHOWN[kind] if m in present]
    return shown + sorted(present - KNOWN - set(shown))


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
            band = stats.band(values, keys, "value")
            # a metric a configuration has no value of (a bias share where targets are not all positive) is not its
            parts.append(band[band["n"] > 0].assign(metric=metric, label=label(metric, runs)))
    if not parts:
        return pd.DataFrame(columns=[*keys, "metric", "mean", "lo", "hi", "n", "label"])
    return within_bounds(pd.concat(parts, ignore_index=True))


# errors the project's metric lists give no direction yet (they are test figures, not dataset.metric choices)
ERRORS = ("wape", "smape", "mase", "pinball")


def direction(metric) -> bool | None:
    """True: higher is better; False: lower; None: no direction (a bias is best at 0; see `best`)."""
    if metric in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[metric]
    return False if metric.startswith(ERRORS) else None


def best(frame) -> pd.Series:
    """True where a row's mean is the best of its (group, dataset, setting, metric) column: the highest
    or lowest by the metric's direction, a bias closest to 0; False for a metric without a direction."""
    if frame.empty:
        return pd.Series(dtype=bool)
    ways = frame["metric"].map(lambda m: "zero" if m.startswith("bias") else direction(m))
    mean = frame["mean"].astype(float)
    score = np.where(ways == "zero", mean.abs(), np.where(ways.eq(True), -mean, np.where(ways.eq(False), mean, np.nan)))
    score = pd.Series(score, index=frame.index)  # smaller is better; NaN: no direction
    least = score.groupby([frame[k] for k in ("group", "dataset", "setting", "metric")]).transform("min")
    return (score == least) & score.notna()
