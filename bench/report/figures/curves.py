"""Learning curves and output-gradient curves: mean over replicates with its 95 % band (the t interval
of `tables.curve_frame`, clipped to the metric's bounds). One panel per dataset and setting, every
configuration of it overlaid (colour = loss, dashes = activation: the comparison on one set of axes);
rows = datasets, columns = settings, the y axis shared within a row (one dataset's settings); without
settings, the datasets side by side, three to a row, each on its own y axis."""
import math

from bench.report.figures import axis_label, config_handles, grid, legend, lines_with_bands, save, style

MAX_COLUMNS = 4  # settings side by side; more wrap onto further rows of the same dataset


def draw(agg, out, name, *, title, ylabel=None, logy=False, targets=None) -> str | None:
    """agg: `tables.curve_frame` rows (x = epoch). ylabel: the y quantity (default: each row's val
    metric); targets: {dataset: value}, drawn as a thin reference line.

    One LineCollection and one PolyCollection per panel: thousands of curves stay fast to draw.
    Not seaborn's relplot: a Line2D per curve and tight-layout passes over the whole grid put the
    1,000-run report (`--benchmark`) past its 60 s budget."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    if agg.empty or agg["mean"].notna().sum() == 0:
        return None
    agg = agg[agg["mean"].notna()]
    datasets = sorted(agg["dataset"].unique())
    settings = {d: sorted(agg.loc[agg["dataset"] == d, "extra"].unique()) for d in datasets}
    layout = []  # (row, col, dataset, setting)
    shared = max(len(s) for s in settings.values()) > 1  # a row is one dataset's settings: one y axis
    if not shared:  # no knob: the datasets side by side, each on its own y axis
        cols = min(3, len(datasets))
        layout = [(k // cols, k % cols, d, settings[d][0]) for k, d in enumerate(datasets)]
        row = math.ceil(len(datasets) / cols)
    else:
        cols = min(MAX_COLUMNS, max(len(s) for s in settings.values()))
        row = 0
        for d in datasets:
            for k, setting in enumerate(settings[d]):
                layout.append((row + k // cols, k % cols, d, setting))
            row += math.ceil(len(settings[d]) / cols)
    # panels on their own y axes: room between them for each one's tick labels and y label
    fig, axes, anchor = grid(row, cols, panel=(3.9, 2.5), hgap=0.85, wgap=0.55 if shared else 1.15, title=title)
    for ax in axes.flat:
        ax.set_visible(False)
    first_of_row = {}  # (row, dataset) -> the axes whose y axis the others of that dataset share
    for r, c, dataset, setting in layout:
        ax = axes[r, c]
        ax.set_visible(True)
        cell = agg[(agg["dataset"] == dataset) & (agg["extra"] == setting)]
        lines_with_bands(ax, cell, "epoch", metric=None if ylabel else cell["metric"].iloc[0], logy=logy)
        ax.set_title(f"{dataset} · {setting}" if setting else dataset, fontsize=9)
        if (r, dataset) not in first_of_row:
            first_of_row[(r, dataset)] = ax
            ax.set_ylabel(ylabel or axis_label(cell["metric"].iloc[0]), fontsize=9)
        else:  # one dataset's settings side by side: one y axis, labelled once
            ax.sharey(first_of_row[(r, dataset)])
            ax.tick_params(labelleft=False)
        if logy:  # ticks at 1, 2, 5 x 10^k (one per decade over more than two), as plain numbers (0.02, not 2x10^-2)
            ax.set_yscale("log")
            positive = cell.loc[cell["mean"] > 0, "mean"]
            wide = len(positive) and positive.max() / positive.min() > 100
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=6))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
            ax.yaxis.set_minor_locator(NullLocator())
        else:
            ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))  # few ticks: tick objects dominate big grids
        if targets is not None and dataset in targets:
            ax.axhline(targets[dataset], color=style.REFERENCE, alpha=0.7, lw=0.8)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch", fontsize=9)
    for r, ax in first_of_row.items():  # every panel of the row drawn: one y range that holds them all
        ax.autoscale(axis="y")
    handles = config_handles(agg)
    if targets is not None:
        handles.append(Line2D([], [], color=style.REFERENCE, alpha=0.7, lw=0.8, label="convergence target"))
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95 % CI over replicates"))
    legend(fig, handles, anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)
