"""A knob preset's figure: the test metric against the knob (contamination, label noise, output-bias
offset), one line per configuration, each point one setting (compared within it, never pooled); then
epochs to the validation target against the knob; and, where an output can saturate (sigmoid, tanh,
softmax), the output gradient at epoch 0 against it. Rows = datasets.

    knob(settings)                       (key, {setting: value}) when one numeric key varies, else None
    draw(table, grads, budget, out, name)
"""
import numpy as np

from bench.report.figures import axis_label, bounds, config_handles, grid, legend, save, spare, style

SATURATING = ("sigmoid", "tanh", "softmax")


def knob(settings):
    """(key, {setting: float}) when every setting is one `key=value` with the same key and a numeric
    value (at least two values); None otherwise (no knob figure: nothing to put on an x axis)."""
    values, keys = {}, set()
    for setting in set(settings):
        parts = str(setting).split()
        if len(parts) != 1 or "=" not in parts[0]:
            return None
        key, _, value = parts[0].partition("=")
        try:
            values[setting] = float(value)
        except ValueError:
            return None
        keys.add(key)
    return (keys.pop(), values) if len(keys) == 1 and len(values) > 1 else None


def _line(ax, x, y, lo, hi, loss, activation, metric=None, marker="o", shift=0.0):
    """A configuration's line over the knob with its interval as error bars (clipped to the metric);
    shift: an offset along x, so lines that coincide stay visible."""
    low, high = bounds(metric)
    order = np.argsort(np.asarray(x, float))
    x, y = np.asarray(x, float)[order] + shift, np.asarray(y, float)[order]
    line, = ax.plot(x, y, color=style.colour(loss), ls=style.linestyle(activation), marker=marker, ms=5, lw=1.6)
    style.tag(line, loss, activation)
    if lo is not None:
        lo = np.clip(np.asarray(lo, float)[order], low, high)
        hi = np.clip(np.asarray(hi, float)[order], low, high)
        bars = ax.errorbar(x, y, yerr=[np.where(np.isfinite(lo), y - lo, 0), np.where(np.isfinite(hi), hi - y, 0)],
                           fmt="none", ecolor=style.colour(loss), elinewidth=1, capsize=3)
        for part in (*bars.lines[1], *bars.lines[2]):
            style.tag(part, loss)


def draw(table, grads, budget, out, name) -> str | None:
    """table: `tables.ranking` rows of one group; grads: `tables.curve_frame(..., column="out_grad",
    split="train")` rows (epoch 0 is read); budget: epochs trained per run_id's dataset (a number)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    t = table[table["n"] > 0]
    found = knob(t["setting"]) if len(t) else None
    if found is None:
        return None
    key, values = found
    t = t.assign(x=t["setting"].map(values))
    first = grads[grads["epoch"] == grads["epoch"].min()] if len(grads) else grads
    first = first[first["activation"].isin(SATURATING) & first["extra"].isin(values)] if len(first) else first
    panels = ["test", "epochs", *(["grad"] if len(first) else [])]
    datasets = sorted(t["dataset"].unique())
    title = f"Against {key}: each point is one setting, losses compared within it"
    if len(datasets) == 1 and len(panels) == 3:  # one dataset: two by two, the legend in the fourth place
        fig, square, _ = grid(2, 2, panel=(2.6, 1.9), left=0.95, right=0.3, wgap=1.05, hgap=0.95, title=title)
        axes, anchor = [[square[0, 0], square[0, 1], square[1, 0]]], spare(square[1, 1])
    else:
        fig, axes, anchor = grid(len(datasets), len(panels), panel=(2.5, 2.0), left=0.95, wgap=1.05, hgap=0.9,
                                 title=title, below=t["loss"].nunique() + t["activation"].nunique() + 1)
    span = max(values.values()) - min(values.values())
    for row, dataset in zip(axes, datasets):
        d = t[t["dataset"] == dataset]
        metric, higher = d["metric"].iloc[0], bool(d["higher_is_better"].iloc[0])
        lines = d.groupby(["activation", "loss"], sort=True)
        for ax, panel in zip(row, panels):
            for k, ((activation, loss), c) in enumerate(lines):
                if panel == "test":
                    _line(ax, c["x"], c["mean"], c["lo"], c["hi"], loss, activation, metric)
                elif panel == "epochs":  # counts coincide often: each line a little apart along x
                    shift = (k - (lines.ngroups - 1) / 2) * 0.025 * span
                    c = c.sort_values("x")
                    never = ~np.isfinite(c["epochs_median"].to_numpy(float))
                    y = np.where(never, budget + 1, c["epochs_median"].to_numpy(float))
                    _line(ax, c["x"], y, None, None, loss, activation, shift=shift)
                    if never.any():  # never reached: drawn above the budget, hollow
                        ax.scatter(c["x"].to_numpy(float)[never] + shift, y[never], s=55, facecolors="white",
                                   edgecolors=style.colour(loss), linewidths=1.5, zorder=3)
                        style.tag(ax.collections[-1], loss)
                else:
                    g = first[(first["dataset"] == dataset) & (first["activation"] == activation)
                              & (first["loss"] == loss)]
                    if len(g):
                        _line(ax, g["extra"].map(values), g["mean"], g["lo"], g["hi"], loss, activation)
            ax.set_xticks(sorted(values.values()))
            ax.set_xlabel(key)
            ax.grid(alpha=0.3)
            ax.set_title(dataset, fontsize=9)
        row[0].set_ylabel(axis_label(metric, "test") + f"\n({'higher' if higher else 'lower'} is better)", fontsize=8)
        row[1].axhline(budget + 0.5, color=style.REFERENCE, ls=(0, (2, 2)), lw=0.9)
        row[1].set_ylabel("epochs to the val target\n(median replicate)", fontsize=8)
        row[1].set_ylim(0, budget + 2)
        if len(panels) == 3:
            row[2].set_yscale("log")
            row[2].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=6))
            row[2].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
            row[2].yaxis.set_minor_locator(NullLocator())
            row[2].set_ylabel("mean |∂loss/∂z| at epoch 0\n(train, log scale)", fontsize=8)
    handles = config_handles(t)
    handles.append(Line2D([], [], color=style.REFERENCE, ls=(0, (2, 2)), lw=0.9,
                          label="epoch budget (hollow: never)"))
    legend(fig, handles, anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)
