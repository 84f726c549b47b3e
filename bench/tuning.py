"""Choosing a run's learning rate on validation only (the learning rate is an ensemble axis: members =
seeds x learning rates, bench.optim.members).

    table = per_lr(members, grid, higher_is_better)   # the summary's "per_lr"
    lr = choose(table, higher_is_better)              # the summary's "chosen_lr"

The chosen learning rate is the one with the best mean over seeds of the main metric on the validation
split at the final epoch: the final parameters are the ones the test figures come from, so the
selection scores exactly the model it hands on (the best epoch would select a point no test figure
describes). A diverged seed is a failure of its learning rate, never a missing value: learning rates
rank first by how many of their seeds diverged (one that never diverged before any that did), then by
that mean. The test split is never read here but to report each learning rate's mean.
"""
import math
import statistics

RULE = ("the learning rate with the best mean over seeds of the main metric on the validation split at "
        "the final epoch, among those with the fewest diverged seeds (a learning rate with any diverged "
        "seed ranks after every learning rate without); ties go to the smaller learning rate")


def lr_selection(metric: str) -> dict:
    """The summary's "lr_selection": how `choose` picks."""
    return {"metric": metric, "split": "val", "epoch": "final", "rule": RULE}


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def per_lr(members, grid, higher_is_better) -> list:
    """One entry per learning rate of `grid`, in its order: {"lr", "val": mean over its seeds of the final
    validation value, "val_std" (sample std; 0 for one seed), "test": mean of the main test metric,
    "diverged": seeds diverged, "at_grid_edge": the smallest or largest of a grid of several}.

    members: one dict per member with lr, val (final validation value, None/NaN once diverged), test
    (main test metric, None if diverged) and diverged (bool). Means are over the seeds with a value."""
    edges = (min(grid), max(grid)) if len(grid) > 1 else ()
    table = []
    for lr in grid:
        mine = [m for m in members if m["lr"] == lr]
        vals = [m["val"] for m in mine if m["val"] is not None and math.isfinite(m["val"])]
        table.append({"lr": lr, "val": _mean(vals),
                      "val_std": statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None),
                      "test": _mean([m["test"] for m in mine]), "diverged": sum(bool(m["diverged"]) for m in mine),
                      "at_grid_edge": lr in edges})
    return table


def choose(table, higher_is_better) -> float:
    """The chosen learning rate of a `per_lr` table (module docstring: fewest diverged seeds, then the
    best mean validation value, then the smaller learning rate)."""
    def rank(entry):
        val = entry["val"]
        score = math.inf if val is None else (-val if higher_is_better else val)
        return entry["diverged"], score, entry["lr"]

    return min(table, key=rank)["lr"]
