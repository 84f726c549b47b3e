"""Learning curves and output-gradient curves: mean over seeds with its 95 % band (the t interval
of `tables.curve_frame`, clipped to the metric's bounds), rows = datasets, columns = activations,
colour = loss."""
import numpy as np

from bench.report.figures import LINESTYLES, axis_label, grid, legend, palette, save


def draw(agg, out, name, *, x, title, xlabel, ylabel=None, logy=False, targets=None) -> str | None:
    """Rows = datasets, columns = activations, colour = loss; other varying settings (`extra`) get
    their own columns when that makes at most 6, else a line style each. Mean line with a shaded
    95 % band.

    One LineCollection and one PolyCollection per panel: thousands of curves stay fast to draw.
    Not seaborn's relplot: a Line2D per curve and tight-layout passes over the whole grid put the
    1,000-run report (`--benchmark`) past its 60 s budget.

    ylabel: the y quantity (default: each row's val metric); targets: {dataset: value}."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    if agg.empty or agg["mean"].notna().sum() == 0:
        return None
    datasets = sorted(agg["dataset"].unique())
    colours = palette(agg["loss"])
    extras = sorted(agg["extra"].unique())
    split = 1 < len(extras) and agg["activation"].nunique() * len(extras) <= 6
    panel = agg["activation"] + (" · " + agg["extra"] if split else "")
    columns = sorted(panel.unique())
    styles = {e: "-" if split else LINESTYLES[i % len(LINESTYLES)] for i, e in enumerate(extras)}
    fig, axes, anchor = grid(len(datasets), len(columns), hgap=0.85, title=title)  # room: xlabel + title
    cells = {k: g for k, g in agg.groupby([agg["dataset"], panel], sort=False)}
    for i, dataset in enumerate(datasets):
        labelled = False
        for j, column in enumerate(columns):
            ax = axes[i, j]
            cell = cells.get((dataset, column))
            if cell is None or cell["mean"].notna().sum() == 0:
                ax.set_visible(False)  # this activation was not trained on this dataset
                continue
            ax.set_title(f"{dataset} · activation = {column}", fontsize=9)
            if not labelled:
                ax.set_ylabel(f"{dataset}\n{ylabel or axis_label(cell['metric'].iloc[0])}", fontsize=9)
                labelled = True
            lines, bands, line_colours, line_styles = [], [], [], []
            for (loss, extra), line in cell.groupby(["loss", "extra"], sort=True):
                line = line[np.isfinite(line["mean"]) & np.isfinite(line[x])]
                if logy:
                    line = line[line["mean"] > 0]
                if line.empty:
                    continue
                xs, mean = line[x].to_numpy(), line["mean"].to_numpy()
                lo, hi = line["lo"].fillna(line["mean"]).to_numpy(), line["hi"].fillna(line["mean"]).to_numpy()
                if logy:  # a band reaching 0 or below cannot be drawn on a log axis: clip it
                    lo = np.where(lo > 0, lo, mean)
                lines.append(np.column_stack([xs, mean]))
                bands.append(np.concatenate([np.column_stack([xs, lo]), np.column_stack([xs, hi])[::-1]]))
                line_colours.append(colours[loss])
                line_styles.append(styles[extra])
            ax.add_collection(PolyCollection(bands, facecolors=line_colours, alpha=0.18, linewidths=0))
            ax.add_collection(LineCollection(lines, colors=line_colours, linestyles=line_styles, linewidths=1.4))
            if logy:  # ticks at 1, 2, 5 x 10^k, written as plain numbers (0.02, not 2x10^-2)
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0), numticks=6))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
                ax.yaxis.set_minor_locator(NullLocator())
            else:
                ax.yaxis.set_major_locator(MaxNLocator(5))
            # few ticks (tick objects dominate the draw time of big grids); whole epochs
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=x == "epoch"))
            ax.autoscale_view()
            if targets is not None and dataset in targets:
                ax.axhline(targets[dataset], color="black", alpha=0.6, lw=0.8)
            ax.grid(alpha=0.3)
            ax.set_xlabel(xlabel, fontsize=9)
    handles = [Line2D([], [], color=c, lw=2, label=loss) for loss, c in colours.items()]
    if len(extras) > 1 and not split:
        handles += [Line2D([], [], color="0.2", ls=styles[e], label=e) for e in extras]
    if targets is not None:
        handles.append(Line2D([], [], color="black", alpha=0.6, lw=0.8, label="convergence target"))
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95 % CI over seeds"))
    legend(fig, handles, anchor, title="loss (colour)")
    return save(fig, out, name)

