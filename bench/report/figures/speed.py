"""Epochs to the validation target per replicate: box + jittered points, x = loss (its colour), boxes
dodged by activation (their dashes), one panel per dataset and setting (knob value: never pooled);
replicates that never reach it are drawn above the epoch budget."""
import math

import numpy as np

from bench.report.figures import config_handles, grid, legend, save, style
from bench.report.tables import fmt


def draw(runs, budget, out, name) -> str | None:
    """runs: `tables.prepare` rows; budget: epochs trained per run_id (`tables.budgets`)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    r = runs[runs["trained"]].copy()
    if r.empty:
        return None
    r["epochs"] = r["epochs_to_target"].fillna(r["run_id"].map(budget) + 1)
    r = r.dropna(subset=["epochs"])
    if r.empty:
        return None
    panels = sorted(set(zip(r["dataset"], r["setting"])))
    cols = min(3 if len(panels) > 4 else 2, len(panels))
    rows = math.ceil(len(panels) / cols)
    activations = sorted(r["activation"].unique())
    n_loss = r["loss"].nunique()
    fig, axes, anchor = grid(rows, cols, panel=(max(4.0, 0.3 * n_loss * len(activations) + 1.0), 2.8),
                             left=0.8, hgap=1.1 if r["setting"].ne("").any() else 0.8, wgap=0.7,
                             top=1.1 if r["setting"].ne("").any() else 0.8,
                             title="Epochs to the validation target, one point per replicate")
    rng = np.random.default_rng(0)  # the same jitter on every build
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, setting) in zip(axes.flat, panels):
        d = r[(r["dataset"] == dataset) & (r["setting"] == setting)]
        order = sorted(d["loss"].unique())  # only what was trained on this dataset
        # box + jittered points per (loss, activation), dodged by activation: one bxp and one scatter
        # call per panel (seaborn's boxplot + stripplot cost ~5 s a panel on the 1,000-run benchmark)
        width = 0.8 / len(activations)
        groups = {k: v["epochs"].to_numpy(float) for k, v in d.groupby(["loss", "activation"])}
        keys = [(loss, a) for loss in order for a in activations if (loss, a) in groups]
        where = {(loss, a): order.index(loss) + (activations.index(a) - (len(activations) - 1) / 2) * width
                 for loss, a in keys}
        boxes = ax.boxplot([groups[k] for k in keys], positions=[where[k] for k in keys], widths=0.8 * width,
                           showfliers=False, manage_ticks=False, patch_artist=False)
        for part in ("boxes", "medians", "whiskers", "caps"):
            step = 2 if part in ("whiskers", "caps") else 1
            for i, line in enumerate(boxes[part]):
                loss, activation = keys[i // step]
                line.set_color(style.colour(loss))
                line.set_linewidth(1.1)
                if part != "caps":
                    line.set_linestyle(style.linestyle(activation))
                style.tag(line, loss, activation if part != "caps" else None)
        xs = np.concatenate([where[k] + rng.uniform(-0.3, 0.3, len(groups[k])) * width for k in keys])
        ys = np.concatenate([groups[k] for k in keys])
        point_losses = [k[0] for k in keys for _ in groups[k]]
        style.tag(ax.scatter(xs, ys, s=22, alpha=0.75, edgecolors="white", linewidths=0.4,
                             c=[style.colour(loss) for loss in point_losses]), point_losses)
        ax.set_xticks(range(len(order)), order)
        ax.set_xlim(-0.5, len(order) - 0.5)
        top = d["run_id"].map(budget).max()
        if np.isfinite(top):
            ax.axhline(top + 0.5, color=style.REFERENCE, ls=(0, (2, 2)), lw=0.9)
        ax.set_ylim(-0.5, max(d["epochs"].max(), top + 1 if np.isfinite(top) else 0) + 0.5)  # whole epochs from 0
        ax.yaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.set_title(f"{dataset} (target: val {d['metric'].iloc[0]} "
                     f"{'≥' if d['higher_is_better'].iloc[0] else '≤'} {fmt(d['target'].iloc[0])})"
                     + (f"\n{setting}" if setting else ""), fontsize=10)
        ax.set_xlabel("loss")
        ax.set_ylabel("epochs to target")
        ax.grid(axis="y", alpha=0.3)
    handles = config_handles(r)
    handles.append(Line2D([], [], color=style.REFERENCE, ls=(0, (2, 2)),
                          label="epoch budget:\npoints above it\nnever reached"))
    legend(fig, handles, anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)
