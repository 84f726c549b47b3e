"""Reliability diagrams: test accuracy against confidence per equal-mass bin (bench.calibration.reliability,
stored per replicate in summary.json), one panel per (dataset, configuration), before and after
temperature scaling, with the diagonal and the rows per bin."""
import numpy as np
import pandas as pd

from bench.report.figures import grid, legend, save, style


def pooled(runs) -> pd.DataFrame:
    """Per (dataset, config, loss, activation, when in {before, after}, bin): rows, mean confidence and accuracy, the
    replicates' bins of the same rank pooled (count-weighted); empty without reliability data."""
    if "reliability" not in runs:
        return pd.DataFrame()
    out = []
    for _, r in runs[runs["trained"] & runs["reliability"].map(lambda v: isinstance(v, dict))].iterrows():
        for when, bins in r["reliability"].items():
            count = np.asarray(bins["count"], dtype=float)
            conf = np.asarray([np.nan if v is None else v for v in bins["confidence"]], dtype=float)
            acc = np.asarray([np.nan if v is None else v for v in bins["accuracy"]], dtype=float)
            for b in range(len(count)):
                out.append({"dataset": r["dataset"], "config": r["config"], "loss": r["loss"],
                            "activation": r.get("activation"), "when": when, "bin": b,
                            "count": count[b], "conf_sum": count[b] * np.nan_to_num(conf[b]),
                            "hit_sum": count[b] * np.nan_to_num(acc[b])})
    if not out:
        return pd.DataFrame()
    frame = pd.DataFrame(out).groupby(["dataset", "config", "loss", "activation", "when", "bin"],
                                      sort=True, dropna=False).sum().reset_index()
    frame = frame[frame["count"] > 0]
    return frame.assign(confidence=frame["conf_sum"] / frame["count"], accuracy=frame["hit_sum"] / frame["count"])


def draw(runs, out, name) -> str | None:
    """Rows = datasets, columns = configurations (colour = loss, as elsewhere)."""
    from matplotlib.lines import Line2D

    frame = pooled(runs)
    if frame.empty:
        return None
    datasets = sorted(frame["dataset"].unique())
    configs = sorted(frame["config"].unique())
    fig, axes, anchor = grid(len(datasets), len(configs), panel=(2.3, 2.3), wgap=0.45, hgap=0.75, right=3.6,
                             title="Reliability on the test split: accuracy vs confidence per equal-mass bin")
    for i, dataset in enumerate(datasets):
        for j, config in enumerate(configs):
            ax = axes[i, j]
            cell = frame[(frame["dataset"] == dataset) & (frame["config"] == config)]
            if cell.empty:
                ax.set_visible(False)
                continue
            loss, activation = cell["loss"].iloc[0], cell["activation"].iloc[0]
            colour, dash = style.colour(loss), style.linestyle(activation)  # as in every figure
            ax.plot([0, 1], [0, 1], color=style.REFERENCE, lw=0.8, ls=":")
            before, after = cell[cell["when"] == "before"], cell[cell["when"] == "after"]
            # as trained: filled markers; after temperature scaling: hollow ones (a line style means an activation)
            drawn = [*ax.plot(before["confidence"], before["accuracy"], color=colour, ls=dash, marker="o", ms=3, lw=1.4),
                     *ax.plot(after["confidence"], after["accuracy"], color=colour, ls=dash, marker="o", ms=4,
                              mfc="none", lw=0.9, alpha=0.6)]
            for artist in drawn:
                style.tag(artist, loss, activation)
            heights = 0.15 * before["count"] / before["count"].max()  # the rows per bin, drawn to 15 % of the axis
            for patch in ax.bar(before["confidence"], heights, width=0.012, bottom=0, color=colour, alpha=0.45):
                style.tag(patch, loss)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.02)
            ax.set_title(config.replace("(", "\n("), fontsize=7)  # the dataset labels the row
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"{dataset}\ntest accuracy", fontsize=8)
            ax.set_xlabel("confidence", fontsize=8)
    handles = [Line2D([], [], color=style.colour(loss), marker="o", ms=3, lw=1.4, label=loss)
               for loss in sorted(frame["loss"].unique())]
    handles += [Line2D([], [], color=style.REFERENCE, marker="o", ms=3, lw=1.4, label="as trained"),
                Line2D([], [], color=style.REFERENCE, marker="o", mfc="none", ms=4, lw=0.9, alpha=0.6,
                       label="after temperature scaling"),
                Line2D([], [], color=style.REFERENCE, ls=":", label="calibrated (diagonal)")]
    legend(fig, handles, anchor, title="loss (colour)")
    return save(fig, out, name)
