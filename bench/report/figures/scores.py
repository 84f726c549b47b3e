"""The loss x metric matrix drawn: per dataset and setting (a row of panels), the metrics along x and
for each configuration how far its mean is from the best mean of that metric's column, as a ratio
(1 = the best; log scale), so "each loss is best on the metric it optimises" shows as a point on the
floor of its own column; beside it, where the runs record it, the forecast bias with its 95 %
interval (it has no better direction: 0 is unbiased). Colour = loss; points carry no dashes, so the
activation is the marker's shape (`style.marker`)."""
import math

import numpy as np

from bench.report.figures import bounds, grid, legend, save, style
from bench.report.scorecard import direction


NICE = (1, 1.02, 1.05, 1.1, 1.2, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def spaced_ticks(top) -> list:
    """Ticks from NICE up to `top` on a log axis starting at 1, each at least 1/12 of the axis above the last."""
    gap = math.log(top) / 12
    ticks = [1.0]
    for v in NICE[1:]:
        if v <= top and math.log(v / ticks[-1]) >= gap:
            ticks.append(v)
    return ticks


def _ratio_panel(ax, d, metrics, configs):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    present = [c for c in configs if c in set(d["config"])]
    for k, config in enumerate(present):
        c = d[d["config"] == config]
        x = np.array([metrics.index(m) for m in c["metric"]]) + (k - (len(present) - 1) / 2) * 0.6 / len(present)
        loss, activation = c["loss"].iloc[0], c["activation"].iloc[0]
        dots, = ax.plot(x, c["times"], ls="", marker=style.marker(activation), ms=5.5, color=style.colour(loss),
                        mec="white", mew=0.5)
        style.tag(dots, loss, activation)
    ax.set_yscale("log")
    top = max(1.1, d["times"].max() * 1.08)
    ax.set_ylim(0.98, top)
    ax.yaxis.set_major_locator(FixedLocator(spaced_ticks(top)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}×"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.axhline(1, color=style.REFERENCE, lw=0.8)
    names = d.drop_duplicates("metric").set_index("metric")["label"]
    ax.set_xticks(range(len(metrics)), [names.get(m, m).split(" (")[0] for m in metrics], fontsize=8)
    ax.set_xlim(-0.6, len(metrics) - 0.4)
    ax.set_ylabel("× the best (log scale)", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _bias_panel(ax, b, configs):
    if b.empty:
        ax.set_visible(False)
        return
    present = [c for c in configs if c in set(b["config"])]
    low, high = bounds("bias")
    for k, config in enumerate(present):
        r = b[b["config"] == config].iloc[0]
        err = None if not np.isfinite(r["lo"]) else [[r["mean"] - max(r["lo"], low)], [min(r["hi"], high) - r["mean"]]]
        bar = ax.errorbar([k], [r["mean"]], yerr=err, fmt=style.marker(r["activation"]), ms=5.5,
                          color=style.colour(r["loss"]), mec="white", mew=0.5, capsize=2.5, elinewidth=1.2)
        for part in (bar.lines[0], *bar.lines[1], *bar.lines[2]):
            style.tag(part, r["loss"])
    ax.axhline(0, color=style.REFERENCE, lw=0.8)
    ax.set_xticks(range(len(present)), [p.split(" [")[0] for p in present], rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(present) - 0.4)
    ax.set_ylabel(b["label"].iloc[0], fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def draw(scores, out, name) -> str | None:
    """scores: `scorecard.scores` rows of one group."""
    from matplotlib.lines import Line2D

    finite = scores[np.isfinite(scores["mean"].astype(float))] if len(scores) else scores
    ranked = finite["metric"].map(direction).notna() if len(finite) else []
    s = finite[ranked & (finite["mean"].astype(float) > 0)] if len(finite) else finite
    if len(s):  # a place (dataset, setting) with one ranked metric has nothing to set side by side
        s = s[s.groupby(["dataset", "setting"])["metric"].transform("nunique") > 1]
    if s.empty:
        return None
    bias = finite[finite["metric"] == "bias"]
    higher = s["metric"].map(direction).astype(bool)
    keys = ["dataset", "setting", "metric"]
    best, least = (s.groupby(keys)["mean"].transform(f) for f in ("max", "min"))
    s = s.assign(times=np.where(higher, best / s["mean"], s["mean"] / least))  # >= 1: times the best
    places = sorted(set(zip(s["dataset"], s["setting"])))
    metrics = list(dict.fromkeys(s["metric"]))
    configs = s.drop_duplicates("config").sort_values(["loss", "activation"])["config"].tolist()
    losses, activations = sorted(set(s["loss"])), sorted(set(s["activation"]))
    # a place is a pair of panels (ratios, bias) where the runs record a bias, else one panel, two to a row
    pairs = len(bias) > 0
    cols = 2 if pairs or len(places) > 1 else 1
    rows = len(places) if pairs else math.ceil(len(places) / cols)
    fig, axes, anchor = grid(rows, cols, panel=(max(3.2, 0.75 * len(metrics) + 0.6), 2.3),
                             left=0.8, wgap=0.9, hgap=1.5 if pairs else 0.9, bottom=1.2 if pairs else 0.6,
                             title="Each metric against its best configuration (1 = the best)",
                             below=len(losses) + len(activations))
    for ax in axes.flat[len(places) * (2 if pairs else 1):]:
        ax.set_visible(False)
    for k, (dataset, setting) in enumerate(places):
        where = f"{dataset} · {setting}" if setting else dataset
        ratio_ax = axes[k, 0] if pairs else axes.flat[k]
        _ratio_panel(ratio_ax, s[(s["dataset"] == dataset) & (s["setting"] == setting)], metrics, configs)
        ratio_ax.set_title(where, fontsize=9)
        if pairs:
            _bias_panel(axes[k, 1], bias[(bias["dataset"] == dataset) & (bias["setting"] == setting)], configs)
            axes[k, 1].set_title(f"{where}: forecast bias (95 % interval)", fontsize=9)
    handles = [style.tag(Line2D([], [], ls="", marker="o", color=style.colour(loss), label=loss), loss)
               for loss in losses]
    handles += [Line2D([], [], ls="", marker=style.marker(a), color=style.REFERENCE, label=f"{a} output")
                for a in activations]
    legend(fig, handles, anchor, title="loss (colour), output (marker)")
    return save(fig, out, name)
