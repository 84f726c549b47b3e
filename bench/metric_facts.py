"""What each metric is, without torch: the tasks (and each one's canonical pairing), the metrics of each task, which way is better and
the values a metric can take. `bench.config` checks `dataset.metric` and `dataset.target` against
these before anything heavy is imported; `bench.metrics` (torch) re-exports them.
"""
TASKS = ("regression", "binary", "multiclass")
# each task's usual (activation, loss): the reference every other pairing is compared with
CANONICAL = {"regression": ("linear", "mse"), "binary": ("sigmoid", "bce"), "multiclass": ("softmax", "cce")}
# whether higher is better, for each candidate for dataset.metric (every one is a curve)
HIGHER_IS_BETTER = {"accuracy": True, "binary_accuracy": True, "f1_macro": True,
                    "log_loss": False, "brier": False,
                    "rmse": False, "mae": False, "mape": False, "r2": True}
# the values each metric can take: the report clips its intervals to them (a t interval of accuracies
# near 1 can reach past 1); bias has no bounds
BOUNDS = {"accuracy": (0, 1), "binary_accuracy": (0, 1), "f1_macro": (0, 1), "roc_auc": (0, 1),
          "log_loss": (0, None), "brier": (0, None), "rmse": (0, None), "mae": (0, None), "mape": (0, None),
          "r2": (None, 1), "wape": (0, None), "smape": (0, 200), "mase": (0, None),
          "ece": (0, 1), "ece_classwise": (0, 1), "ece_sweep": (0, 1)}
# the calibration errors of the test summary (bench.calibration): lower is better; not curves (the
# validation log_loss curve already shows over-confidence growing), so never a dataset.metric
CALIBRATION_METRICS = ("ece", "ece_classwise", "ece_sweep")
# the metrics of each kind of task in the test summary; bias has no "better" direction
CLASSIFICATION_METRICS = ("accuracy", "binary_accuracy", "log_loss", "f1_macro", "roc_auc", "brier",
                          *CALIBRATION_METRICS)
REGRESSION_METRICS = ("rmse", "mae", "mape", "r2", "bias", "wape", "smape", "mase", "bias_pct")
# test figures that are not curves: roc_auc's per-member, per-class sort of every split cost ~6x
# the rest of the curve metrics together at every evaluation (digits, K = 8); the forecast figures
# (bench.forecast) and the calibration errors are computed on test only. A quantile head adds
# pinball_<tau> and coverage_<tau> per level and crossing to these (bench.forecast.metrics).
TEST_ONLY_METRICS = ("roc_auc", "wape", "smape", "mase", "bias_pct", *CALIBRATION_METRICS)


def curve_metrics(task: str) -> list:
    """The metrics `dataset.metric` may name for a task: its curve metrics with a better direction."""
    names = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    return [m for m in names if m in HIGHER_IS_BETTER]
