"""Epochs to the validation target per seed: box + strip, x = loss, colour = activation, one panel
per dataset and setting (knob value: never pooled); seeds that never reach it are drawn above the
epoch budget."""
import math

import numpy as np

from bench.report.figures import grid, legend, palette, save
from bench.report.tables import fmt


def draw(runs, budget, out, name) -> str | None:
    """runs: `tables.prepare` rows; budget: epochs trained per run_id (`tables.budgets`)."""
    import seaborn as sns
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
    colours = palette(activations)
    n_loss = r["loss"].nunique()
    fig, axes, anchor = grid(rows, cols, panel=(max(4.0, 0.3 * n_loss * len(activations) + 1.0), 2.8),
                             left=0.8, hgap=0.8, wgap=0.7,
                             title="Epochs to the validation target, one point per seed")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, setting) in zip(axes.flat, panels):
        d = r[(r["dataset"] == dataset) & (r["setting"] == setting)]
        order = sorted(d["loss"].unique())  # only what was trained on this dataset
        common = {"data": d, "x": "loss", "y": "epochs", "hue": "activation", "order": order,
                  "hue_order": activations, "palette": colours, "dodge": True, "legend": False, "ax": ax}
        sns.boxplot(**common, fill=False, showfliers=False, linewidth=1)
        sns.stripplot(**common, size=5, alpha=0.75, edgecolor="white", linewidth=0.4, jitter=0.15)
        top = d["run_id"].map(budget).max()
        if np.isfinite(top):
            ax.axhline(top + 0.5, color="0.4", ls=(0, (2, 2)), lw=0.9)
        ax.yaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.set_title(f"{dataset} (target: val {d['metric'].iloc[0]} "
                     f"{'≥' if d['higher_is_better'].iloc[0] else '≤'} {fmt(d['target'].iloc[0])})"
                     + (f"\n{setting}" if setting else ""), fontsize=10)
        ax.set_xlabel("loss")
        ax.set_ylabel("epochs to target")
        ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=a) for a, c in colours.items()]
    handles.append(Line2D([], [], color="0.4", ls=(0, (2, 2)), label="epoch budget:\npoints above it\nnever reached"))
    legend(fig, handles, anchor, title="activation (colour)")
    return save(fig, out, name)
