"""`python -m bench.report [results_dir] [--out DIR]`: the PNG + HTML report of a results tree.

Reads every complete run with `bench.store.load`, computes the tables with pandas (the numbers
behind every sentence), draws seaborn/matplotlib PNGs and renders one static page from
`templates/report.html.j2` (no network, no scripts: it opens from file://). Per sweep group:

    findings       generated sentences with numbers and 95 % intervals
    ranking        final test metric per dataset: mean and t interval over seeds, speed, status
    curves         val metric vs epoch and vs training seconds, mean and 95 % band over seeds
    heatmaps       final test metric over loss x activation
    speed          epochs to target (box + strip), performance profiles across datasets
    saturation     output-gradient magnitude vs epoch
    anatomy        loss and dloss/dz against the logit (bench.losses.anatomy), targets 0 and 1
    pitfall        categorical vs element-wise accuracy for sigmoid+BCE on multiclass data
    significance   each configuration vs the dataset's canonical pairing, paired by seed, Holm

Seeds are the replication unit: every interval is over seeds. Tables are also written as CSV
(ranking.csv, significance.csv) and the findings as findings.txt beside index.html.

`python -m bench.report --benchmark [--runs 1000]` times the build on generated results.
"""
import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import machine, stats
from bench.errors import UserError
from bench.losses import CANONICAL

# the dataset's reference configuration: significance compares every other one with it
# config keys besides (activation, loss) that may vary in a group; shown in the label when they do
EXTRA_KEYS = ("model", "optimizer", "lr")
UNITS = {"accuracy": "fraction correct", "binary_accuracy": "fraction of units correct",
         "rmse": "target units", "mae": "target units"}
DPI = 110
ALPHA = 0.05  # significance level after Holm correction
TOP = 8  # performance profiles: configurations drawn in colour (the rest in grey)


# ---------------------------------------------------------------------------------------------
# tables: plain pandas over the store.load frames

def fmt(x, digits=4, pad=False) -> str:
    """A number for a sentence or a table: `digits` significant digits (pad: keep trailing zeros, so
    0.9600 stands next to 0.9517), n/a for NaN, ∞ for inf."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "∞"
    text = f"{x:#.{digits}g}" if pad else f"{x:.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def fmt_ci(lo, hi, digits=4, pad=True) -> str:
    """An interval as 'lo–hi' (n/a when undefined, e.g. from one seed)."""
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    dash = " to " if lo < 0 or hi < 0 else "–"  # '-0.04 to -0.002', not '-0.04–-0.002'
    return f"{fmt(lo, digits, pad)}{dash}{fmt(hi, digits, pad)}"


# config keys never shown in a label (paths, switches that do not change results)
NOT_LABEL = ("results_dir", "group", "force", "progress", "hydra", "seeds", "trainer.threads")


def _flat(tree, prefix="") -> dict:
    out = {}
    for key, value in (tree or {}).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(results_dir, runs) -> dict:
    """{run_id: "key=value ..."} for runs whose label clashes with another run of the same group and
    dataset: the config.yaml keys (flattened) that differ among them, e.g. dataset.contamination."""
    import yaml

    from bench.store import run_dir

    out = {}
    for _, same in runs.drop_duplicates("run_id").groupby(["group", "dataset", "config"]):
        if len(same) < 2:
            continue
        configs = {}
        for group, rid in zip(same["group"], same["run_id"]):
            path = run_dir(results_dir, group, rid) / "config.yaml"
            configs[rid] = _flat(yaml.safe_load(path.read_text())) if path.is_file() else {}
        keys = sorted({k for c in configs.values() for k in c})
        differ = [k for k in keys if not k.startswith(NOT_LABEL)
                  and len({repr(c.get(k)) for c in configs.values()}) > 1]
        for rid, c in configs.items():
            out[rid] = " ".join(f"{k}={c.get(k)}" for k in differ) or f"run {rid[:6]}"
    return out


def prepare(runs: pd.DataFrame, results_dir=None) -> pd.DataFrame:
    """Runs with numeric columns coerced, a `config` label and `value` = the main test metric.

    The label is activation+loss, with [key=value] for the settings that vary within the group
    (model, optimizer, lr; for runs that would still share a label, the config.yaml keys that
    differ, e.g. dataset.contamination)."""
    runs = runs.copy()
    numeric = ["seed", "lr", "target", "best_val", "epochs_to_target", "steps_to_target",
               "seconds_to_target", "auc", "train_seconds", "diverged_step"]
    numeric += [c for c in runs.columns if c.startswith("test_")]
    for column in numeric:
        if column in runs:
            runs[column] = pd.to_numeric(runs[column], errors="coerce")
    # one direction per metric, also for invalid runs that did not record it
    direction = runs.dropna(subset=["higher_is_better"]).groupby("metric")["higher_is_better"].first()
    runs["higher_is_better"] = runs["metric"].map(direction).astype("boolean")
    runs["extra"] = ""
    for group, rows in runs.groupby("group").groups.items():
        varying = [k for k in EXTRA_KEYS if k in runs and runs.loc[rows, k].nunique(dropna=True) > 1]
        if varying:
            runs.loc[rows, "extra"] = runs.loc[rows, varying].astype(str).apply(
                lambda r: " ".join(f"{k}={v}" for k, v in zip(varying, r)), axis=1)
    runs["config"] = runs["activation"].astype(str) + "+" + runs["loss"].astype(str)
    differences = config_differences(results_dir, runs.assign(config=runs["config"] + runs["extra"])) \
        if results_dir is not None else {}
    more = runs["run_id"].map(lambda rid: differences.get(rid, ""))
    runs["extra"] = (runs["extra"] + " " + more).str.strip()
    runs.loc[runs["extra"] != "", "config"] += " [" + runs["extra"] + "]"
    value = pd.Series(np.nan, index=runs.index)
    for metric, rows in runs.groupby("metric").groups.items():
        if f"test_{metric}" in runs:
            value[rows] = runs.loc[rows, f"test_{metric}"]
    runs["value"] = value
    runs["trained"] = runs["status"].isin(["done", "diverged"])
    return runs


def _times(rows, column):
    """Per-seed times to target of trained seeds; never reached = inf."""
    return rows.loc[rows["trained"], column].fillna(np.inf).to_numpy(dtype=float)


def ranking(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, dataset, config): test metric mean and 95 % CI, speed, status counts.

    mean/lo/hi/n: over the seeds with a finite test value (t interval); epochs/seconds_median: median
    over trained seeds with never reached = inf; reached: seeds that reached the target. Rank 1 is
    the best mean (direction from `higher_is_better`); invalid and failed configurations have no
    rank and keep their reason.
    """
    if runs.empty:
        return pd.DataFrame()
    keys = ["group", "dataset", "config"]
    facts = ["task", "activation", "loss", "extra", "metric", "higher_is_better", "target", "status", "reason"]
    table = runs.groupby(keys, sort=True)[facts].first()
    trained = runs[runs["trained"]].assign(
        value=lambda r: r["value"].where(np.isfinite(r["value"])),
        epochs=lambda r: r["epochs_to_target"].fillna(np.inf),
        seconds=lambda r: r["seconds_to_target"].fillna(np.inf),
        done=lambda r: r["seed_status"] == "done", diverged=lambda r: r["seed_status"] == "diverged",
        reached=lambda r: r["epochs_to_target"].notna())
    by = trained.groupby(keys, sort=True)
    table = table.join(stats.band(trained, keys, "value").set_index(keys)[["n", "mean", "lo", "hi"]])
    table = within_bounds(table)
    table = table.join(pd.DataFrame({
        "seeds": by.size(), "done": by["done"].sum(), "diverged": by["diverged"].sum(),
        "epochs_median": by["epochs"].median(), "seconds_median": by["seconds"].median(),
        "reached": by["reached"].sum(), "best_val": by["best_val"].mean(), "auc": by["auc"].mean()}))
    counts = ["n", "seeds", "done", "diverged", "reached"]
    table[counts] = table[counts].fillna(0).astype(int)
    table["reason"] = table["reason"].where(table["reason"].apply(lambda v: isinstance(v, str)), "")
    table = table.reset_index()
    higher = table["higher_is_better"].fillna(True).astype(bool)
    table["score"] = np.where(higher, -table["mean"], table["mean"])  # smaller is better
    table["rank"] = table.groupby(["group", "dataset"])["score"].rank(method="min")
    table = table.sort_values(["group", "dataset", "score", "config"], na_position="last")
    return table.drop(columns="score").reset_index(drop=True)


