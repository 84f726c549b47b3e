"""Performance profiles (Dolan & Moré): for each configuration, the fraction of datasets on which it
reaches the target within τ times the fastest configuration's time. ρ(τ) is the empirical CDF of a
configuration's time ratios over the problems: a dataset at one knob value (never reached = ∞,
counted but never within τ). Drawn only over at least MIN_WORKLOADS problems: on fewer, a profile is a
step or two and the ranking's epochs-to-target column says more."""
import numpy as np
import pandas as pd

from bench.report.figures import grid, legend, save, style
from bench.report.tables import profile_frame

TOP = 8  # configurations drawn in colour (the rest in grey)
MIN_WORKLOADS = 5  # problems (dataset x setting) a profile needs
PANELS = [("epochs_median", "epochs"), ("seconds_median", "training seconds")]


def draw(table, out, name) -> str | None:
    """The TOP configurations by area under the epochs profile in colour, the others in grey."""
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    trained = table[table["seeds"] > 0]
    if len(set(zip(trained["dataset"], trained["setting"]))) < MIN_WORKLOADS:
        return None
    ratios = {what: profile_frame(trained, column) for column, what in PANELS}
    first = next((r for r in ratios.values() if not r.empty), None)
    if first is None:
        return None
    # area under the profile on a log τ axis, up to the largest finite ratio: larger is better
    tau_max = max(2.0, np.nanmax(first.where(np.isfinite(first)).to_numpy()) * 1.2)
    area = {c: -np.log(first[c].clip(upper=tau_max)).sum() for c in first.columns}
    order = sorted(first.columns, key=lambda c: (-area[c], c))
    loss_of = {c: c.split("+", 1)[1] for c in order}  # profile_frame's columns: activation+loss
    activation_of = {c: c.split("+", 1)[0] for c in order}
    fig, axes, anchor = grid(1, 2, panel=(4.8, 3.4), left=0.8, right=3.2, wgap=0.8, bottom=0.9,
                             title=f"Performance profiles over {len(set(zip(trained['dataset'], trained['setting'])))} "
                                   "problems (dataset × setting; "
                                   "time to target of the median replicate)")
    for ax, (column, what) in zip(axes[0], PANELS):
        r = ratios[what]
        if r.empty:
            ax.text(0.5, 0.5, "no configuration reaches the target", ha="center", transform=ax.transAxes)
            continue
        top = max(2.0, np.nanmax(r.where(np.isfinite(r)).to_numpy()) * 1.2)
        # ∞: off the axis
        long = r.clip(upper=top * 10).melt(var_name="config", value_name="ratio").assign(weight=1.0)
        # a weightless point at τ = 1 per configuration: the step starts at ρ = 0 on the axis's left edge
        # (on a log axis, the ECDF's own start at -∞ is not drawn)
        long = pd.concat([long, pd.DataFrame({"config": r.columns, "ratio": 1.0, "weight": 0.0})])
        grey = long[~long["config"].isin(order[:TOP])]
        if len(grey):
            sns.ecdfplot(grey, x="ratio", weights="weight", hue="config",
                         palette={c: "0.78" for c in grey["config"].unique()},
                         lw=0.8, log_scale=True, legend=False, ax=ax)
        for rank, c in enumerate(order[:TOP]):  # thick to thin, so identical profiles stay visible
            sns.ecdfplot(long[long["config"] == c], x="ratio", weights="weight", color=style.colour(loss_of[c]),
                         lw=4.2 - 0.45 * rank, ls=style.linestyle(activation_of[c]), alpha=0.9, log_scale=True, ax=ax)
            style.tag(ax.lines[-1], loss_of[c], activation_of[c])
        nice = np.array([1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 1e4, 1e5])
        ax.set_xlim(1, top)
        ax.set_xticks(nice[nice <= top])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"τ: {what} to target ÷ fastest on the dataset (log scale)")
        settings = r.index.nlevels > 1 and r.index.get_level_values(-1).nunique() > 1
        ax.set_ylabel(f"fraction of {'dataset × setting' if settings else 'datasets'} (of {len(r)}) within τ")
        ax.set_title(f"{what} to target", fontsize=10)
        ax.grid(alpha=0.3)
    handles = [style.tag(Line2D([], [], color=style.colour(loss_of[c]), ls=style.linestyle(activation_of[c]),
                                lw=4.2 - 0.45 * rank, label=c), loss_of[c], activation_of[c])
               for rank, c in enumerate(order[:TOP])]
    if len(order) > TOP:
        handles.append(Line2D([], [], color="0.78", lw=1, label=f"{len(order) - TOP} others"))
    legend(fig, handles, anchor, title="configuration")
    return save(fig, out, name)
