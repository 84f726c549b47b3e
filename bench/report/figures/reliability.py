"""Reliability diagrams: test accuracy against confidence per equal-mass bin (bench.calibration.reliability,
stored per replicate in summary.json), one panel per (dataset, setting) with its losses overlaid, before and after
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


PER_PANEL = 5  # losses overlaid on one panel at most (each draws two lines: as trained and after scaling)
COLUMNS = 4  # panels per row: the figure reads at the page's width


def panels(frame) -> list:
    """[(dataset, setting, title, losses)]: a panel per dataset and setting, its losses overlaid, at most PER_PANEL
    of them (more: several panels, the losses shared evenly, the setting titled "softmax (1 of 2)")."""
    keys = frame[["dataset", "setting", "loss"]].drop_duplicates()
    out = []
    for (dataset, where), group in keys.groupby(["dataset", "setting"], sort=True):
        losses = sorted(group["loss"])
        parts = -(-len(losses) // PER_PANEL)
        size = -(-len(losses) // parts)
        out += [(dataset, where, where if parts == 1 else f"{where} ({k // size + 1} of {parts})", losses[k:k + size])
                for k in range(0, len(losses), size)]
    return out


def draw(runs, out, name) -> str | None:
    """A row of panels per dataset (wrapped at COLUMNS), one panel per setting with its losses overlaid
    (colour = loss, dashes = activation, as elsewhere); x from the dataset's lowest confidence to 1 (a
    binary problem's confidence is at least 0.5)."""
    from matplotlib.lines import Line2D

    from bench.report.figures import config_handles

    frame = pooled(runs)
    if frame.empty:
        return None
    # a setting is the configuration less its loss: the activation and any knob
    frame = frame.assign(setting=[c.replace(f"+{loss}", "", 1) for c, loss in zip(frame["config"], frame["loss"])])
    cells = panels(frame)
    datasets = sorted({c[0] for c in cells})
    per_dataset = [[c for c in cells if c[0] == d] for d in datasets]
    cols = min(COLUMNS, max(len(p) for p in per_dataset))
    place = [(d, k) for d, p in enumerate(per_dataset) for k in range(0, len(p), cols)]  # (dataset, first panel) per row
    fig, axes, anchor = grid(len(place), cols, panel=(2.6, 2.3), wgap=0.45, hgap=0.75, right=3.6,
                             title="Reliability on the test split: accuracy vs confidence per equal-mass bin")
    for row, (d, first) in enumerate(place):
        lowest = frame.loc[frame["dataset"] == datasets[d], "confidence"].min()
        lo = max(0.0, np.floor((lowest - 0.02) * 20) / 20)  # to the 0.05 below, with a little room
        for j in range(cols):
            ax = axes[row, j]
            if first + j >= len(per_dataset[d]):
                ax.set_visible(False)
                continue
            dataset, where, title, losses = per_dataset[d][first + j]
            ax.plot([lo, 1], [lo, 1], color=style.REFERENCE, lw=0.8, ls=":")
            width = 0.012 * (1 - lo)
            for k, loss in enumerate(losses):
                cell = frame[(frame["dataset"] == dataset) & (frame["setting"] == where) & (frame["loss"] == loss)]
                activation = cell["activation"].iloc[0]
                colour, dash = style.colour(loss), style.linestyle(activation)  # as in every figure
                before, after = cell[cell["when"] == "before"], cell[cell["when"] == "after"]
                # as trained: filled markers; after temperature scaling: hollow ones (a line style means an activation)
                drawn = [*ax.plot(before["confidence"], before["accuracy"], color=colour, ls=dash, marker="o", ms=3,
                                  lw=1.4),
                         *ax.plot(after["confidence"], after["accuracy"], color=colour, ls=dash, marker="o", ms=4,
                                  mfc="none", lw=0.9, alpha=0.6)]
                for artist in drawn:
                    style.tag(artist, loss, activation)
                # the rows per bin, drawn to 15 % of the axis, each loss's bars beside the others'
                heights = 0.15 * before["count"] / before["count"].max()
                shift = (k - (len(losses) - 1) / 2) * width
                for patch in ax.bar(before["confidence"] + shift, heights, width=width, bottom=0, color=colour,
                                    alpha=0.45):
                    style.tag(patch, loss)
            ax.set_xlim(lo, 1 + 0.02 * (1 - lo))
            ax.set_ylim(0, 1.02)
            ax.set_title(title, fontsize=8)  # the dataset labels the row
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"{dataset}\ntest accuracy", fontsize=8)
            ax.set_xlabel("confidence", fontsize=8)
    handles = config_handles(frame)
    handles += [Line2D([], [], color=style.REFERENCE, marker="o", ms=3, lw=1.4, label="as trained"),
                Line2D([], [], color=style.REFERENCE, marker="o", mfc="none", ms=4, lw=0.9, alpha=0.6,
                       label="after temperature scaling"),
                Line2D([], [], color=style.REFERENCE, ls=":", label="calibrated (diagonal)")]
    legend(fig, handles, anchor, title="loss (colour)")
    return save(fig, out, name)
