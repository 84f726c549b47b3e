"""The report's figures, one module per kind: each `draw(...)` writes one PNG into `out` and returns
its file name (None: nothing to draw). Matplotlib and seaborn are imported when drawing.

    style      the one mapping: a colour per loss, a line style per activation (read back from the PNGs)
    curves     metric or output gradient vs epoch: a panel per dataset and setting, every configuration in it
    knobs      test metric (and for saturation the output gradient and epochs to target) against a knob
    forest     paired differences against the canonical pairing, one row per configuration
    scores     every test metric of the task per configuration (the loss x metric matrix, drawn)
    heatmaps   final test metric over loss x activation, one scale per metric centred on the canonical pairing
    speed      epochs to target per replicate (box + points)
    profiles   performance profiles across at least 5 workloads (sns.ecdfplot: ρ(τ) is the ECDF of the ratios)
    pitfall    categorical vs element-wise accuracy of sigmoid+BCE on multiclass data
    sensitivity  final validation metric against the learning rate
    robustness label noise: clean test metric and memorisation gap against the noise level
    anatomy    loss and dloss/dz against the logit (analytic: drawn once, in the appendix)
    reliability  test accuracy against confidence per equal-mass bin, before and after temperature scaling

Panels sit on `grid`, whose margins are in inches: the title and the legend always fit, without a
tight-layout pass (slow on big grids). Every line or point that stands for a configuration takes its
loss's colour and its activation's line style (`style`), and says so in its gid (`style.tag`).
"""
import json
from pathlib import Path

import numpy as np

from bench.report.figures import style

DPI = 110
UNITS = {"accuracy": "fraction correct", "binary_accuracy": "fraction of units correct",
         "rmse": "target units", "mae": "target units"}


def axis_label(metric: str, prefix: str = "val") -> str:
    unit = UNITS.get(metric)
    return f"{prefix} {metric}" + (f" ({unit})" if unit else "")


def bounds(metric) -> tuple:
    """(low, high) a metric can take (bench.metric_facts.BOUNDS; -inf/inf where unbounded)."""
    from bench.metric_facts import BOUNDS

    low, high = BOUNDS.get(metric, (None, None))
    return (-np.inf if low is None else low), (np.inf if high is None else high)


def lines_with_bands(ax, rows, x, *, metric=None, logy=False, width=1.5):
    """One LineCollection of mean lines and one PolyCollection of their 95 % bands for `rows`
    (columns loss, activation, `x`, mean, lo, hi; one line per (loss, activation, line) group where
    `line` is an optional extra key), each line in its loss's colour and its activation's dashes, the
    bands clipped to the metric's bounds (and to > 0 on a log axis). Fast for thousands of lines."""
    from matplotlib.collections import LineCollection, PolyCollection

    low, high = bounds(metric)
    keys = ["loss", "activation", *(["line"] if "line" in rows else [])]
    lines, bands, losses, activations = [], [], [], []
    for key, line in rows.groupby(keys, sort=True):
        line = line[np.isfinite(line["mean"]) & np.isfinite(line[x])].sort_values(x)
        if logy:
            line = line[line["mean"] > 0]
        if line.empty:
            continue
        xs, mean = line[x].to_numpy(float), line["mean"].to_numpy(float)
        lo = np.clip(line["lo"].fillna(line["mean"]).to_numpy(float), low, high)
        hi = np.clip(line["hi"].fillna(line["mean"]).to_numpy(float), low, high)
        if logy:  # a band reaching 0 or below cannot be drawn on a log axis
            lo = np.where(lo > 0, lo, mean)
        lines.append(np.column_stack([xs, mean]))
        bands.append(np.concatenate([np.column_stack([xs, lo]), np.column_stack([xs, hi])[::-1]]))
        losses.append(key[0])
        activations.append(key[1])
    if not lines:
        return False
    colours = [style.colour(loss) for loss in losses]
    alpha = 0.16 if len(lines) <= 2 else 0.07  # overlapping bands: lighter, so the lines stay readable
    style.tag(ax.add_collection(PolyCollection(bands, facecolors=colours, alpha=alpha, linewidths=0)), losses)
    style.tag(ax.add_collection(LineCollection(lines, colors=colours, linewidths=width,
                                               linestyles=[style.linestyle(a) for a in activations])),
              losses, activations)
    ax.autoscale_view()
    return True


def config_handles(rows):
    """Legend handles: one per loss present (its colour, solid) and one per activation present (its
    dashes, in the reference grey), so the legend names each colour and each dash once."""
    from matplotlib.lines import Line2D

    handles = [style.tag(Line2D([], [], color=style.colour(loss), lw=2.2, label=f"{loss}"), loss)
               for loss in sorted(set(rows["loss"]))]
    activations = sorted(set(rows["activation"]))
    handles += [style.tag(Line2D([], [], color=style.REFERENCE, lw=1.4, ls=style.linestyle(a),
                                 label=f"{a} output"), None, a) for a in activations]
    return handles


