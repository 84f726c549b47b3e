"""Mean final test metric over loss x activation, one heatmap per dataset."""
import math

import numpy as np

from bench.report.figures import grid, save
from bench.report.tables import fmt


def draw(table, out, name) -> str | None:
    """One panel per (dataset, setting): losses are compared at one knob value, never the best over
    it; n/a (grey) = not trained there.

    imshow, not sns.heatmap: seaborn 0.13's heatmap draws the whole figure once per call (to see
    whether tick labels overlap), so a figure of n panels costs n full draws."""
    import matplotlib.pyplot as plt

    t = table[table["n"] > 0]
    if t.empty:
        return None
    panels = sorted(set(zip(table["dataset"], table["setting"])))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    # each panel shows the losses and activations run on its dataset (invalid ones as n/a)
    axes_of = {d: (sorted(g["loss"].unique()), sorted(g["activation"].unique())) for d, g in table.groupby("dataset")}
    n_loss = max(len(a[0]) for a in axes_of.values())
    n_act = max(len(a[1]) for a in axes_of.values())
    fig, axes, _ = grid(rows, cols, panel=(max(1.6, 0.9 * n_act + 0.4), 0.36 * n_loss + 0.3),
                        left=1.0, right=1.0, wgap=1.9, hgap=1.1, top=1.1,
                        title="Final test metric, mean over seeds; grey n/a = not trained")
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.88")  # n/a cells: invalid, failed or not run
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, setting) in zip(axes.flat, panels):
        d = t[(t["dataset"] == dataset) & (t["setting"] == setting)]
        ax.set_title(f"{dataset}\n{setting}" if setting else dataset, fontsize=9)
        if d.empty:
            ax.text(0.5, 0.5, "no test values", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        higher = bool(d["higher_is_better"].iloc[0])
        losses, activations = axes_of[dataset]
        best = d.drop_duplicates(["loss", "activation"])  # one row per pair within a setting
        cells = best.pivot(index="loss", columns="activation", values="mean").reindex(index=losses, columns=activations)
        values = cells.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap if higher else cmap.reversed(), aspect="auto")
        image.cmap.set_bad("0.88")
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if len(finite) else 0
        for (i, j), v in np.ndenumerate(values):
            dark = np.isfinite(v) and ((v < middle) == higher)
            ax.text(j, i, "n/a" if np.isnan(v) else fmt(v, 3, pad=True), ha="center", va="center", fontsize=8,
                    color="white" if dark else "0.15")
        ax.set_xticks(range(len(activations)), activations)
        ax.set_yticks(range(len(losses)), losses)
        ax.grid(False)
        ax.set_xlabel("output activation")
        ax.set_ylabel("loss")
        bar = fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03)
        bar.set_label(f"test {d['metric'].iloc[0]}\n({'higher' if higher else 'lower'} is better)", fontsize=8)
    return save(fig, out, name)