def significance(runs: pd.DataFrame) -> pd.DataFrame:
    """Every trained configuration vs the canonical pairing of its dataset's task, paired by seed.

    diff = config - canonical on the test metric, over seeds where both have a value; t interval,
    paired t-test, Holm correction within each (group, dataset). `verdict`: better | worse | no
    significant difference | n/a (with the reason in `note`).
    """
    out = []
    trained = runs[runs["trained"]]
    for (group, dataset), r in trained.groupby(["group", "dataset"], sort=True):
        task = r["task"].iloc[0]
        pair = CANONICAL.get(task)
        if pair is None:
            continue
        is_ref = (r["activation"] == pair[0]) & (r["loss"] == pair[1])
        if not is_ref.any():  # nothing to compare with: the report says so per dataset
            continue
        wide = r.dropna(subset=["seed"]).pivot(index="seed", columns="config", values="value")  # [seed, config]
        facts = r.drop_duplicates("config").set_index("config")
        refs = dict(zip(r.loc[is_ref, "extra"], r.loc[is_ref, "config"]))
        family = []
        for config in sorted(set(r.loc[~is_ref, "config"])):
            ref = refs.get(facts.at[config, "extra"])
            row = {"group": group, "dataset": dataset, "config": config, "metric": facts.at[config, "metric"],
                   "higher_is_better": bool(facts.at[config, "higher_is_better"]),
                   "reference": ref or f"{pair[0]}+{pair[1]}"}
            if ref is None:
                row.update(diff=np.nan, lo=np.nan, hi=np.nan, n=0, p=np.nan,
                           note="no canonical run with the same settings in this group")
            else:
                row.update(stats.paired_difference(wide[config].to_numpy(), wide[ref].to_numpy()))
                row["note"] = "" if row["n"] >= 2 else "fewer than 2 seeds with a test value in both"
            family.append(row)
        if family:
            adjusted = stats.holm([f["p"] for f in family])
            for f, p_holm in zip(family, adjusted):
                f["p_holm"] = p_holm
                if math.isnan(p_holm):
                    f["verdict"] = "n/a"
                elif p_holm < ALPHA:
                    f["verdict"] = "better" if (f["diff"] > 0) == f["higher_is_better"] else "worse"
                else:
                    f["verdict"] = "no significant difference"
            out.extend(family)
    columns = ["group", "dataset", "config", "reference", "metric", "higher_is_better", "n", "diff", "lo",
               "hi", "p", "p_holm", "verdict", "note"]
    return pd.DataFrame(out, columns=columns)


def budgets(history: pd.DataFrame) -> pd.Series:
    """Epochs trained per run_id (the last evaluated epoch)."""
    if history.empty:
        return pd.Series(dtype=float)
    return history.groupby("run_id")["epoch"].max()


def speed_findings(runs: pd.DataFrame, table: pd.DataFrame, budget: pd.Series) -> list:
    """Sentences on epochs to target for one (group, dataset): the fastest against the others."""
    ok = table[table["seeds"] > 0]
    if ok.empty:
        return []
    first = ok.iloc[0]
    metric, higher, target = first["metric"], bool(first["higher_is_better"]), first["target"]
    reaching = ok[np.isfinite(ok["epochs_median"])].sort_values(["epochs_median", "rank"])
    goal = f"val {metric} {'≥' if higher else '≤'} {fmt(target)}"
    if reaching.empty:
        epochs = budget.reindex(runs["run_id"].unique()).max()
        return [f"No configuration reaches {goal} in its median seed (within {fmt(epochs)} epochs)."]
    fast = reaching.iloc[0]
    fast_times = _times(runs[runs["config"] == fast["config"]], "epochs_to_target")
    text = (f"{fast['config']} reaches {goal} first: in {fmt(fast['epochs_median'])} epochs "
            f"(median over {fast['seeds']} seeds).")
    canonical = "+".join(CANONICAL.get(first["task"], ("", "")))
    others = []
    if canonical in set(ok["config"]) and canonical != fast["config"]:
        others.append(canonical)
    slow = reaching.iloc[-1]["config"]
    if slow not in (fast["config"], *others):
        others.append(slow)
    for config in others:
        row = ok[ok["config"] == config].iloc[0]
        times = _times(runs[runs["config"] == config], "epochs_to_target")
        ratio, lo, hi = stats.ratio_ci(fast_times, times)
        role = " (canonical)" if config == canonical else ""
        if math.isinf(ratio):
            text += f" {config}{role} does not reach it in its median seed ({row['reached']}/{row['seeds']} seeds do)."
        else:
            text += (f" {config}{role} takes {fmt(row['epochs_median'])} ({fmt(ratio, 3)}× as many, "
                     f"95 % CI {fmt_ci(lo, hi, 3, pad=False)}×).")
    never = ok[~np.isfinite(ok["epochs_median"])]["config"].tolist()
    if never:
        text += (f" {len(never)} configuration{'s' if len(never) > 1 else ''} never reach{'' if len(never) > 1 else 'es'}"
                 f" it in the median seed: {_listing(never)}.")
    return [text]


