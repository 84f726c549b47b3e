"""Choosing a run's learning rate on validation only (the learning rate is an ensemble axis: members =
seeds x learning rates, bench.optim.members).

    table = per_lr(members, grid, higher_is_better)   # the summary's "per_lr"
    lr = choose(table, higher_is_better)              # the summary's "chosen_lr": final quality
    fast = choose_speed(table, higher_is_better)      # the summary's "speed_lr": epochs to target
    more = extension(table, declared, higher_is_better, cap)   # the next rate to train, or None

The chosen learning rate is the one with the best mean over seeds of the main metric on the validation
split at the final epoch: the final parameters are the ones the test figures come from, so the
selection scores exactly the model it hands on (the best epoch would select a point no test figure
describes). A diverged seed is a failure of its learning rate, never a missing value: learning rates
rank first by how many of their seeds diverged (one that never diverged before any that did), then by
that mean. The test split is never read here but to report each learning rate's mean.

Speed has its own choice (`choose_speed`), also on validation: the learning rate whose seeds reach the
validation target in the fewest epochs (median over seeds, never = inf), as AlgoPerf scores time to
target; a configuration's quality is read at `choose`'s rate, its speed at this one.

A grid is a budget, not a verdict: where the chosen rate sits at an edge of the rates trained, the
next rate beyond that edge (the grid's own spacing, `beyond`) is trained on the same seeds, and again,
until the choice is inside, at most `cap` rates a side (`extension`). A choice still at an edge after
the cap is reported as "at least" (the top) or "at most" (the bottom) that rate (`bound`).
"""
import math
import statistics

RULE = ("the learning rate with the best mean over seeds of the main metric on the validation split at "
        "the final epoch, among those with the fewest diverged seeds (a learning rate with any diverged "
        "seed ranks after every learning rate without); ties go to the smaller learning rate")


SPEED_RULE = ("the learning rate whose seeds reach the validation target in the fewest epochs (median over "
              "seeds, a seed that never reaches it counting as never), among those with the fewest diverged "
              "seeds; ties go to the better final validation mean, then to the smaller learning rate")
EXTENSION_RULE = ("where the chosen learning rate is the smallest or largest trained, the next rate past that "
                  "edge (the grid's own spacing) is trained on the same seeds, until the choice is inside or "
                  "{cap} rates were added on that side")


def lr_selection(metric: str, cap: int = 0) -> dict:
    """The summary's "lr_selection": how `choose`, `choose_speed` and `extension` pick."""
    return {"metric": metric, "split": "val", "epoch": "final", "rule": RULE, "speed_rule": SPEED_RULE,
            "extension": EXTENSION_RULE.format(cap=cap)}


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(values) if values else None


def per_lr(members, grid, higher_is_better) -> list:
    """One entry per learning rate of `grid`, in its order: {"lr", "val": mean over its seeds of the final
    validation value, "val_std" (sample std; 0 for one seed), "test": mean of the main test metric,
    "diverged": seeds diverged, "epochs": median over its seeds of the epochs to the validation target
    (None where the median seed never reaches it), "at_grid_edge": the smallest or largest of a grid of
    several}.

    members: one dict per member with lr, val (final validation value, None/NaN once diverged), test
    (main test metric, None if diverged), epochs (epochs to the validation target, None if never) and
    diverged (bool). Means are over the seeds with a value."""
    edges = (min(grid), max(grid)) if len(grid) > 1 else ()
    table = []
    for lr in grid:
        mine = [m for m in members if m["lr"] == lr]
        vals = [m["val"] for m in mine if m["val"] is not None and math.isfinite(m["val"])]
        epochs = statistics.median([math.inf if m.get("epochs") is None else m["epochs"] for m in mine])
        table.append({"lr": lr, "val": _mean(vals),
                      "val_std": statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None),
                      "test": _mean([m["test"] for m in mine]), "diverged": sum(bool(m["diverged"]) for m in mine),
                      "epochs": None if math.isinf(epochs) else epochs, "at_grid_edge": lr in edges})
    return table


def choose(table, higher_is_better) -> float:
    """The chosen learning rate of a `per_lr` table (module docstring: fewest diverged seeds, then the
    best mean validation value, then the smaller learning rate)."""
    def rank(entry):
        val = entry["val"]
        score = math.inf if val is None else (-val if higher_is_better else val)
        return entry["diverged"], score, entry["lr"]

    return min(table, key=rank)["lr"]


def choose_speed(table, higher_is_better) -> float:
    """The learning rate of a `per_lr` table whose seeds reach the validation target fastest: fewest
    diverged seeds, then the smallest median epochs to target (a seed that never reaches it counts as
    inf), then the best mean final validation value, then the smaller rate. Where no rate's median seed
    reaches the target this is `choose`'s rate."""
    def rank(entry):
        val = entry["val"]
        score = math.inf if val is None else (-val if higher_is_better else val)
        epochs = entry.get("epochs")
        return entry["diverged"], math.inf if epochs is None else epochs, score, entry["lr"]

    return min(table, key=rank)["lr"]


def beyond(grid, side: str) -> float:
    """The next learning rate past one edge of a sorted grid ("above" or "below"), continuing the
    grid's spacing two steps back, so a 1-3-10 grid goes on 30, 100, ... and 0.001, 0.0003, ...
    (a uniform log grid continues its one ratio); rounded to 12 significant digits: 3 x 3.333... is 10, not 10.000000000000002)."""
    g = sorted(grid)
    if side == "below":
        g = [1 / v for v in reversed(g)]
    ratios = [b / a for a, b in zip(g, g[1:])] or [10.0]
    nxt = g[-1] * ratios[-2 if len(ratios) > 1 else -1]
    nxt = 1 / nxt if side == "below" else nxt
    return float(f"{nxt:.12g}")


def extension(table, declared, higher_is_better, cap: int) -> float | None:
    """The next learning rate to train for a `per_lr` table over the rates trained so far, or None:
    where `choose`'s rate is the largest (smallest) of a grid of several and fewer than `cap` rates were
    added above (below) the `declared` grid, the next rate past that edge (`beyond`)."""
    rates = sorted(e["lr"] for e in table)
    if len(declared) < 2 or cap <= 0:
        return None
    chosen = choose(table, higher_is_better)
    for side, edge, added in (("above", rates[-1], sum(r > max(declared) for r in rates)),
                              ("below", rates[0], sum(r < min(declared) for r in rates))):
        if chosen == edge and added < cap:
            return beyond(rates, side)
    return None


def bound(table, declared, higher_is_better) -> str | None:
    """"at least" / "at most" where `choose`'s rate is still the largest / smallest rate trained of a
    grid of several (the cap was hit: the optimum may lie further out), else None (tuned: inside)."""
    rates = sorted(e["lr"] for e in table)
    if len(declared) < 2:
        return None
    chosen = choose(table, higher_is_better)
    return "at least" if chosen == rates[-1] else "at most" if chosen == rates[0] else None
