"""`python -m bench.report --benchmark [--runs 1000]`: time the report's build on generated results.

Not part of the test suite; the figure it prints belongs in README's Speed section.
"""
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import machine


def synthetic_results(path, n_runs=1000, seeds=5, epochs=100, seed=0) -> Path:
    """Write `n_runs` runs in the results layout with plausible curves (for the timing benchmark).

    Loss and activation names are registry names (bench.losses.LOSSES, ACTIVATIONS), so the report
    draws their anatomy as it would for real results."""
    from bench.store import save_run

    rng = np.random.default_rng(seed)
    losses = ["mse", "mae", "huber", "bce", "cce", "mape", "msle", "log_cosh", "poisson", "hinge"]
    activations = ["linear", "sigmoid", "softmax", "tanh", "softplus"]
    optimizers = ["sgd", "adam"]
    n_datasets = max(1, math.ceil(n_runs / (len(losses) * len(activations) * len(optimizers))))
    tasks = ["multiclass", "binary", "regression"]
    made = 0
    for d in range(n_datasets):
        task = tasks[d % 3]
        metric, higher, target = ("rmse", False, 0.6) if task == "regression" else ("accuracy", True, 0.85)
        for activation in activations:
            for loss in losses:
                for optimizer in optimizers:
                    if made == n_runs:
                        return Path(path)
                    made += 1
                    rid = f"r{made:05d}"
                    facts = {"run_id": rid, "group": "bench", "dataset": f"data{d}", "task": task, "model": "mlp",
                             "activation": activation, "loss": loss, "optimizer": optimizer, "lr": 0.1,
                             "metric": metric, "higher_is_better": higher, "target": target, "epochs": epochs,
                             "seeds": list(range(seeds))}
                    if loss == "cce" and activation != "softmax":
                        save_run(Path(path) / "bench" / rid, "{}\n", None,
                                 {**facts, "status": "invalid", "per_seed": [],
                                  "reason": "loss=cce needs a distribution over the classes; use activation=softmax"})
                        continue
                    rate = rng.uniform(0.02, 0.3)
                    e = np.arange(epochs + 1)
                    noise = rng.normal(0, 0.01, (seeds, 2, epochs + 1))
                    level = 1 - np.exp(-rate * e)  # [E]
                    value = (0.1 + 0.85 * level + noise) if higher else (1.5 - 1.1 * level + noise)
                    grad = np.exp(-rate * e)[None, None, :] * rng.uniform(0.5, 1.5, (seeds, 1, 1))
                    sec = e * 0.01
                    s, sp, ep = np.meshgrid(np.arange(seeds), [0, 1], e, indexing="ij")
                    history = pd.DataFrame({
                        "seed": s.ravel(), "epoch": ep.ravel(), "step": ep.ravel() * 10,
                        "train_seconds": sec[ep.ravel()], "split": np.where(sp.ravel() == 0, "train", "val"),
                        "loss": 1 - level[ep.ravel()], metric: value.ravel(), "out_grad": np.broadcast_to(
                            grad, value.shape).ravel()})
                    if task != "regression":
                        history["binary_accuracy"] = 0.9 + 0.09 * level[ep.ravel()]
                    per_seed = []
                    for k in range(seeds):
                        v = value[k, 1]
                        hit = np.flatnonzero(v >= target if higher else v <= target)
                        first = int(hit[0]) if len(hit) else None
                        per_seed.append({"seed": k, "status": "done", "diverged_step": None,
                                         "test": {metric: float(v[-1])}, "best_val": float(v.max() if higher else v.min()),
                                         "epochs_to_target": first, "steps_to_target": None if first is None else 10 * first,
                                         "seconds_to_target": None if first is None else float(sec[first]),
                                         "auc": float(v.mean()), "train_seconds": float(sec[-1])})
                    save_run(Path(path) / "bench" / rid, "{}\n", history,
                             {**facts, "status": "done", "reason": None, "per_seed": per_seed})
    return Path(path)


def benchmark(n_runs=1000, seeds=5, epochs=100, keep=None) -> float:
    """Generate results in a temp dir (or `keep`), build the report, print and return the wall
    seconds of the build (with the CPU seconds of this process and its figure workers: on a busy
    machine the wall time is the load's as much as the report's)."""
    import tempfile

    from bench.report.page import build

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep or tmp)
        if not (root / "bench").is_dir():
            t0 = time.perf_counter()
            synthetic_results(root, n_runs, seeds, epochs)
            print(f"generated {n_runs} runs x {seeds} seeds x {epochs} epochs in {time.perf_counter() - t0:.1f} s")
        cpu0, t0 = os.times(), time.perf_counter()
        index = build(root, root / "report")
        seconds, cpu1 = time.perf_counter() - t0, os.times()
        cpu = sum(cpu1[:4]) - sum(cpu0[:4])  # user + system, self + children
        print(f"report of {n_runs} runs built in {seconds:.1f} s wall, {cpu:.1f} s CPU "
              f"({machine.cores()} cores, load average {os.getloadavg()[0]:.1f}) -> {index}")
    return seconds