def _listing(names, most=6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def bias_findings(runs: pd.DataFrame) -> list:
    """Regression: configurations whose forecast bias (mean signed test error, % of the mean target)
    has a 95 % t interval over seeds away from 0, beside the canonical linear+mse. This is where
    MAPE's known under-forecast shows; nothing is said when no configuration is biased."""
    if "test_bias" not in runs or runs["test_bias"].notna().sum() == 0:
        return []
    b = stats.band(runs[runs["test_bias"].notna()], "config", "test_bias").sort_values("mean")

    def describe(rows):
        return ", ".join(f"{r['config']} {r['mean']:+.1f} % ({r['lo']:+.1f} to {r['hi']:+.1f})"
                         for _, r in rows.iterrows())

    under, over = b[b["hi"] < 0], b[b["lo"] > 0]
    if under.empty and over.empty:
        return []
    parts = [f"under-forecasting: {describe(under)}"] if len(under) else []
    parts += [f"over-forecasting: {describe(over)}"] if len(over) else []
    text = ("Forecast bias (mean signed test error in % of the mean target, 95 % CI over seeds): "
            + "; ".join(parts) + ".")
    canonical = b[b["config"] == "+".join(CANONICAL["regression"])]
    if len(canonical) and canonical.index[0] not in under.index.union(over.index):
        text += f" For comparison, {describe(canonical)}."
    return [text]


def findings(runs, table, sig, history) -> dict:
    """Generated sentences: {group: [(dataset, [sentence, ...]), ...]} with the numbers behind them."""
    budget = budgets(history)
    out = {}
    for group, g in table.groupby("group", sort=True):
        sentences = []
        for dataset, t in g.groupby("dataset", sort=True):
            r = runs[(runs["group"] == group) & (runs["dataset"] == dataset)]
            ok = t[t["n"] > 0]
            if ok.empty:
                out.setdefault(group, []).append((dataset, ["No configuration finished with a test value."]))
                continue
            best = ok.iloc[0]
            metric = best["metric"]
            direction = "higher" if best["higher_is_better"] else "lower"
            text = (f"Best final test {metric} ({direction} is better): {best['config']} at "
                    f"{fmt(best['mean'], pad=True)} (95 % CI {fmt_ci(best['lo'], best['hi'])}, {best['n']} seeds).")
            canonical = "+".join(CANONICAL.get(best["task"], ("", "")))
            canon = ok[ok["config"] == canonical]
            if len(canon) and canonical != best["config"]:
                c = canon.iloc[0]
                text += (f" The canonical {canonical} scores {fmt(c['mean'], pad=True)} "
                         f"({fmt_ci(c['lo'], c['hi'])}), rank {int(c['rank'])} of {len(ok)}.")
            sentences.append(text)
            sentences.extend(speed_findings(r, t, budget))
            sentences.extend(bias_findings(r))
            s = sig[(sig["group"] == group) & (sig["dataset"] == dataset) & sig["p_holm"].notna()]
            if len(s):
                worse = s[s["verdict"] == "worse"]["config"].tolist()
                better = s[s["verdict"] == "better"]["config"].tolist()
                reference = s["reference"].iloc[0] if s["reference"].nunique() == 1 else \
                    "+".join(CANONICAL[best["task"]]) + " at the same settings"
                text = (f"Against {reference}, paired by seed with Holm correction over "
                        f"{len(s)} comparison{'s' if len(s) > 1 else ''}: {len(worse)} significantly worse, {len(better)} significantly "
                        f"better, {len(s) - len(worse) - len(better)} not distinguishable.")
                if better:
                    text += f" Better: {_listing(better)}."
                sentences.append(text)
            diverged = t[t["diverged"] > 0]
            if len(diverged):
                parts = ", ".join(f"{c} ({d} of {s})" for c, d, s in
                                  zip(diverged["config"], diverged["diverged"], diverged["seeds"]))
                sentences.append(f"{int(diverged['diverged'].sum())} of {int(t['seeds'].sum())} trained seeds "
                                 f"diverged (loss NaN/inf): {parts}.")
            for status, bad in t[~t["status"].isin(["done", "diverged"])].groupby("status", sort=True):
                names = bad["config"].tolist()
                sentences.append(f"{len(names)} configuration{'s' if len(names) > 1 else ''} {status}, not trained "
                                 f"(the reasons are in the ranking table): {_listing(names)}.")
            out.setdefault(group, []).append((dataset, sentences))
            sentences = []
    return out


def pitfall_rows(runs, history) -> pd.DataFrame:
    """Val history of sigmoid+BCE runs on multiclass data with both accuracies (the pitfall)."""
    keys = runs[(runs["task"] == "multiclass") & (runs["activation"] == "sigmoid") & (runs["loss"] == "bce")
                & runs["trained"]]["run_id"].unique()
    if history.empty or not len(keys) or "binary_accuracy" not in history:
        return pd.DataFrame()
    h = history[history["run_id"].isin(keys) & (history["split"] == "val")]
    info = identity(runs, h)
    return pd.DataFrame({"group": info["group"], "dataset": info["dataset"], "n_classes": info["n_classes"],
                         "seed": h["seed"], "epoch": h["epoch"],
                         "accuracy": h["accuracy"], "binary_accuracy": h["binary_accuracy"]})


def pitfall_findings(pit: pd.DataFrame) -> dict:
    """{group: {dataset: sentence}}: binary vs categorical val accuracy at the first and last epoch."""
    out = {}
    if pit.empty:
        return out
    for (group, dataset), h in pit.groupby(["group", "dataset"], sort=True):
        mean = h.groupby("epoch")[["accuracy", "binary_accuracy"]].mean()
        first, last = mean.iloc[0], mean.iloc[-1]
        out.setdefault(group, {})[dataset] = (
            f"sigmoid+bce shows val binary_accuracy {fmt(first['binary_accuracy'], 3, pad=True)} at epoch "
            f"{mean.index[0]} (categorical accuracy {fmt(first['accuracy'], 3, pad=True)}) and "
            f"{fmt(last['binary_accuracy'], 3, pad=True)} vs {fmt(last['accuracy'], 3, pad=True)} at epoch {mean.index[-1]} "
            f"(mean over seeds): element-wise accuracy over one-hot outputs is not the classification accuracy.")
    return out


# ---------------------------------------------------------------------------------------------
# figures: each function draws one PNG into `out` and returns its file name (None: nothing to draw)

def _save(fig, out: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    # layout is set by _grid: no tight bbox pass (slow on big grids); light PNG compression (fast)
    fig.savefig(out / name, dpi=DPI, pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return name


def _grid(rows, cols, panel=(3.6, 2.4), left=1.1, right=2.8, top=0.8, bottom=0.65, wgap=0.55, hgap=0.6,
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


def _legend(fig, handles, anchor, title=None):
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=anchor, frameon=False, fontsize=9,
               title=title, title_fontsize=9, alignment="left")


def _palette(names) -> dict:
    import seaborn as sns

    names = sorted(set(names))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours))


LINESTYLES = ["-", "--", ":", "-."]


def _axis_label(metric: str, prefix: str = "val") -> str:
    unit = UNITS.get(metric)
    return f"{prefix} {metric}" + (f" ({unit})" if unit else "")


def within_bounds(frame) -> pd.DataFrame:
    """lo and hi clipped to the values the row's `metric` can take (metrics.BOUNDS): a t interval
    of test accuracies 0.95-1.0 reaches past 1."""
    from bench.metrics import BOUNDS

    low = frame["metric"].map(lambda m: BOUNDS.get(m, (None, None))[0]).astype(float)
    high = frame["metric"].map(lambda m: BOUNDS.get(m, (None, None))[1]).astype(float)
    return frame.assign(lo=frame["lo"].clip(lower=low.fillna(-np.inf)), hi=frame["hi"].clip(upper=high.fillna(np.inf)))


def identity(runs, history) -> pd.DataFrame:
    """The run facts (group, dataset, activation, loss name, extra, metric) of each history row, by
    run_id: in history, `loss` is the loss value, so names come from the runs frame."""
    info = runs.drop_duplicates("run_id").set_index("run_id")[
        ["group", "dataset", "task", "activation", "loss", "extra", "metric", "n_classes"]]
    return info.reindex(history["run_id"].to_numpy()).set_index(history.index)


def curve_frame(runs, history, column=None, split="val") -> pd.DataFrame:
    """Per (group, dataset, activation, loss, extra, epoch): mean, lo, hi of a history column over
    seeds and the mean training seconds. column=None: each run's main metric."""
    if history.empty:
        return pd.DataFrame()
    h = history[history["split"] == split]
    info = identity(runs, h)
    if column is None:
        metric = info["metric"]
        value = pd.Series(np.nan, index=h.index)
        for m in metric.dropna().unique():
            if m in h:
                rows = metric == m
                value[rows] = h.loc[rows, m]
    else:
        if column not in h:
            return pd.DataFrame()
        metric, value = pd.Series(column, index=h.index), h[column]
    frame = info[["group", "dataset", "activation", "loss", "extra"]].assign(
        metric=metric, epoch=h["epoch"], value=value, train_seconds=h["train_seconds"])
    keys = ["group", "dataset", "activation", "loss", "extra", "metric", "epoch"]
    agg = within_bounds(stats.band(frame, keys, "value"))
    agg["train_seconds"] = frame.groupby(keys, sort=False, observed=True)["train_seconds"].mean().to_numpy()
    return agg.sort_values(keys)


def facet_lines(agg, out, name, *, x, title, xlabel, ylabel=None, logy=False, targets=None) -> str | None:
    """Rows = datasets, columns = activations, colour = loss; other varying settings (`extra`) get
    their own columns when that makes at most 6, else a line style each. Mean line with a shaded
    95 % band. ylabel: the y quantity (default: each row's val metric).

    One LineCollection and one PolyCollection per panel: thousands of curves stay fast to draw."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    if agg.empty or agg["mean"].notna().sum() == 0:
        return None
    datasets = sorted(agg["dataset"].unique())
    colours = _palette(agg["loss"])
    extras = sorted(agg["extra"].unique())
    split = 1 < len(extras) and agg["activation"].nunique() * len(extras) <= 6
    panel = agg["activation"] + (" · " + agg["extra"] if split else "")
    columns = sorted(panel.unique())
    styles = {e: "-" if split else LINESTYLES[i % len(LINESTYLES)] for i, e in enumerate(extras)}
    fig, axes, anchor = _grid(len(datasets), len(columns), hgap=0.85, title=title)  # room: xlabel + title
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
                ax.set_ylabel(f"{dataset}\n{ylabel or _axis_label(cell['metric'].iloc[0])}", fontsize=9)
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
    _legend(fig, handles, anchor, title="loss (colour)")
    return _save(fig, out, name)


def fig_heatmaps(table, out, name) -> str | None:
    """Mean final test metric over loss x activation, one panel per dataset (best over other settings)."""
    import matplotlib.pyplot as plt

    t = table[table["n"] > 0]
    if t.empty:
        return None
    datasets = sorted(table["dataset"].unique())
    cols = min(3, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    # each panel shows the losses and activations run on its dataset (invalid ones as n/a)
    axes_of = {d: (sorted(g["loss"].unique()), sorted(g["activation"].unique())) for d, g in table.groupby("dataset")}
    n_loss = max(len(a[0]) for a in axes_of.values())
    n_act = max(len(a[1]) for a in axes_of.values())
    many = table["extra"].ne("").any()
    fig, axes, _ = _grid(rows, cols, panel=(0.9 * n_act + 0.4, 0.36 * n_loss + 0.3),
                         left=1.0, right=1.0, wgap=1.9, hgap=1.0, top=1.0,
                         title="Final test metric, mean over seeds" + (" (best over the other settings)" if many
                                                                        else "") + "; grey n/a = not trained")
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.88")  # n/a cells: invalid, failed or not run
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        d = t[t["dataset"] == dataset]
        ax.set_title(dataset, fontsize=10)
        if d.empty:
            ax.text(0.5, 0.5, "no test values", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        higher = bool(d["higher_is_better"].iloc[0])
        losses, activations = axes_of[dataset]
        best = d.sort_values("mean", ascending=not higher).drop_duplicates(["loss", "activation"])
        grid = best.pivot(index="loss", columns="activation", values="mean").reindex(index=losses, columns=activations)
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap if higher else cmap.reversed(), aspect="auto")
        image.cmap.set_bad("0.88")
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if len(finite) else 0
        for (i, j), v in np.ndenumerate(values):
            dark = np.isfinite(v) and ((v < middle) == higher)
            ax.text(j, i, "n/a" if np.isnan(v) else fmt(v, 3, pad=True), ha="center", va="center", fontsize=8,
                    color="white" if dark else "0.15")
        ax.set_xticks(range(len(activations)), activations)
        ax.set_yticks(range(len(losses)), losses)
        ax.grid(False)
        ax.set_xlabel("output activation")
        ax.set_ylabel("loss")
        bar = fig.colorbar(image, ax=ax, fraction=0.08, pad=0.03)
        bar.set_label(f"test {d['metric'].iloc[0]}\n({'higher' if higher else 'lower'} is better)", fontsize=8)
    return _save(fig, out, name)


def fig_speed(runs, budget, out, name) -> str | None:
    """Epochs to the val target per seed: box + strip, x = loss, colour = activation, one panel per
    dataset; seeds that never reach it are drawn above the epoch budget."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    r = runs[runs["trained"]].copy()
    if r.empty:
        return None
    limit = r["run_id"].map(budget)
    r["epochs"] = r["epochs_to_target"].fillna(limit + 1)
    r = r.dropna(subset=["epochs"])
    if r.empty:
        return None
    datasets = sorted(r["dataset"].unique())
    cols = min(2, len(datasets))
    rows = math.ceil(len(datasets) / cols)
    losses = sorted(r["loss"].unique())
    activations = sorted(r["activation"].unique())
    palette = _palette(activations)
    width = 0.8 / len(activations)
    pooled = " (pooled over other settings)" if runs["extra"].ne("").any() else ""
    fig, axes, anchor = _grid(rows, cols, panel=(max(4.0, 0.3 * len(losses) * len(activations) + 1.0), 2.8),
                              left=0.8, hgap=0.8, wgap=0.7,
                              title=f"Epochs to the validation target, one point per seed{pooled}")
    rng = np.random.default_rng(0)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        d = r[r["dataset"] == dataset]
        losses = sorted(d["loss"].unique())  # only what was trained on this dataset
        for k, activation in enumerate(activations):
            a = d[d["activation"] == activation]
            groups = [(i, g["epochs"].to_numpy()) for i, (loss) in enumerate(losses)
                      for g in [a[a["loss"] == loss]] if len(g)]
            if not groups:
                continue
            positions = [i - 0.4 + width * (k + 0.5) for i, _ in groups]
            ax.boxplot([v for _, v in groups], positions=positions, widths=width * 0.8, showfliers=False,
                       manage_ticks=False, patch_artist=False,
                       boxprops={"color": palette[activation]}, whiskerprops={"color": palette[activation]},
                       capprops={"color": palette[activation]}, medianprops={"color": palette[activation]})
            xs = np.concatenate([np.full(len(v), p) for p, (_, v) in zip(positions, groups)])
            ys = np.concatenate([v for _, v in groups])
            ax.scatter(xs + rng.uniform(-width * 0.25, width * 0.25, len(xs)), ys, s=24, alpha=0.75,
                       color=palette[activation], edgecolors="white", linewidths=0.4, zorder=3)
        top = d["run_id"].map(budget).max()
        if np.isfinite(top):
            ax.axhline(top + 0.5, color="0.4", ls=(0, (2, 2)), lw=0.9)
        ax.set_xticks(range(len(losses)), losses)
        ax.set_xlim(-0.6, len(losses) - 0.4)
        ax.yaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.set_title(f"{dataset} (target: val {d['metric'].iloc[0]} "
                     f"{'≥' if d['higher_is_better'].iloc[0] else '≤'} {fmt(d['target'].iloc[0])})", fontsize=10)
        ax.set_xlabel("loss")
        ax.set_ylabel("epochs to target")
        ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=c, label=a) for a, c in palette.items()]
    handles.append(Line2D([], [], color="0.4", ls=(0, (2, 2)), label="epoch budget:\npoints above it\nnever reached"))
    _legend(fig, handles, anchor, title="activation (colour)")
    return _save(fig, out, name)


