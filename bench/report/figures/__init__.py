"""The report's figures, one module per kind: each `draw(...)` writes one PNG into `out` and returns
its file name (None: nothing to draw). Matplotlib and seaborn are imported when drawing.

    curves     metric or output gradient vs epoch or seconds: rows = datasets, columns = activations
    heatmaps   final test metric over loss x activation (imshow: see there why)
    speed      epochs to target per seed (sns.boxplot + sns.stripplot)
    profiles   performance profiles across datasets (sns.ecdfplot: ρ(τ) is the ECDF of the ratios)
    pitfall    categorical vs element-wise accuracy of sigmoid+BCE on multiclass data (sns.lineplot,
               errorbar = the t interval over seeds)
    anatomy    loss and dloss/dz against the logit (plain lines)
    reliability  test accuracy against confidence per equal-mass bin, before and after temperature scaling

Panels sit on `grid`, whose margins are in inches: the title and the legend always fit, without a
tight-layout pass (slow on big grids).
"""
from pathlib import Path

DPI = 110
UNITS = {"accuracy": "fraction correct", "binary_accuracy": "fraction of units correct",
         "rmse": "target units", "mae": "target units"}
LINESTYLES = ["-", "--", ":", "-."]


def axis_label(metric: str, prefix: str = "val") -> str:
    unit = UNITS.get(metric)
    return f"{prefix} {metric}" + (f" ({unit})" if unit else "")


def palette(names) -> dict:
    import seaborn as sns

    names = sorted(set(names))
    return dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))


def grid(rows, cols, panel=(3.6, 2.4), left=1.1, right=2.8, top=0.8, bottom=0.65, wgap=0.55, hgap=0.6,
         title=None):
    """A figure of rows x cols axes with margins in inches (room for row labels on the left and the
    legend on the right); returns (fig, axes[rows, cols], legend anchor in figure coordinates)."""
    import matplotlib.pyplot as plt

    width = left + cols * panel[0] + (cols - 1) * wgap + right
    height = top + rows * panel[1] + (rows - 1) * hgap + bottom
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(width, height))
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wgap / panel[0], hspace=hgap / panel[1])
    if title:
        fig.suptitle(title, fontsize=12, y=1 - 0.25 / height, va="top")
    return fig, axes, (1 - right / width + 0.15 / width, 0.5)


def legend(fig, handles, anchor, title=None):
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=anchor, frameon=False, fontsize=9,
               title=title, title_fontsize=9, alignment="left")


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


def fit_titles(fig) -> None:
    """Wrap (then shrink) every title that would reach outside the figure, so none is clipped."""
    import textwrap

    renderer = fig.canvas.get_renderer()
    for text in [fig._suptitle] + [ax.title for ax in fig.axes if ax.get_visible()]:
        if text is None or not text.get_text():
            continue
        for _ in range(4):
            box = text.get_window_extent(renderer)
            room = fig.bbox.width - 8
            if box.x0 >= 0 and box.x1 <= fig.bbox.width:
                break
            chars = max(12, int(max(len(line) for line in text.get_text().split("\n")) * room / box.width))
            text.set_text("\n".join(textwrap.fill(line, chars) for line in text.get_text().split("\n")))
            if text.get_window_extent(renderer).width > room:
                text.set_fontsize(text.get_fontsize() * 0.9)


def save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fit_titles(fig)
    # layout is set by grid(): no tight bbox pass (slow on big grids); light PNG compression (fast)
    fig.savefig(out / name, dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return name
