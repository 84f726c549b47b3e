"""The report's tables: plain pandas over the `bench.store.load` frames, the numbers behind every
sentence and figure. Light on purpose (pandas, numpy, scipy.stats): `python -m bench.results`
imports it for its terminal table.

    prepare(runs)              runs with a `config` label and `value` = the main test metric
    ranking(runs)              one row per (group, dataset, config): mean and t interval, speed, status
    significance(runs)         every configuration vs its task's canonical pairing, paired by seed
    curve_frame(runs, history) mean and t band over seeds of a history column per epoch
    profile_frame(table, col)  performance-profile ratios (time / fastest time per dataset)
    pitfall_rows(runs, history) val accuracies of sigmoid+BCE on multiclass data

Seeds are the replication unit: every interval is over seeds.
"""
import math

import numpy as np
import pandas as pd

from bench import stats

# config keys besides (activation, loss) that may vary in a group; shown in the label when they do
EXTRA_KEYS = ("model", "optimizer", "lr")
# config keys never shown in a label (paths, switches that do not change results)
NOT_LABEL = ("results_dir", "group", "force", "progress", "hydra", "seeds", "trainer.threads")
ALPHA = 0.05  # significance level after Holm correction


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


def flat(tree, prefix="") -> dict:
    """Nested config dict -> {"model.out_init_scale": 30, ...} (lists kept as values)."""
    out = {}
    for key, value in (tree or {}).items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
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
            configs[rid] = flat(yaml.safe_load(path.read_text())) if path.is_file() else {}
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


def seed_times(rows, column):
    """Per-seed times to target of trained seeds; never reached = inf."""
    return rows.loc[rows["trained"], column].fillna(np.inf).to_numpy(dtype=float)


def ranking(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, dataset, config): test metric mean and 95 % CI, speed, status counts.

    mean/lo/hi/n/std: over the seeds with a finite test value (t interval); epochs/seconds_median:
    median over trained seeds with never reached = inf; epochs_reached_median: median over the seeds
    that reached the target (NaN: none did); reached: seeds that reached the target. Rank 1 is
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
        "std": by["value"].std(), "seeds": by.size(), "done": by["done"].sum(), "diverged": by["diverged"].sum(),
        "epochs_median": by["epochs"].median(), "seconds_median": by["seconds"].median(),
        "epochs_reached_median": by["epochs_to_target"].median(),
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
    from bench.losses import CANONICAL  # here, not at import: bench.losses imports torch

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


def within_bounds(frame) -> pd.DataFrame:
    """lo and hi clipped to the values the row's `metric` can take (metrics.BOUNDS): a t interval
    of test accuracies 0.95-1.0 reaches past 1."""
    from bench.metric_facts import BOUNDS

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


def profile_frame(table, column) -> pd.DataFrame:
    """Performance-profile ratios: rows = datasets, columns = configs, value = time / fastest time
    (inf: never reached in the median seed, not trained, or not run on that dataset)."""
    t = table.pivot_table(index="dataset", columns="config", values=column, aggfunc="first")
    t = t.reindex(columns=sorted(table["config"].unique())).fillna(np.inf)
    best = t.where(np.isfinite(t)).min(axis=1)
    t = t[best.notna()]
    return t.div(best[best.notna()], axis=0)


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

