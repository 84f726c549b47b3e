"""A results tree shaped like `make sweep`'s six presets, written by hand in the documented layout
(results/README.md): config.yaml, history.parquet, summary.json (last), tuned over a three-value
learning-rate grid (saturation at one fixed rate, as its preset), five replicates.

Every configuration's numbers are declared below as means (MEANS); each replicate's value is the
mean plus seeded noise, so a test knows what the page must say without reading the report's code.
Used by the reader's test (tests/test_reader.py); small enough to build in seconds.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SEEDS = [0, 1, 2, 3, 4]
EPOCHS = 10
SGD_GRID = [0.01, 0.1, 1.0]
ADAM_GRID = [0.001, 0.003, 0.01]
SPLITS = {"breast_cancer": (341, 114, 114), "moons": (600, 200, 200), "digits": (1079, 359, 359),
          "wine": (106, 36, 36), "diabetes": (264, 89, 89), "friedman1": (600, 200, 200),
          "outliers": (1200, 400, 400), "demand": (1200, 400, 400)}
TASKS = {"breast_cancer": ("binary", 2, "accuracy", 0.95), "moons": ("binary", 2, "accuracy", 0.95),
         "digits": ("multiclass", 10, "accuracy", 0.95), "wine": ("multiclass", 3, "accuracy", 0.95),
         "diabetes": ("regression", 0, "rmse", 60.0), "friedman1": ("regression", 0, "rmse", 1.5),
         "outliers": ("regression", 0, "rmse", 0.3), "demand": ("regression", 0, "rmse", 45.0)}
# which pairings a classification task refuses (bench.losses.VALIDITY, as the README matrix lists them)
INVALID = {("linear", "bce"): "loss=bce needs probabilities in (0, 1); activation=linear gives values in "
                              "(-inf, inf); use activation=sigmoid or softmax",
           ("linear", "cce"): "loss=cce needs one distribution over the classes (summing to 1); activation=linear "
                              "gives values in (-inf, inf); use activation=softmax",
           ("sigmoid", "cce"): "loss=cce needs one distribution over the classes (summing to 1); sigmoid units are "
                               "independent; use activation=softmax"}

# (group, dataset, knob value) -> (activation, loss) -> (test main metric mean, epochs to target of the
# median replicate or None = never, epoch-0 out_grad); classification adds a log_loss, regression a bias
CLASSIFIERS = {("linear", "mse"): (-0.010, 6), ("linear", "mae"): (-0.020, 8), ("linear", "huber"): (-0.012, 6),
               ("sigmoid", "mse"): (-0.015, 7), ("sigmoid", "mae"): (-0.30, None), ("sigmoid", "huber"): (-0.02, 8),
               ("sigmoid", "bce"): (-0.004, 4), ("softmax", "mse"): (-0.006, 5), ("softmax", "mae"): (-0.08, None),
               ("softmax", "huber"): (-0.008, 6), ("softmax", "bce"): (-0.005, 4), ("softmax", "cce"): (0.0, 3)}
BASE = {"breast_cancer": 0.965, "digits": 0.962, "moons": 0.97, "wine": 0.972}
REGRESSORS = {"mse": (1.00, 3, 0.5), "mae": (1.03, 4, -4.0), "huber": (1.01, 3, -1.0), "mape": (1.12, 6, -14.0),
              "log_cosh": (1.005, 3, -0.5)}
RMSE = {"diabetes": 55.0, "friedman1": 1.10, "demand": 40.0}
MEAN_TARGET = {"diabetes": 152.0, "friedman1": 14.4, "demand": 100.0, "outliers": 0.02}  # outliers: centred on 0
OUTLIERS = {0.0: {"mse": 0.20, "mae": 0.24, "huber": 0.21, "log_cosh": 0.205},
            0.1: {"mse": 0.45, "mae": 0.27, "huber": 0.26, "log_cosh": 0.33},
            0.3: {"mse": 1.10, "mae": 0.34, "huber": 0.40, "log_cosh": 0.62}}
SATURATION = {0: {"mse": (0.93, 6, 0.025), "bce": (0.955, 3, 0.050)},
              4: {"mse": (0.90, 8, 0.0031), "bce": (0.955, 3, 0.089)},
              8: {"mse": (0.60, None, 0.00006), "bce": (0.955, 3, 0.090)}}


def _runs():
    """Every run of the tree: dicts with group, dataset, activation, loss, knob, the means and, for an
    invalid pairing, its reason."""
    out = []
    for offset, losses in SATURATION.items():
        for loss, (acc, hit, grad) in losses.items():
            out.append(dict(group="saturation", dataset="digits", activation="sigmoid", loss=loss,
                            knob=("model", "out_bias_offset", offset), value=acc, hit=hit, grad=grad))
    for dataset in ("breast_cancer", "moons", "digits", "wine"):
        for activation, loss in (("sigmoid", "bce"), ("softmax", "cce")):
            shift, hit = CLASSIFIERS[(activation, loss)]
            out.append(dict(group="binary_vs_categorical", dataset=dataset, activation=activation, loss=loss,
                            value=BASE[dataset] + shift, hit=hit, grad=0.05))
    for dataset in ("breast_cancer", "digits"):
        for activation in ("linear", "sigmoid", "softmax"):
            for loss in ("mse", "mae", "huber", "bce", "cce"):
                if (activation, loss) in INVALID:
                    out.append(dict(group="classification", dataset=dataset, activation=activation, loss=loss,
                                    reason=INVALID[(activation, loss)]))
                    continue
                shift, hit = CLASSIFIERS[(activation, loss)]
                out.append(dict(group="classification", dataset=dataset, activation=activation, loss=loss,
                                value=BASE[dataset] + shift * (1.5 if dataset == "digits" else 1), hit=hit,
                                grad=0.03))
    for dataset in ("diabetes", "friedman1"):
        for activation in ("linear", "softplus"):
            for loss, (ratio, hit, bias) in REGRESSORS.items():
                out.append(dict(group="regression", dataset=dataset, activation=activation, loss=loss,
                                value=RMSE[dataset] * ratio * (1.01 if activation == "softplus" else 1), hit=hit,
                                grad=0.4, bias=bias))
    for level, losses in OUTLIERS.items():
        for loss, rmse in losses.items():
            out.append(dict(group="outliers", dataset="outliers", activation="linear", loss=loss,
                            knob=("dataset", "contamination", level), value=rmse, hit=3 if rmse < 0.3 else None,
                            grad=0.4, bias=-55.0 if loss == "mse" else -20.0))
    for activation in ("linear", "softplus"):
        for loss in ("mse", "mae", "mape"):
            ratio, hit, _ = REGRESSORS[loss]
            out.append(dict(group="demand", dataset="demand", activation=activation, loss=loss,
                            value=RMSE["demand"] * ratio, hit=hit, grad=0.4,
                            bias={"mse": 1.0, "mae": -9.0, "mape": -30.0}[loss]))
    return out


def _test_metrics(task, value, rng, spec, n_classes):
    """The test metrics a task has (bench.metric_facts), the main one near `value`."""
    if task == "regression":
        rmse = value * (1 + rng.normal(0, 0.01))
        mape = {"mse": 52.0, "mae": 38.0, "huber": 41.0, "mape": 29.0, "log_cosh": 45.0}[spec["loss"]]
        share = spec["bias"] + rng.normal(0, 0.5)  # % of the mean target
        mean = MEAN_TARGET[spec["dataset"]]
        # bias in the target's units; its share of the mean only where every target is positive (not outliers)
        return {"rmse": rmse, "mae": 0.8 * rmse, "mape": mape * (1 + rng.normal(0, 0.02)),
                "r2": 0.95 - 0.1 * (rmse / value - 1), "bias": share * mean / 100,
                "bias_pct": None if spec["dataset"] == "outliers" else share}
    accuracy = float(np.clip(value + rng.normal(0, 0.004), 0, 1))
    log_loss = 0.10 + 1.5 * (1 - accuracy) + (0.08 if spec["loss"] == "bce" and n_classes == 2 else 0)
    return {"accuracy": accuracy, "binary_accuracy": 1 - (1 - accuracy) / max(n_classes, 2),
            "log_loss": log_loss, "brier": 0.6 * (1 - accuracy), "f1_macro": accuracy - 0.01, "roc_auc": 0.99}


def _curve(start, end, hit, epochs):
    """[epochs + 1]: a curve from `start` to `end` that crosses 80 % of the way near epoch `hit`."""
    tau = (hit or epochs * 3) / 1.6
    e = np.arange(epochs + 1)
    return start + (end - start) * (1 - np.exp(-e / tau))


def write_run(root: Path, spec: dict, rng) -> None:
    group, dataset = spec["group"], spec["dataset"]
    task, n_classes, metric, target = TASKS[dataset]
    higher = metric != "rmse"
    tuned = group != "saturation"
    optimizer = "adam" if group in ("regression", "demand") else "sgd"
    grid = (ADAM_GRID if optimizer == "adam" else SGD_GRID) if tuned else [1.0]
    chosen = grid[len(grid) // 2] if tuned else 1.0
    knob = spec.get("knob")
    rid = "-".join(str(p) for p in (group, dataset, spec["activation"], spec["loss"], *(knob[2:] if knob else ())))
    config = {"group": group, "seeds": SEEDS, "dataset": {"name": dataset, "split_seed": 0},
              "model": {"name": "mlp", "hidden": [64, 64], "activation": "relu", "out_bias_offset": 0.0},
              "activation": {"name": spec["activation"]}, "loss": {"name": spec["loss"]},
              "optimizer": {"name": optimizer, "lr": grid if tuned else 1.0, "lr_grid": grid},
              "trainer": {"epochs": EPOCHS, "batch_size": 32, "eval_every": 1}}
    if knob:
        config[knob[0]][knob[1]] = knob[2]
    path = root / group / rid
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    facts = {"run_id": rid, "group": group, "dataset": dataset, "task": task, "model": "mlp",
             "activation": spec["activation"], "loss": spec["loss"], "optimizer": optimizer, "lr": chosen,
             "lr_grid": grid, "chosen_lr": chosen, "n_classes": n_classes, "metric": metric,
             "higher_is_better": higher, "target": target, "epochs": EPOCHS, "steps_per_epoch": 10,
             "seeds": SEEDS, "seconds": 2.0, "resample": True,
             "split_sizes": dict(zip(("train", "val", "test"), SPLITS[dataset])),
             "lr_selection": {"metric": metric, "split": "val", "epoch": "final",
                              "rule": "best mean over seeds at the final epoch"},
             "environment": {"torch": "2.x", "device": "cpu"}}
    if "reason" in spec:
        (path / "summary.json").write_text(json.dumps({**facts, "status": "invalid", "reason": spec["reason"],
                                                       "per_seed": []}))
        return
    per_seed, history = [], []
    for lr in grid:
        worse = 0.0 if lr == chosen else 0.03 * (1 if higher else -spec["value"])
        for seed in SEEDS:
            test = _test_metrics(task, spec["value"] - worse, rng, spec, n_classes)
            end = test[metric] + rng.normal(0, 0.002 if higher else 0.01 * spec["value"])
            start = 1 / max(n_classes, 2) if higher else 2.5 * spec["value"]
            hit = spec["hit"] if lr == chosen else (spec["hit"] or EPOCHS) + 3
            val = _curve(start, end, hit, EPOCHS)
            reached = np.flatnonzero(val >= target if higher else val <= target)
            first = int(reached[0]) if len(reached) and (spec["hit"] is not None or lr != chosen) else None
            per_seed.append({"seed": seed, "lr": lr, "chosen": lr == chosen, "status": "done",
                             "diverged_step": None, "test": test,
                             "best_val": float(val.max() if higher else val.min()), "epochs_to_target": first,
                             "steps_to_target": None if first is None else 10 * first,
                             "seconds_to_target": None if first is None else 0.05 * first,
                             "auc": float(val.mean()), "train_seconds": 0.05 * EPOCHS})
            grad = spec["grad"] * (1 + rng.normal(0, 0.05)) * np.exp(-np.arange(EPOCHS + 1) / 20)
            for split, curve in (("train", val + (0.01 if higher else -0.02 * spec["value"])), ("val", val)):
                for epoch in range(EPOCHS + 1):
                    row = {"seed": seed, "lr": lr, "epoch": epoch, "step": 10 * epoch,
                           "train_seconds": 0.05 * epoch, "split": split, "loss": 1.0 / (1 + epoch),
                           "out_grad": float(grad[epoch]), metric: float(curve[epoch])}
                    if task == "regression":
                        row.update(mae=0.8 * row["rmse"], mape=40.0, r2=0.9, bias=spec["bias"])
                    else:
                        row.update(binary_accuracy=1 - (1 - row["accuracy"]) / max(n_classes, 2),
                                   log_loss=0.1 + 1.5 * (1 - row["accuracy"]), brier=0.6 * (1 - row["accuracy"]),
                                   f1_macro=row["accuracy"] - 0.01)
                    history.append(row)
    pd.DataFrame(history).to_parquet(path / "history.parquet", index=False)
    (path / "summary.json").write_text(json.dumps({**facts, "status": "done", "reason": None, "per_seed": per_seed}))


def write_presets(root) -> Path:
    """Write the six presets under `root` (a results folder); returns it."""
    root = Path(root)
    rng = np.random.default_rng(29)
    for spec in _runs():
        write_run(root, spec, rng)
    return root


if __name__ == "__main__":  # python tests/preset_tree.py /tmp/presets: a tree to build a report of
    import sys

    print(write_presets(sys.argv[1]))
