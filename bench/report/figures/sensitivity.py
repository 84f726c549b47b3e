"""Learning-rate sensitivity (tuned runs): final validation metric against learning rate, one panel
per dataset, one line per configuration with its 95 % band over seeds (sns.lineplot, errorbar = the
t interval), each configuration's validation-chosen learning rate marked."""
import math

from bench import stats
from bench.report.figures import axis_label, grid, legend, palette, save


def draw(members, out, name) -> str | None:
    """members: `tuned.member_vals` rows (one per seed x lr); log x axis."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    m = members.dropna(subset=["lr"])
    if m.empty or m["lr"].nunique() < 2:
        return None
    datasets = sorted(m["dataset"].unique())
    cols = min(2, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    colours = palette(m["config"])
    fig, axes, anchor = grid(rows, cols, panel=(4.4, 3.0), left=0.9, right=3.6, hgap=0.9, wgap=0.9,
                             title="Final validation metric against learning rate (mean over seeds, 95 % band); "
                                   "★ = the validation-chosen learning rate")
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        d = m[m["dataset"] == dataset]
        sns.lineplot(d, x="lr", y="val", hue="config", palette=colours, errorbar=stats.t_interval, marker="o",
                     markersize=4, err_kws={"alpha": 0.15, "linewidth": 0}, legend=False, ax=ax)
        chosen = d[d["chosen"]].groupby("config").agg(lr=("lr", "first"), val=("val", "mean"))
        for config, row in chosen.iterrows():
            ax.plot(row["lr"], row["val"], marker="*", ms=14, color=colours[config], mec="black", mew=0.6, ls="")
        ax.set_xscale("log")
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel(axis_label(d["metric"].iloc[0], "final val"))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, lw=2, label=k) for k, c in colours.items()]
    handles.append(Line2D([], [], marker="*", ms=12, color="0.4", mec="black", ls="", label="chosen lr"))
    legend(fig, handles, anchor, title="configuration (colour)")
    return save(fig, out, name)