def profile_frame(table, column) -> pd.DataFrame:
    """Performance-profile ratios: rows = datasets, columns = configs, value = time / fastest time
    (inf: never reached in the median seed, not trained, or not run on that dataset)."""
    t = table.pivot_table(index="dataset", columns="config", values=column, aggfunc="first")
    t = t.reindex(columns=sorted(table["config"].unique())).fillna(np.inf)
    best = t.where(np.isfinite(t)).min(axis=1)
    t = t[best.notna()]
    return t.div(best[best.notna()], axis=0)


def fig_profiles(table, out, name) -> str | None:
    """Fraction of datasets on which each config is within a factor tau of the fastest (Dolan-More);
    the TOP configurations by area under the epochs profile in colour, the others in grey."""
    from matplotlib.lines import Line2D

    trained = table[table["seeds"] > 0]
    if trained["dataset"].nunique() < 2:
        return None
    panels = [("epochs_median", "epochs"), ("seconds_median", "training seconds")]
    profiles = {}
    for column, what in panels:
        ratios = profile_frame(trained, column)
        if ratios.empty:
            profiles[what] = None
            continue
        finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
        taus = np.geomspace(1, max(2.0, finite.max() * 1.2), 200)
        rho = {c: (ratios[c].to_numpy()[:, None] <= taus[None, :]).mean(0) for c in ratios.columns}
        profiles[what] = (taus, rho, len(ratios))
    first = next((p for p in profiles.values() if p is not None), None)
    if first is None:
        return None
    order = sorted(first[1], key=lambda c: -first[1][c].sum())
    colours = _palette(order[:TOP])
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes, anchor = _grid(1, 2, panel=(4.8, 3.4), left=0.8, right=3.2, wgap=0.8, bottom=0.9,
                              title=f"Performance profiles over {trained['dataset'].nunique()} datasets "
                                    "(time to target of the median seed)")
    for ax, (column, what) in zip(axes[0], panels):
        if profiles[what] is None:
            ax.text(0.5, 0.5, "no configuration reaches the target", ha="center", transform=ax.transAxes)
            continue
        taus, rho, n = profiles[what]
        for c in order[TOP:]:  # grey first
            ax.step(taus, rho[c], where="post", lw=0.8, color="0.78")
        for rank, c in enumerate(order[:TOP]):  # thick to thin, so identical profiles stay visible
            ax.step(taus, rho[c], where="post", lw=4.2 - 0.45 * rank, color=colours[c], alpha=0.9)
        ax.set_xscale("log")
        nice = np.array([1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 1e4, 1e5])
        ax.set_xticks(nice[nice <= taus[-1]])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"τ: {what} to target ÷ fastest on the dataset (log scale)")
        ax.set_ylabel(f"fraction of datasets (of {n}) within τ")
        ax.set_title(f"{what} to target", fontsize=10)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[c], lw=4.2 - 0.45 * rank, label=c) for rank, c in enumerate(order[:TOP])]
    if len(order) > TOP:
        handles.append(Line2D([], [], color="0.78", lw=1, label=f"{len(order) - TOP} others"))
    _legend(fig, handles, anchor, title="configuration")
    return _save(fig, out, name)


