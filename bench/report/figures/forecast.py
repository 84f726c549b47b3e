"""What each loss forecasts: per configuration, its mean test forecast over the conditional mean (a
forest plot: geometric mean over seeds, 95 % t interval on the log ratio) beside its loss's exact
optimum over the conditional mean; one panel per (dataset, setting), a log axis with the mean at 1."""
from bench.report.figures import grid, legend, save, style

TICKS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 10.0)  # ratios to the conditional mean


def draw(frame, out, name) -> str | None:
    """frame: `bench.report.forecast.forecasts`, one row per (dataset, setting, config)."""
    from matplotlib.lines import Line2D

    if frame.empty:
        return None
    panels = list(frame.groupby(["dataset", "setting"], sort=True))
    height = max(len(block) for _, block in panels)
    fig, axes, anchor = grid(1, len(panels), panel=(4.6, 0.32 * height + 0.6), left=2.6, right=2.6,
                             title="What each loss forecasts: test forecast and exact optimum over the "
                                   "conditional mean")
    for ax, ((dataset, setting), block) in zip(axes[0], panels):
        block = block.sort_values(["optimum_vs_mean", "loss", "activation"]).reset_index(drop=True)  # a ladder
        y = range(len(block))[::-1]
        for row, at in zip(block.itertuples(), y):
            colour = style.colour(row.loss)  # one colour per loss, as in every figure
            for artist in (*ax.plot([row.forecast_vs_mean_lo, row.forecast_vs_mean_hi], [at, at], color=colour, lw=2),
                           *ax.plot(row.forecast_vs_mean, at, "o", color=colour, ms=6),
                           *ax.plot(row.optimum_vs_mean, at, "D", mfc="none", mec=colour, ms=8, mew=1.4)):
                style.tag(artist, row.loss)
        ax.axvline(1.0, color=style.REFERENCE, lw=0.8, ls="--")
        ax.set_xscale("log")
        low = min(block["forecast_vs_mean_lo"].min(), block["optimum_vs_mean"].min())
        high = max(block["forecast_vs_mean_hi"].max(), block["optimum_vs_mean"].max())
        ticks = [t for t in TICKS if low / 1.2 <= t <= high * 1.2]
        ax.set_xticks(ticks, [f"{t:g}×" for t in ticks])
        ax.minorticks_off()
        ax.set_yticks(list(y), block["config"])
        ax.set_xlabel("over the conditional mean (log scale)")
        ax.set_title(f"{dataset} · {setting}" if setting else dataset, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    handles = [Line2D([], [], color=style.REFERENCE, marker="o", lw=2, label="mean forecast\n(95 % t interval)"),
               Line2D([], [], color=style.REFERENCE, marker="D", mfc="none", lw=0, label="the loss's exact optimum"),
               Line2D([], [], color=style.REFERENCE, ls="--", lw=0.8, label="the conditional mean")]
    legend(fig, handles, anchor, title="per configuration")
    return save(fig, out, name)
