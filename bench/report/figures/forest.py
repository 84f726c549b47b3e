"""A forest plot (as in meta-analyses): per dataset and setting, one row per configuration, its paired
comparison with the canonical pairing on the test metric with its interval, and a vertical line at no
difference: a difference (line at 0) or, where the significance table compares on a ratio (`scale`),
a ratio on a log axis (line at 1). A filled point holds after the family's adjustment (`verdict`
better or worse); a hollow one does not. Colour = loss, the interval's dashes = activation."""
import math

import numpy as np

from bench.report.figures import config_handles, grid, legend, save, style

MOST = 20  # rows per panel: past it, the best-ranked configurations (the panel title says so)


def draw(sig, table, out, name) -> str | None:
    """sig: `tables.significance` rows (config, reference, the estimate, lo, hi, verdict per dataset and
    setting); table: `tables.ranking` rows, for each configuration's loss, activation and rank."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    column = "estimate" if "estimate" in sig else "diff"  # the table's name for the paired estimate
    s = sig[np.isfinite(sig[column].astype(float))] if len(sig) else sig
    s = s.assign(est=s[column].astype(float)) if len(s) else s
    if s.empty:
        return None
    facts = table.drop_duplicates(["dataset", "config"]).set_index(["dataset", "config"])[
        ["activation", "loss", "rank"]]
    s = s.join(facts, on=["dataset", "config"])
    s = s.assign(row=[c.removesuffix(f" [{w}]") if w else c for c, w in zip(s["config"], s["setting"])])
    if s.groupby(["dataset", "setting"]).size().max() == 1 and s["metric"].nunique() == 1:
        # one comparison per dataset: one panel, a row per dataset and setting (a forest of the question)
        s = s.assign(row=[" · ".join(x for x in (d, w) if x) + f": {c} − {r.split(' [')[0]}"
                          for d, w, c, r in zip(s["dataset"], s["setting"], s["row"], s["reference"])],
                     dataset="", setting="")
    panels = sorted(set(zip(s["dataset"], s["setting"])))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    tallest = min(MOST, s.groupby(["dataset", "setting"]).size().max())
    labels = max(len(str(r)) for r in s["row"])  # the row labels' room, at 8 pt: ~0.065 in a character
    fig, axes, anchor = grid(rows, cols, panel=(3.0, 0.28 * tallest + 0.5), left=0.4 + 0.065 * labels,
                             wgap=0.5 + 0.065 * labels, hgap=1.1, top=0.9,
                             bottom=0.8, title="Paired comparison with the canonical pairing (interval)",
                             below=s["loss"].nunique() + s["activation"].nunique() + 2)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    first_of = {}  # one x axis per dataset: its settings compared on one scale
    for ax, (dataset, setting) in zip(axes.flat, panels):
        if dataset in first_of:
            ax.sharex(first_of[dataset])
        first_of.setdefault(dataset, ax)
        p = s[(s["dataset"] == dataset) & (s["setting"] == setting)]
        shown = p.sort_values("rank").head(MOST).sort_values("est")
        ratio = "scale" in p and (p["scale"] == "ratio").all()
        y = np.arange(len(shown))
        for i, (_, r) in enumerate(shown.iterrows()):
            holds = r["verdict"] in ("better", "worse")
            bar = ax.errorbar([r["est"]], [i], xerr=[[r["est"] - r["lo"]], [r["hi"] - r["est"]]]
                              if np.isfinite(r["lo"]) else None, fmt="o", ms=6, color=style.colour(r["loss"]),
                              mfc=style.colour(r["loss"]) if holds else "white", capsize=3, elinewidth=1.3)
            style.tag(bar.lines[0], r["loss"])
            for part in bar.lines[2]:
                part.set_linestyle(style.linestyle(r["activation"]))
                style.tag(part, r["loss"], r["activation"])
            for part in bar.lines[1]:
                style.tag(part, r["loss"])
        ax.axvline(1 if ratio else 0, color=style.REFERENCE, lw=0.9)
        if ratio:  # plain "1.1×" labels (the default "1.1×10⁰" ones collide), the minor ones left unlabelled
            ax.set_xscale("log")
            shown_of_dataset = s.loc[s["dataset"] == dataset, ["lo", "est", "hi"]].to_numpy(float)
            shown_of_dataset = shown_of_dataset[np.isfinite(shown_of_dataset) & (shown_of_dataset > 0)]
            narrow = len(shown_of_dataset) and shown_of_dataset.max() / shown_of_dataset.min() < 10
            # within a decade a log locator has no major tick but 1: a few evenly spaced ones instead
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4) if narrow else LogLocator(numticks=5))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}×"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:  # a few ticks, so labels such as −0.075 do not run into each other
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_yticks(y, shown["row"], fontsize=8)
        ax.set_ylim(-0.7, len(shown) - 0.3)
        first = p.iloc[0]
        better = "higher" if first["higher_is_better"] else "lower"
        reference = (first["reference"].split(" [")[0] if p["reference"].nunique() == 1
                     else "the row's canonical pairing")
        ax.set_xlabel(f"test {first['metric']}: {'ratio to' if ratio else 'difference from'} {reference}\n"
                      f"({better} is better{', log scale' if ratio else ''})", fontsize=8)
        more = f"; the {MOST} best-ranked of {len(p)}" if len(p) > MOST else ""
        ax.set_title(" · ".join(x for x in (dataset, setting) if x) + more, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    handles = config_handles(s)
    handles += [Line2D([], [], color=style.REFERENCE, marker="o", ls="", label="holds after adjustment"),
                Line2D([], [], color=style.REFERENCE, marker="o", mfc="white", ls="", label="does not hold")]
    legend(fig, handles, anchor, title="loss (colour), output (dashes)")
    return save(fig, out, name)
