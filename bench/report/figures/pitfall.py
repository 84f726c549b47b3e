"""The pitfall: val accuracy (argmax over classes) and binary_accuracy (element-wise over one-hot
outputs) of the same sigmoid+BCE model, one panel per multiclass dataset (and setting). The accuracy
is drawn in BCE's colour with the sigmoid's dashes (it is that configuration's metric), the
element-wise number in grey: a grey line is never a loss."""
import math

import pandas as pd

from bench import stats
from bench.report.figures import grid, legend, lines_with_bands, save, style
from bench.report.tables import within_bounds

ELEMENTWISE = "0.55"  # binary_accuracy's grey


def draw(pit, out, name) -> str | None:
    """pit: `tables.pitfall_rows`, one row per (run, seed, epoch); mean and t interval over seeds."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if pit.empty:
        return None
    setting = pit["setting"] if "setting" in pit else pd.Series("", index=pit.index)
    panels = sorted(set(zip(pit["dataset"], setting)))
    cols = min(4, len(panels))
    fig, axes, anchor = grid(math.ceil(len(panels) / cols), cols, panel=(3.6, 2.6), left=0.8, right=3.6,
                             wgap=0.35, hgap=0.8,
                             title="The pitfall: two 'accuracies' of the same sigmoid+BCE model on multiclass data")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for k, (ax, (dataset, where)) in enumerate(zip(axes.flat, panels)):
        h = pit[(pit["dataset"] == dataset) & (setting == where)]
        for metric in ("accuracy", "binary_accuracy"):
            band = within_bounds(stats.band(h, ["epoch"], metric).assign(metric=metric, loss="bce",
                                                                          activation="sigmoid"))
            if metric == "accuracy":
                lines_with_bands(ax, band, "epoch", metric=metric)
            else:
                ax.fill_between(band["epoch"], band["lo"].fillna(band["mean"]), band["hi"].fillna(band["mean"]),
                                color=ELEMENTWISE, alpha=0.2, lw=0)
                ax.plot(band["epoch"], band["mean"], color=ELEMENTWISE, lw=1.6)
        # what a model that says "no" on every unit scores element-wise: 1 - 1/C (runs record C)
        classes = pd.to_numeric(h["n_classes"], errors="coerce").max()
        if classes > 1:
            ax.axhline(1 - 1 / classes, color=style.REFERENCE, ls=(0, (1, 2)), lw=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{dataset} · {where}" if where else dataset, fontsize=9)
        ax.set_xlabel("epoch")
        if k % cols == 0:
            ax.set_ylabel("val accuracy (fraction correct)")
        else:  # the same axis as the first panel's
            ax.tick_params(labelleft=False)
        ax.grid(alpha=0.3)
    handles = [style.tag(Line2D([], [], color=style.colour("bce"), ls=style.linestyle("sigmoid"), lw=2,
                                label="accuracy: argmax over\nclasses (categorical)"), "bce", "sigmoid"),
               Line2D([], [], color=ELEMENTWISE, lw=2, label="binary_accuracy: each output\nunit vs its one-hot bit"),
               Line2D([], [], color=style.REFERENCE, ls=(0, (1, 2)), lw=1,
                      label="1 − 1/C: binary_accuracy of\nall-zero outputs"),
               plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95 % CI over replicates")]
    legend(fig, handles, anchor, title="sigmoid + BCE, two metrics")
    return save(fig, out, name)
