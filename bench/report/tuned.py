"""The tuned view's numbers: runs whose `optimizer.lr` is a grid train one member per (seed,
learning rate); the report ranks each configuration at its validation-chosen learning rate and shows
these beside it.

    member_vals(runs, history)  one row per (run, seed, lr) member with its final validation value
    sensitivity(members, tol)   per configuration: mean val per lr, the chosen lr, the lrs near the best
    fixed_lr(optimizer, grid)   THE learning rate of the fixed-learning-rate view, and why
    tuned_groups(runs)          the groups that train several learning rates
    fixed_view(runs)            those groups' ranking with every configuration at the fixed lr
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.tables import fmt, ranking


def member_vals(runs, history) -> pd.DataFrame:
    """Tuned runs: one row per (run, seed, lr) member with `val`, its final validation value of the
    main metric (NaN when it diverged: a failure of that learning rate, never a missing value).

    From the history's last val epoch per member when the history has an `lr` column; else each
    row's `best_val`."""
    cols = ["group", "dataset", "setting", "config", "metric", "higher_is_better", "run_id", "seed", "lr",
            "chosen", "seed_status"]
    members = runs[runs["trained"]][cols].copy()
    members["lr"] = pd.to_numeric(members["lr"], errors="coerce")
    if not history.empty and "lr" in history:
        h = history[history["split"] == "val"]
        h = h[h["epoch"] == h.groupby("run_id")["epoch"].transform("max")]
        metric = members.drop_duplicates("run_id").set_index("run_id")["metric"]
        value = pd.Series(np.nan, index=h.index)
        for m in metric.dropna().unique():
            rows = h["run_id"].map(metric) == m
            if m in h:
                value[rows] = h.loc[rows, m]
        last = h.assign(val=value)[["run_id", "seed", "lr", "val"]].astype({"seed": float, "lr": float})
        members = members.astype({"seed": float}).merge(last, on=["run_id", "seed", "lr"], how="left")
    else:
        members["val"] = pd.to_numeric(runs.loc[members.index, "best_val"], errors="coerce")
    members.loc[members["seed_status"] == "diverged", "val"] = np.nan
    return members


def sensitivity(members, tolerance) -> pd.DataFrame:
    """Per (group, dataset, setting, config): the mean validation value per learning rate, the best
    one, the chosen lr, the grid and the lrs whose mean is within `tolerance` (relative) of the best.
    A learning rate with a diverged seed has a NaN mean: it is never within tolerance."""
    keys = ["group", "dataset", "setting", "config"]
    out = []
    for key, m in members.groupby(keys, sort=True):
        higher = bool(m["higher_is_better"].fillna(True).iloc[0])
        mean = m.groupby("lr")["val"].agg(lambda v: v.mean() if v.notna().all() else np.nan).sort_index()
        grid = mean.index.to_numpy(float)
        best = mean.max() if higher else mean.min()
        near = mean >= best * (1 - tolerance) if higher else mean <= best * (1 + tolerance)
        chosen = m.loc[m["chosen"], "lr"]
        lr = float(chosen.iloc[0]) if len(chosen) else math.nan
        out.append({**dict(zip(keys, key)), "metric": m["metric"].iloc[0], "higher_is_better": higher,
                    "grid": grid, "best": best, "chosen_lr": lr,
                    "near": grid[near.to_numpy()], "at_edge": len(grid) > 1 and lr in (grid.min(), grid.max())})
    return pd.DataFrame(out)


OPTIMIZERS = Path(__file__).resolve().parents[2] / "conf" / "optimizer"


def fixed_lr(optimizer, grid, folder=OPTIMIZERS) -> tuple:
    """(lr, why): THE learning rate of the fixed-learning-rate view (the page's second ranking,
    ranking-fixed-lr.csv and the answers' fixed-order sentence all read it here): the optimizer's
    default `lr` in conf/optimizer/<optimizer>.yaml, what a run that does not tune would use; where the
    grid lacks it, the grid value nearest it on a log scale; without a default, the grid's middle."""
    import yaml

    grid = sorted(float(v) for v in grid)
    path = Path(folder) / f"{optimizer}.yaml"
    default = yaml.safe_load(path.read_text()).get("lr") if path.is_file() else None
    if isinstance(default, bool) or not isinstance(default, (int, float)) or default <= 0:
        return grid[len(grid) // 2], f"the middle of the grid: {optimizer} has no default lr in conf/optimizer"
    source = f"conf/optimizer/{optimizer}.yaml, what a run that does not tune uses"
    nearest = min(grid, key=lambda v: abs(math.log(v / default)))
    if math.isclose(nearest, default, rel_tol=1e-9):
        return nearest, f"{optimizer}'s default in {source}"
    return nearest, f"the grid value nearest {optimizer}'s default {fmt(default, 3)} in {source}"


def tuned_groups(runs) -> list:
    """The groups whose runs train several learning rates (a grid chosen on validation). A group at one
    fixed learning rate (saturation) has no fixed-lr view, sensitivity section or grid-edge warning."""
    if "lr" not in runs or runs["chosen"].all():
        return []
    lrs = pd.to_numeric(runs["lr"], errors="coerce").groupby([runs["group"], runs["run_id"]]).nunique()
    return sorted(lrs[lrs > 1].index.get_level_values("group").unique())


def fixed_view(runs) -> pd.DataFrame | None:
    """Tuned groups (`runs`: every member, from `prepare`): the ranking with every configuration at
    `fixed_lr` of its optimizer and grid, with columns `lr` and `lr_why`; None when no group is tuned."""
    keep = []
    for group in tuned_groups(runs):
        r = runs[runs["group"] == group]
        lr = pd.to_numeric(r["lr"], errors="coerce")
        optimizers = r["optimizer"].fillna("") if "optimizer" in r else pd.Series("", index=r.index)
        for optimizer, o in r.groupby(optimizers, sort=True):
            fixed, why = fixed_lr(optimizer, lr[o.index].dropna().unique())
            keep.append(ranking(o[np.isclose(lr[o.index], fixed)]).assign(lr=fixed, lr_why=why))
    return pd.concat(keep, ignore_index=True) if keep else None
