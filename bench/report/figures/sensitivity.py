"""Learning-rate sensitivity (tuned runs): final validation metric against learning rate, one panel
per dataset and setting, one line per configuration (colour = loss, dashes = activation) with its 95 %
band over replicates clipped to the metric's bounds, each configuration's validation-chosen learning
rate starred."""
import math

from bench import stats
from bench.report.figures import axis_label, config_handles, grid, legend, lines_with_bands, save, style
from bench.report.tables import within_bounds


def draw(members, out, name) -> str | None:
    """members: `tuned.member_vals` rows (one per replicate x lr); log x axis."""
    from matplotlib.lines import Line2D

    m = members.dropna(subset=["lr"])
    if m.empty or m["lr"].nunique() < 2:
        return None
    m = m.merge(members.drop_duplicates("config")[["config"]].assign(
        activation=lambda f: f["config"].str.split("+").str[0],
        loss=lambda f: f["config"].str.split("+", n=1).str[1].str.split(" [", regex=False).str[0]), on="config")
    panels = sorted(set(zip(m["dataset"], m["setting"])))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes, anchor = grid(rows, cols, panel=(3.8, 2.7), left=0.9, hgap=0.95, wgap=0.9,
                             title="Final validation metric against learning rate (mean over replicates, 95 % band); "
                                   "★ = the validation-chosen learning rate")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, setting) in zip(axes.flat, panels):
        d = m[(m["dataset"] == dataset) & (m["setting"] == setting)]
        metric = d["metric"].iloc[0]
        band = within_bounds(stats.band(d, ["config", "activation", "loss", "lr"], "val").assign(metric=metric))
        lines_with_bands(ax, band.rename(columns={"config": "line"}), "lr", metric=metric)
        chosen = d[d["chosen"]].groupby(["config", "activation", "loss"]).agg(lr=("lr", "first"), val=("val", "mean"))
        for (config, activation, loss), row in chosen.iterrows():
            star, = ax.plot(row["lr"], row["val"], marker="*", ms=13, color=style.colour(loss), mec="black", mew=0.6,
                            ls="")
            style.tag(star, loss)
        ax.set_xscale("log")
        ax.set_title(f"{dataset} · {setting}" if setting else dataset, fontsize=9)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel(axis_label(metric, "final val"))
        ax.grid(alpha=0.3)
    handles = config_handles(m)
    handles.append(Line2D([], [], marker="*", ms=12, color="0.4", mec="black", ls="", label="chosen lr"))
    legend(fig, handles, anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)
