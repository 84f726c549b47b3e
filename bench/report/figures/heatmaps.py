"""Final test metric over loss x activation, one panel per dataset and setting, every panel of a metric
on one colour scale centred on the canonical pairing of the task: the colour is how much better (blue)
or worse (red) a cell is than the canonical cell of its panel (the scale ends at the 90th percentile of
|differences|, arrows on the colour bar where cells lie beyond; a difference below one test example per
replicate is a tie and drawn white), the text its mean over replicates, a * where the paired difference
holds after the family's adjustment (`tables.significance`)."""
import math

import numpy as np

from bench.report.figures import bounds, grid, save
from bench.report.tables import fmt
from bench.stats import example_size


CAP_PERCENTILE = 90  # of the |differences| of a metric over its panels: where its colour scale ends


def change(value, reference, metric, higher):
    """How much better than the reference: the difference on a metric bounded by 1 (accuracy-like),
    else the relative change in % (RMSE on two datasets' units), signed so that > 0 is better."""
    relative = not np.isfinite(bounds(metric)[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = 100 * (value / reference - 1) if relative else value - reference
    return delta if higher else -delta


def beyond_ties(delta, panel, metric):
    """`delta` with the ties zeroed: a difference below one test example per replicate (the tables'
    tie rule) is no difference, so it gets no colour however the scale is set."""
    n_test = panel["n_test"].median() if "n_test" in panel else None
    resolution = example_size(metric, n_test)
    return np.where(np.abs(delta) < resolution, 0.0, delta) if np.isfinite(resolution) else delta


def draw(table, sig, out, name) -> str | None:
    """table: `tables.ranking` rows; sig: `tables.significance` rows (for the * marks). Applies where
    the runs vary both the loss and the activation and the canonical pairing was trained (the centre)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    from bench.losses import CANONICAL

    t = table[table["n"] > 0]
    cells = t.drop_duplicates(["loss", "activation"])
    if len(cells) <= max(t["loss"].nunique(), t["activation"].nunique()):
        return None  # not a grid (one loss per activation, as binary_vs_categorical): a table says it
    panels = []
    for (dataset, setting), d in t.groupby(["dataset", "setting"], sort=True):
        pair = CANONICAL.get(d["task"].iloc[0])
        ref = d[(d["activation"] == pair[0]) & (d["loss"] == pair[1])] if pair else d.iloc[:0]
        if len(ref):
            panels.append((dataset, setting, d, ref.iloc[0]))
    if not panels:
        return None
    marks = {(r["dataset"], r["config"]) for _, r in sig.iterrows() if r["verdict"] in ("better", "worse")} \
        if len(sig) else set()
    axes_of = {d: (sorted(g["loss"].unique()), sorted(g["activation"].unique())) for d, g in table.groupby("dataset")}
    metrics = sorted({p[2]["metric"].iloc[0] for p in panels})
    higher_of = {p[3]["metric"]: bool(p[3]["higher_is_better"]) for p in panels}
    # one scale per metric, shared by its panels, capped at a high percentile of the |differences| so one
    # collapsed cell does not wash every other cell out; the colour bar's arrows say a cell lies beyond
    changes = {}
    for dataset, setting, d, ref in panels:
        higher = bool(ref["higher_is_better"])
        delta = beyond_ties(change(d["mean"].to_numpy(float), ref["mean"], ref["metric"], higher), d, ref["metric"])
        changes.setdefault(ref["metric"], []).extend(delta[np.isfinite(delta)])
    # the scale reads the differences that are not ties (all ties: every cell white)
    scale = {m: float(np.percentile(np.abs(nonzero), CAP_PERCENTILE)) if len(nonzero := [x for x in v if x]) else 0.0
             for m, v in changes.items()}
    extend = {m: {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (min(v, default=0) < -scale[m], max(v, default=0) > scale[m]), "neither") for m, v in changes.items()}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    n_loss = max(len(axes_of[p[0]][0]) for p in panels)
    n_act = max(len(axes_of[p[0]][1]) for p in panels)
    fig, axes, _ = grid(rows, cols, panel=(max(1.8, 0.95 * n_act + 0.4), 0.36 * n_loss + 0.3), left=1.0,
                        right=0.9 + 1.1 * len(metrics), wgap=1.3, hgap=1.1, top=1.1,
                        title="Final test metric against the canonical pairing (outlined)")
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("0.88")  # n/a cells: invalid, failed or not run
    norms = {m: Normalize(-(scale[m] or 1e-12), scale[m] or 1e-12) for m in metrics}
    images = {}
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (dataset, setting, d, ref) in zip(axes.flat, panels):
        metric, higher = ref["metric"], bool(ref["higher_is_better"])
        losses, activations = axes_of[dataset]
        cells = d.drop_duplicates(["loss", "activation"]).pivot(index="loss", columns="activation", values="mean")
        values = cells.reindex(index=losses, columns=activations).to_numpy(dtype=float)  # [loss, activation]
        delta = beyond_ties(change(values, ref["mean"], metric, higher), d, metric)
        image = ax.imshow(np.ma.masked_invalid(delta), cmap=cmap, norm=norms[metric], aspect="auto")
        image.set_gid(f"metric:{metric}")
        images.setdefault(metric, image)
        config = {(a, loss): c for a, loss, c in zip(d["activation"], d["loss"], d["config"])}
        for (i, j), v in np.ndenumerate(values):
            strong = np.isfinite(delta[i, j]) and abs(delta[i, j]) > 0.6 * scale[metric]
            star = "*" if (dataset, config.get((activations[j], losses[i]))) in marks else ""
            ax.text(j, i, "n/a" if np.isnan(v) else fmt(v, 3, pad=True) + star, ha="center", va="center",
                    fontsize=8, color="white" if strong else "0.1")
        r, c = losses.index(ref["loss"]), activations.index(ref["activation"])
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="black", lw=2,
                                   clip_on=False))  # whole at the panel's edge
        ax.set_xticks(range(len(activations)), activations)
        ax.set_yticks(range(len(losses)), losses)
        ax.grid(False)
        ax.set_xlabel("output activation")
        ax.set_ylabel("loss")
        ax.set_title(f"{dataset} · test {metric}" + (f"\n{setting}" if setting else ""), fontsize=9)
    # one colour bar per metric, at the right: every panel of that metric reads it
    width, height = fig.get_size_inches()
    for k, metric in enumerate(metrics):
        cax = fig.add_axes([1 - (0.9 + 1.1 * (len(metrics) - k)) / width + 0.35 / width, 0.2, 0.18 / width, 0.6])
        relative = not np.isfinite(bounds(metric)[1])
        bar = fig.colorbar(images[metric], cax=cax, extend=extend[metric])
        what = (f"test {metric}: % better than the canonical" if relative else
                f"test {metric} − canonical" if higher_of[metric] else f"canonical − test {metric}")
        bar.set_label(what + "\n(blue: better, red: worse)", fontsize=8)
    return save(fig, out, name)