def fig_pitfall(pit, out, name) -> str | None:
    """Val accuracy (argmax) and binary_accuracy (element-wise) of sigmoid+BCE per multiclass dataset."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if pit.empty:
        return None
    datasets = sorted(pit["dataset"].unique())
    fig, axes, anchor = _grid(1, len(datasets), panel=(4.0, 2.8), left=0.8, right=3.6,
                              title="The pitfall: two 'accuracies' of the same sigmoid+BCE model on multiclass data")
    colours = {"accuracy": "C0", "binary_accuracy": "C3"}
    for ax, dataset in zip(axes[0], datasets):
        h = pit[pit["dataset"] == dataset]
        for column, colour in colours.items():
            b = stats.band(h, ["epoch"], column).sort_values("epoch")
            ax.plot(b["epoch"], b["mean"], color=colour, lw=1.6)
            ax.fill_between(b["epoch"], b["lo"].fillna(b["mean"]), b["hi"].fillna(b["mean"]), color=colour,
                            alpha=0.2, lw=0)
        # what a model that says "no" on every unit scores element-wise: 1 - 1/C (runs record C)
        classes = pd.to_numeric(h["n_classes"], errors="coerce").max()
        if classes > 1:
            ax.axhline(1 - 1 / classes, color="0.35", ls="--", lw=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val accuracy (fraction correct)")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="C0", lw=2, label="accuracy: argmax over\nclasses (categorical)"),
               Line2D([], [], color="C3", lw=2, label="binary_accuracy: each output\nunit vs its one-hot bit"),
               Line2D([], [], color="0.35", ls="--", lw=1, label="1 − 1/C: binary_accuracy of\nall-zero outputs"),
               plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, label="95 % CI over seeds")]
    _legend(fig, handles, anchor, title="metric (colour)")
    return _save(fig, out, name)


def anatomy_curves(pairs):
    """[(loss, activation, target, {"z", "loss", "grad"})] from bench.losses.anatomy, and notes on
    what could not be drawn. Raises ImportError while bench.losses has no anatomy()."""
    from bench.losses import anatomy  # noqa: F401  (ImportError when it does not exist)

    curves, notes = [], []
    for loss, activation in pairs:
        for target in (0.0, 1.0):
            try:
                a = anatomy(loss, activation, target)
            except Exception as error:  # an invalid pair or target: say so instead of failing the report
                notes.append(f"{activation}+{loss}, target {int(target)}: {error}")
                continue
            curves.append((loss, activation, target, {k: np.asarray(a[k], dtype=float) for k in ("z", "loss", "grad")}))
    return curves, notes


def fig_anatomy(curves, out, name) -> str | None:
    """Columns = (activation, loss) pairs; rows = loss and dloss/dz against the logit; colour = target."""
    if not curves:
        return None
    pairs = sorted({(a, l) for l, a, _, _ in curves})
    cols = min(5, len(pairs))
    blocks = math.ceil(len(pairs) / cols)
    fig, axes, anchor = _grid(2 * blocks, cols, panel=(2.9, 2.0), left=0.9, right=1.8, hgap=0.95, top=1.0,
                              title="Loss anatomy: the loss and its gradient against the logit, one output unit")
    colours = {0.0: "C0", 1.0: "C1"}
    place = {p: (2 * (k // cols), k % cols) for k, p in enumerate(pairs)}
    for k in range(len(pairs), blocks * cols):
        axes[2 * (k // cols), k % cols].set_visible(False)
        axes[2 * (k // cols) + 1, k % cols].set_visible(False)
    for loss, activation, target, a in curves:
        r, c = place[(activation, loss)]
        top, bottom = axes[r, c], axes[r + 1, c]
        top.plot(a["z"], a["loss"], color=colours.get(target, "C2"), lw=1.6)
        bottom.plot(a["z"], a["grad"], color=colours.get(target, "C2"), lw=1.6)
        top.set_title(f"{activation} + {loss}", fontsize=10)
        top.set_ylabel("loss" if c == 0 else "")
        bottom.set_ylabel("∂loss/∂z" if c == 0 else "")
        bottom.set_xlabel("logit z (output pre-activation)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.axhline(0, color="0.6", lw=0.6)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=f"y = {int(t)}") for t, c in colours.items()]
    _legend(fig, handles, anchor, title="target (colour)")
    return _save(fig, out, name)


# ---------------------------------------------------------------------------------------------
# page: sections of blocks (text | figure | table | empty) rendered by templates/report.html.j2

def _figure(pending, caption, empty):
    """A figure block whose file is still being drawn: `resolve` turns it into the image or `empty`."""
    return {"kind": "figure", "pending": pending, "caption": caption, "empty": empty}


def resolve(block):
    if block["kind"] != "figure" or "pending" not in block:
        return block
    name = block["pending"].result()
    return {"kind": "figure", "src": name, "caption": block["caption"]} if name else _empty(block["empty"])


class Painter:
    """Draws figures in `workers` forked processes (matplotlib is single-threaded; the figures are
    independent) or inline; `draw` returns an object with .result() -> file name or None."""

    def __init__(self, workers):
        self.pool = None
        if workers > 1 and sys.platform == "linux":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            for _ in range(workers):  # fork now, before torch (anatomy) starts its threads in this process
                self.pool.submit(int)

    def draw(self, fn, *args, **kwargs):
        if self.pool is None:
            from concurrent.futures import Future

            done = Future()
            done.set_result(fn(*args, **kwargs))
            return done
        return self.pool.submit(fn, *args, **kwargs)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


def _empty(text):
    return {"kind": "empty", "text": text}


def ranking_blocks(table) -> list:
    blocks = []
    for dataset, t in table.groupby("dataset", sort=True):
        first = t.iloc[0]
        direction = "higher" if first["higher_is_better"] else "lower"
        goal = f"{'≥' if first['higher_is_better'] else '≤'} {fmt(first['target'])}"
        header = ["rank", "configuration", f"test {first['metric']}: mean (95 % CI)", "seeds with value",
                  f"epochs to val {goal} (median)", "seconds to target (median)", "seeds reaching target",
                  "status"]
        rows = []
        for _, r in t.iterrows():
            if r["seeds"] == 0:
                why = r["reason"] or r["status"]
                rows.append({"cls": "na", "cells": ["—", r["config"], "n/a", "—", "n/a", "n/a", "—",
                                                    f"{r['status']}: {why}"]})
                continue
            status = f"{r['done']} done" + (f", {r['diverged']} diverged" if r["diverged"] else "")
            rows.append({"cls": "diverged" if r["diverged"] else "", "cells": [
                fmt(r["rank"]) if r["n"] else "—", r["config"],
                f"{fmt(r['mean'], pad=True)} ({fmt_ci(r['lo'], r['hi'])})" if r["n"] else "n/a (no test value)",
                f"{r['n']}/{r['seeds']}",
                "never" if math.isinf(r["epochs_median"]) else fmt(r["epochs_median"]),
                "never" if math.isinf(r["seconds_median"]) else fmt(r["seconds_median"], 3),
                f"{r['reached']}/{r['seeds']}", status]})
        blocks.append({"kind": "table", "title": f"{dataset} — test {first['metric']} ({direction} is better)",
                       "header": header, "rows": rows, "text_cols": [1, 7]})
    return blocks


def significance_blocks(sig, table) -> list:
    blocks = []
    for dataset, t in table[table["seeds"] > 0].groupby("dataset", sort=True):
        if dataset not in set(sig["dataset"]):
            pair = "+".join(CANONICAL.get(t["task"].iloc[0], ("?", "?")))
            blocks.append(_empty(f"{dataset}: the canonical pairing {pair} was not trained in this group, "
                                 "so there is nothing to compare with."))
    for dataset, s in sig.groupby("dataset", sort=True):
        rows = []
        for _, r in s.iterrows():
            if math.isnan(r["p_holm"]):
                words = f"n/a: {r['note']}"
            else:
                lower = "higher" if r["diff"] > 0 else "lower"
                words = (f"{r['config']} scores {fmt(abs(r['diff']), 3, pad=True)} {lower} {r['metric']} than {r['reference']} "
                         f"(95 % CI of the difference {fmt_ci(r['lo'], r['hi'], 3)}; Holm-adjusted p = "
                         f"{fmt(r['p_holm'], 2)}, {r['n']} paired seeds): {r['verdict']}.")
            rows.append({"cls": {"better": "better", "worse": "worse"}.get(r["verdict"], ""), "cells": [
                r["config"], fmt(r["diff"], 3, pad=True), fmt_ci(r["lo"], r["hi"], 3), str(r["n"]),
                fmt(r["p"], 2), fmt(r["p_holm"], 2), r["verdict"], words]})
        first = s.iloc[0]
        reference = first["reference"] if s["reference"].nunique() == 1 else \
            first["reference"].split(" [")[0] + " at the same settings"
        blocks.append({"kind": "table", "title": f"{dataset} — vs {reference} (test {first['metric']})",
                       "header": ["configuration", "difference (config − canonical)", "95 % CI", "paired seeds",
                                  "p (paired t)", "p (Holm)", "verdict", "in words"], "rows": rows,
                       "text_cols": [0, 6, 7]})
    return blocks


SECTIONS = [
    ("findings", "Findings"),
    ("ranking", "Ranking per dataset"),
    ("curves", "Learning curves"),
    ("heatmaps", "Final metric over loss × activation"),
    ("speed", "Convergence speed"),
    ("saturation", "Saturation: gradient at the output"),
    ("anatomy", "Loss anatomy"),
    ("pitfall", "The pitfall: categorical vs element-wise accuracy"),
    ("significance", "Significance against the canonical pairing"),
]


def group_sections(group, runs, history, table, sig, found, pit, anatomy, out, painter) -> list:
    """The sections of one sweep group; its figures are handed to `painter` (drawn into `out`)."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in str(group))
    draw = painter.draw
    r = runs[runs["group"] == group]
    h = history[history["run_id"].isin(r["run_id"])] if len(history) else history
    t, s = table[table["group"] == group], sig[sig["group"] == group]
    blocks = {key: [] for key, _ in SECTIONS}
    blocks["findings"] = [{"kind": "list", "title": dataset, "items": items} for dataset, items in found.get(group, [])] \
        or [_empty("No finished runs with a test value in this group.")]
    blocks["ranking"] = ranking_blocks(t) or [_empty("No runs in this group.")]

    curves = curve_frame(r, h)
    targets = r.dropna(subset=["target"]).groupby("dataset")["target"].first().to_dict()
    no_curves = "No learning curves: no trained run has a history."
    blocks["curves"] = [
        _figure(draw(facet_lines, curves, out, f"{slug}-curves-epoch.png", x="epoch", xlabel="epoch",
                     targets=targets, title="Validation metric vs epoch (mean over seeds, 95 % band)"),
                "Rows: datasets; columns: output activation; colour: loss. The thin black line is the "
                "convergence target.", no_curves),
        _figure(draw(facet_lines, curves, out, f"{slug}-curves-seconds.png", x="train_seconds",
                     xlabel="training time (s, evaluation excluded)", targets=targets,
                     title="Validation metric vs training time (mean over seeds, 95 % band)"),
                "The same curves against training seconds (the seeds of a run train together, so the time "
                "axis is the run's).", no_curves)]

    blocks["heatmaps"] = [_figure(draw(fig_heatmaps, t, out, f"{slug}-heatmap.png"),
                                  "Mean final test metric over seeds; lighter is better in every panel.",
                                  "No configuration has a test value.")]

    budget = budgets(h)
    trained_datasets = t[t["seeds"] > 0]["dataset"].nunique()
    blocks["speed"] = [
        _figure(draw(fig_speed, r, budget, out, f"{slug}-speed.png"),
                "Each point is one seed; boxes show quartiles. Points above the dashed line never reached the "
                "target within the run's epochs.", "No trained runs: nothing to time."),
        _figure(draw(fig_profiles, t, out, f"{slug}-profile.png"),
                "ρ(τ): the fraction of datasets on which a configuration reaches the target within τ times the "
                "fastest configuration's time (Dolan & Moré). Higher and further left is better; ρ(1) is the "
                "share of datasets on which it is the fastest.",
                "Performance profiles need at least two datasets with trained runs in the group; this group "
                f"has {trained_datasets}.")]

    grads = curve_frame(r, h, column="out_grad", split="train")
    blocks["saturation"] = [_figure(
        draw(facet_lines, grads, out, f"{slug}-saturation.png", x="epoch", logy=True, xlabel="epoch",
             ylabel="mean |∂loss/∂z| (log scale)",
             title="Output-gradient magnitude on the training data vs epoch (mean over seeds, 95 % band)"),
        "A gradient that collapses while the metric is still poor means the output saturated (e.g. "
        "sigmoid+MSE far from the target): learning stalls.", "No output-gradient history (out_grad) in this group.")]

    curves_a, notes, missing = anatomy
    pairs = set(zip(r.loc[r["trained"], "activation"], r.loc[r["trained"], "loss"]))
    if missing:
        blocks["anatomy"] = [_empty(missing)]
    else:
        mine = [c for c in curves_a if (c[1], c[0]) in pairs]
        blocks["anatomy"] = [_figure(draw(fig_anatomy, mine, out, f"{slug}-anatomy.png"),
                                     "Why losses learn differently: where ∂loss/∂z is small, gradient descent "
                                     "barely moves, however wrong the output is (sigmoid+MSE far on the wrong "
                                     "side). One output unit over a grid of logits, targets encoded as in "
                                     "training; for softmax, z is the margin of class 1 over class 0.",
                                     "No trained (loss, activation) pair to draw.")]
        blocks["anatomy"] += [_empty(f"Not drawn: {n}") for n in notes
                              if tuple(n.split(",")[0].split("+", 1)) in pairs]

    p = pit[pit["group"] == group] if len(pit) else pit
    blocks["pitfall"] = [{"kind": "list", "items": [f"On {d}, {text}" for d, text in
                                                    pitfall_findings(p).get(group, {}).items()]},
                         _figure(draw(fig_pitfall, p, out, f"{slug}-pitfall.png"),
                                 "With C classes and one-hot targets, a model that outputs 0 on every unit "
                                 "already scores 1 − 1/C binary accuracy; Keras reports this number as "
                                 "'accuracy' when the loss is binary_crossentropy.", "")] if len(p) else \
        [_empty("No sigmoid+BCE run on multiclass data in this group.")]

    blocks["significance"] = [{"kind": "text", "text":
                               "Difference = configuration − canonical pairing of the task (regression: linear+mse, "
                               "binary: sigmoid+bce, multiclass: softmax+cce) on the final test metric, paired by "
                               "seed; 95 % t interval (not adjusted) and paired t-test, Holm-corrected over the "
                               f"comparisons of each dataset at α = {ALPHA}."}] + significance_blocks(s, t)
    return [{"id": f"{slug}-{key}", "title": title, "blocks": blocks[key]} for key, title in SECTIONS]


