"""The pitfall: val accuracy (argmax over classes) and binary_accuracy (element-wise over one-hot
outputs) of the same sigmoid+BCE model, one panel per multiclass dataset."""
import pandas as pd

from bench import stats
from bench.report.figures import grid, legend, save

COLOURS = {"accuracy": "C0", "binary_accuracy": "C3"}


def draw(pit, out, name) -> str | None:
    """pit: `tables.pitfall_rows`, one row per (run, seed, epoch); mean and t interval over seeds."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    if pit.empty:
        return None
    datasets = sorted(pit["dataset"].unique())
    fig, axes, anchor = grid(1, len(datasets), panel=(4.0, 2.8), left=0.8, right=3.6,
                             title="The pitfall: two 'accuracies' of the same sigmoid+BCE model on multiclass data")
    for ax, dataset in zip(axes[0], datasets):
        h = pit[pit["dataset"] == dataset]
        long = h.melt(id_vars=["epoch"], value_vars=list(COLOURS), var_name="metric", value_name="value")
        sns.lineplot(long, x="epoch", y="value", hue="metric", palette=COLOURS, errorbar=stats.t_interval,
                     err_kws={"alpha": 0.2, "linewidth": 0}, lw=1.6, legend=False, ax=ax)
        # what a model that says "no" on every unit scores element-wise: 1 - 1/C (runs record C)
        classes = pd.to_numeric(h["n_classes"], errors="coerce").max()
        if classes > 1:
            ax.axhline(1 - 1 / classes, color="0.35", ls="--", lw=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val accuracy (fraction correct)")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="C0", lw=2, label="accuracy: argmax over\nclasses (categorical)"),
               Line2D([], [], color="C3", lw=2, label="binary_accuracy: each output\nunit vs its one-hot bit"),
               Line2D([], [], color="0.35", ls="--", lw=1, label="1 − 1/C: binary_accuracy of\nall-zero outputs"),
               plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95 % CI over seeds")]
    legend(fig, handles, anchor, title="metric (colour)")
    return save(fig, out, name)