def grid(rows, cols, panel=(3.6, 2.4), left=1.1, right=2.8, top=0.8, bottom=0.65, wgap=0.55, hgap=0.6,
         title=None, below=0):
    """A figure of rows x cols axes with margins in inches (room for row labels on the left and the
    legend on the right; or, with below = the legend's number of entries, room for it in columns under
    the panels: a narrow figure that reads at half a page's width); returns (fig, axes[rows, cols],
    legend anchor in figure coordinates)."""
    import math

    import matplotlib.pyplot as plt

    if below:
        right = min(right, 0.3)
    width = left + cols * panel[0] + (cols - 1) * wgap + right
    space = 0.45 + 0.19 * math.ceil(below / legend_columns(width, below)) if below else 0.0  # title + rows
    height = top + rows * panel[1] + (rows - 1) * hgap + bottom + space
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=(bottom + space) / height,
                        top=1 - top / height, wspace=wgap / panel[0], hspace=hgap / panel[1])
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.2 / height, va="top")
    if below:
        return fig, axes, ("below", 0.5, (space + 0.05) / height)
    return fig, axes, (1 - right / width + 0.15 / width, 0.5)


def spare(ax) -> tuple:
    """A legend anchor in the place of `ax`, a panel the figure does not use (hidden here)."""
    ax.set_visible(False)
    box = ax.get_position()
    return ("spare", (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)


def legend_columns(width, entries) -> int:
    """Columns of a legend under the panels: about 1.75 inches each."""
    return max(1, min(entries, int(width / 1.75)))


def legend(fig, handles, anchor, title=None):
    """The figure's legend at `anchor`: from `grid` (right of the panels, or below them in columns), or
    `spare(ax)` (in the place of a panel left empty)."""
    if anchor[0] == "spare":
        drawn = fig.legend(handles=handles, loc="center", bbox_to_anchor=anchor[1:], frameon=False, fontsize=8,
                           title=title, title_fontsize=8, alignment="left")
    elif anchor[0] == "below":
        drawn = fig.legend(handles=handles, loc="upper center", bbox_to_anchor=anchor[1:], frameon=False,
                           fontsize=8, title=title, title_fontsize=8,
                           ncol=legend_columns(fig.get_size_inches()[0], len(handles)), columnspacing=1.2,
                           handlelength=2.6)
    else:
        drawn = fig.legend(handles=handles, loc="center left", bbox_to_anchor=anchor, frameon=False, fontsize=9,
                           title=title, title_fontsize=9, alignment="left")
    for copy, handle in zip(drawn.legend_handles, handles):  # the legend draws copies: they say what they are
        if copy is not None:
            copy.set_gid(handle.get_gid())


def clipped(fig) -> list:
    """The title texts (suptitle, axes titles) whose extent reaches outside the figure."""
    renderer = fig.canvas.get_renderer()
    texts = [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_visible()]
    out = []
    for text in texts:
        if text is None or not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -0.5 or box.x1 > fig.bbox.width + 0.5 or box.y1 > fig.bbox.height + 0.5:
            out.append(text.get_text())
    return out


def room_above(fig, inches) -> None:
    """Make the figure `inches` taller at the top, everything else where it was (measured from the bottom)."""
    width, height = fig.get_size_inches()
    keep = height / (height + inches)
    # the legends' anchors in inches from the bottom left (they were in fractions of the figure)
    anchors = [(leg, [v / fig.dpi for v in leg.get_bbox_to_anchor().bounds]) for leg in fig.legends]
    fig.set_size_inches(width, height + inches)
    for ax in fig.axes:
        box = ax.get_position()
        ax.set_position([box.x0, box.y0 * keep, box.width, box.height * keep])
    for leg, bounds in anchors:
        leg.set_bbox_to_anchor(bounds, transform=fig.dpi_scale_trans)
    if fig._suptitle is not None:
        fig._suptitle.set_y(1 - (1 - fig._suptitle.get_position()[1]) * keep)


def fit_titles(fig) -> None:
    """Wrap (then shrink) every title that would reach outside the figure, so none is clipped; a suptitle
    wrapped onto more lines gets that much more room above the panels, so it does not reach their titles."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    for text in [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_visible()]:
        if text is None or not text.get_text():
            continue
        lines = text.get_text().count("\n")
        for _ in range(4):
            box = text.get_window_extent(renderer)
            room = fig.bbox.width - 8
            if box.x0 >= 0 and box.x1 <= fig.bbox.width:
                break
            chars = max(12, int(max(len(line) for line in text.get_text().split("\n")) * room / box.width))
            text.set_text("\n".join(textwrap.fill(line, chars) for line in text.get_text().split("\n")))
            if text.get_window_extent(renderer).width > room:
                text.set_fontsize(text.get_fontsize() * 0.9)
        if text is fig._suptitle and text.get_text().count("\n") > lines:
            room_above(fig, (text.get_text().count("\n") - lines) * 1.25 * text.get_fontsize() / 72)


def save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fit_titles(fig)
    # layout is set by grid(): no tight bbox pass (slow on big grids); light PNG compression (fast);
    # what the figure drew (each loss's colour, each activation's dashes, colour scales) goes into the
    # PNG's metadata, read back from the artists, for the reader's test
    fig.savefig(out / name, dpi=DPI, pil_kwargs={"compress_level": 3},
                metadata={"lossbench": json.dumps(style.drawn(fig))})
    plt.close(fig)
    return name