def build(results_dir="results", out=None, workers=2) -> Path:
    """Load `results_dir`, write the PNGs, CSVs and index.html into `out`; return the page's path.

    workers: processes drawing the figures (1 = inline)."""
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results_dir={str(results_dir)!r} is not a directory; run a sweep first (make sweep) "
                        "or pass the folder that holds <group>/<run_id>/summary.json")
    out = Path(out) if out is not None else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # figures of groups that no longer exist must not linger
        old.unlink()
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)

    # fork the figure workers now, before pyarrow (load) or torch (anatomy) start threads here
    painter = Painter(min(workers, machine.cores()))
    try:
        groups = sections(results_dir, out, painter)
    finally:
        painter.close()
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        groups=groups, results_dir=str(results_dir),
        built=time.strftime("%Y-%m-%d %H:%M:%S"), seconds=f"{time.perf_counter() - started:.1f}")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def sections(results_dir, out, painter) -> list:
    """Load the results, write the CSVs and findings.txt, hand the figures to `painter`; return the
    groups for the template, figures resolved."""
    from bench.store import load

    runs, history = load(results_dir)
    if runs.empty:
        return []
    runs = prepare(runs, results_dir)
    table = ranking(runs)
    sig = significance(runs)
    found = findings(runs, table, sig, history)
    pit = pitfall_rows(runs, history)
    for group, by_dataset in pitfall_findings(pit).items():
        for dataset, sentences in found.get(group, []):
            if dataset in by_dataset:
                sentences.append(by_dataset[dataset])
    anatomy = anatomy_for(runs)
    table.to_csv(out / "ranking.csv", index=False)
    sig.to_csv(out / "significance.csv", index=False)
    (out / "findings.txt").write_text("".join(f"[{g}] {d}: {s}\n" for g, ds in found.items()
                                              for d, ss in ds for s in ss))
    groups = []
    for group in sorted(runs["group"].unique()):
        r = runs[runs["group"] == group]
        groups.append({
            "name": group, "id": "".join(ch if ch.isalnum() else "-" for ch in str(group)),
            "facts": f"{r['run_id'].nunique()} runs, {r['dataset'].nunique()} datasets, "
                     f"{r.loc[r['trained'], 'config'].nunique()} trained configurations, "
                     f"{int(r['seed'].nunique())} seeds",
            "sections": group_sections(group, runs, history, table, sig, found, pit, anatomy, out, painter)})
    for g in groups:
        for section in g["sections"]:
            section["blocks"] = [resolve(b) for b in section["blocks"]]
    return groups


def anatomy_for(runs):
    """(curves, notes, missing): anatomy curves for every trained (loss, activation) in the results;
    `missing` is the one line shown while bench.losses has no anatomy()."""
    trained = runs[runs["trained"]]
    pairs = sorted(set(zip(trained["loss"], trained["activation"])))
    try:
        curves, notes = anatomy_curves(pairs)
    except ImportError:
        return [], [], "Not available yet: bench.losses has no anatomy() to draw the loss against the logit."
    return curves, notes, None


# ---------------------------------------------------------------------------------------------
# benchmark: time the build on generated results (not part of the test suite)

def synthetic_results(path, n_runs=1000, seeds=5, epochs=100, seed=0) -> Path:
    """Write `n_runs` runs in the results layout with plausible curves (for the timing benchmark)."""
    from bench.store import save_run

    rng = np.random.default_rng(seed)
    losses = ["mse", "mae", "huber", "bce", "cce", "mape", "msle", "logcosh", "poisson", "hinge"]
    activations = ["linear", "sigmoid", "softmax", "tanh", "relu"]
    optimizers = ["sgd", "adam"]
    n_datasets = max(1, math.ceil(n_runs / (len(losses) * len(activations) * len(optimizers))))
    tasks = ["multiclass", "binary", "regression"]
    made = 0
    for d in range(n_datasets):
        task = tasks[d % 3]
        metric, higher, target = ("rmse", False, 0.6) if task == "regression" else ("accuracy", True, 0.85)
        for activation in activations:
            for loss in losses:
                for optimizer in optimizers:
                    if made == n_runs:
                        return Path(path)
                    made += 1
                    rid = f"r{made:05d}"
                    facts = {"run_id": rid, "group": "bench", "dataset": f"data{d}", "task": task, "model": "mlp",
                             "activation": activation, "loss": loss, "optimizer": optimizer, "lr": 0.1,
                             "metric": metric, "higher_is_better": higher, "target": target, "epochs": epochs,
                             "seeds": list(range(seeds))}
                    if loss == "cce" and activation != "softmax":
                        save_run(Path(path) / "bench" / rid, "{}\n", None,
                                 {**facts, "status": "invalid", "per_seed": [],
                                  "reason": "loss=cce needs a distribution over the classes; use activation=softmax"})
                        continue
                    rate = rng.uniform(0.02, 0.3)
                    e = np.arange(epochs + 1)
                    noise = rng.normal(0, 0.01, (seeds, 2, epochs + 1))
                    level = 1 - np.exp(-rate * e)  # [E]
                    value = (0.1 + 0.85 * level + noise) if higher else (1.5 - 1.1 * level + noise)
                    grad = np.exp(-rate * e)[None, None, :] * rng.uniform(0.5, 1.5, (seeds, 1, 1))
                    sec = e * 0.01
                    s, sp, ep = np.meshgrid(np.arange(seeds), [0, 1], e, indexing="ij")
                    history = pd.DataFrame({
                        "seed": s.ravel(), "epoch": ep.ravel(), "step": ep.ravel() * 10,
                        "train_seconds": sec[ep.ravel()], "split": np.where(sp.ravel() == 0, "train", "val"),
                        "loss": 1 - level[ep.ravel()], metric: value.ravel(), "out_grad": np.broadcast_to(
                            grad, value.shape).ravel()})
                    if task != "regression":
                        history["binary_accuracy"] = 0.9 + 0.09 * level[ep.ravel()]
                    per_seed = []
                    for k in range(seeds):
                        v = value[k, 1]
                        hit = np.flatnonzero(v >= target if higher else v <= target)
                        first = int(hit[0]) if len(hit) else None
                        per_seed.append({"seed": k, "status": "done", "diverged_step": None,
                                         "test": {metric: float(v[-1])}, "best_val": float(v.max() if higher else v.min()),
                                         "epochs_to_target": first, "steps_to_target": None if first is None else 10 * first,
                                         "seconds_to_target": None if first is None else float(sec[first]),
                                         "auc": float(v.mean()), "train_seconds": float(sec[-1])})
                    save_run(Path(path) / "bench" / rid, "{}\n", history,
                             {**facts, "status": "done", "reason": None, "per_seed": per_seed})
    return Path(path)


def benchmark(n_runs=1000, seeds=5, epochs=100, keep=None) -> float:
    """Generate results in a temp dir (or `keep`), build the report, print and return the wall
    seconds of the build (with the CPU seconds of this process and its figure workers: on a busy
    machine the wall time is the load's as much as the report's)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(keep or tmp)
        if not (root / "bench").is_dir():
            t0 = time.perf_counter()
            synthetic_results(root, n_runs, seeds, epochs)
            print(f"generated {n_runs} runs x {seeds} seeds x {epochs} epochs in {time.perf_counter() - t0:.1f} s")
        cpu0, t0 = os.times(), time.perf_counter()
        index = build(root, root / "report")
        seconds, cpu1 = time.perf_counter() - t0, os.times()
        cpu = sum(cpu1[:4]) - sum(cpu0[:4])  # user + system, self + children
        print(f"report of {n_runs} runs built in {seconds:.1f} s wall, {cpu:.1f} s CPU "
              f"({machine.cores()} cores, load average {os.getloadavg()[0]:.1f}) -> {index}")
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Build the report of a results tree: PNG figures, ranking.csv, significance.csv, "
                    "findings.txt and one static index.html (no network needed to view it).")
    parser.add_argument("results_dir", nargs="?", default="results",
                        help="folder holding <group>/<run_id>/summary.json (default: results)")
    parser.add_argument("--out", help="where to write the report (default: <results_dir>/report); with "
                                      "--benchmark: keep the generated results there (reused when present)")
    parser.add_argument("--benchmark", action="store_true",
                        help="time the build on generated results instead (1,000 runs x 5 seeds x 100 epochs)")
    parser.add_argument("--runs", type=int, default=1000, help="--benchmark: number of generated runs")
    args = parser.parse_args(argv)
    try:
        if args.benchmark:
            if args.runs < 1:
                raise UserError(f"--runs={args.runs} is not allowed; it must be an integer > 0")
            benchmark(args.runs, keep=args.out)
            return
        index = build(args.results_dir, args.out)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {index}")


if __name__ == "__main__":
    main()
