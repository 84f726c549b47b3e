"""The report's tables: plain pandas over the `bench.store.load` frames, the numbers behind every
sentence and figure. Light on purpose (pandas, numpy, scipy.stats): `python -m bench.results`
imports it for its terminal table.

    prepare(runs)              runs with a `config` label, the knob `setting`, `value` = the main test
                               metric, `chosen` (the member at its configuration's quality-chosen lr)
                               and `speed_chosen` (at the lr that reaches the target fastest)
    time_to_target(rows, by)   the one epochs/seconds-to-target statistic (bench.results, ranking.csv
                               and the page all read it from ranking)
    versus(rows, reference, column, ...)  one family: every configuration of one (dataset, setting)
                               against a reference on one quantity, through `bench.stats`
    significance(runs)         every configuration vs its task's canonical pairing on the test metric
    speed_significance(runs, budget)  the same on epochs to target (never reached: capped at the budget)
    ranking(runs, speed, sig)  one row per (group, dataset, config): mean and t interval, speed, status,
                               the verdict against the canonical pairing; ties share a rank
    curve_frame(runs, history) mean and t band over seeds of a history column per epoch
    profile_frame(table, col)  performance-profile ratios (time / fastest time per dataset)
    pitfall_rows(runs, history) val accuracies of sigmoid+BCE on multiclass data, per setting

Replicates (seeds) are the replication unit: every interval is over them, every comparison pairs
them (`bench.stats`). The tuned view's numbers (per learning rate, the fixed-learning-rate ranking)
are in `tuned.py`.
"""
import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.metric_facts import CANONICAL

# config keys besides (activation, loss) that may vary in a group; shown in the label when they do.
# Columns of store.load() named like a config key ("dataset.contamination") are knobs too.
EXTRA_KEYS = ("model", "optimizer", "lr")
ALPHA = stats.ALPHA  # the family-wise level of every verdict


def fmt(x, digits=4, pad=False) -> str:
    """A number for a sentence or a table: `digits` significant digits (pad: keep trailing zeros, so
    0.9600 stands next to 0.9517), n/a for NaN, ∞ for inf."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "∞"
    text = f"{x:#.{digits}g}" if pad else f"{x:.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def fmt_apart(a, b, digits=3, most=6) -> tuple:
    """a and b as `fmt(x, digits, pad=True)`, with more digits (up to `most`) where they would read
    alike: (0.9995, 0.9984) -> ('0.9995', '0.9984'), not ('1.00', '1.00'). Still alike at `most`
    digits: the same text twice (the caller says they are equal)."""
    for n in range(digits, most + 1):
        x, y = fmt(a, n, pad=True), fmt(b, n, pad=True)
        if x != y:
            return x, y
    return fmt(a, digits, pad=True), fmt(b, digits, pad=True)


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
    (model, optimizer, lr, store.load() columns named like config keys; for runs that would still
    share a label, the config.yaml keys that differ, e.g. dataset.contamination). `setting` is that
    bracket alone ("" when nothing varies): the knob value every comparison is made within.

    Tuned runs (store.load() gives one row per (seed, lr) member with `lr`, `chosen` and
    `speed_chosen`): `lr` is then the tuning axis, not a knob; without a `chosen` column every row is
    chosen, and without `speed_chosen` the chosen members answer the speed questions too (one
    learning rate, or results from before the speed-optimal choice)."""
    runs = runs.copy()
    tuned = "chosen" in runs and runs["chosen"].notna().any()
    runs["chosen"] = runs["chosen"].fillna(True).astype(bool) if tuned else True
    speed = "speed_chosen" in runs and runs["speed_chosen"].notna().any()
    runs["speed_chosen"] = runs["speed_chosen"].fillna(runs["chosen"]).astype(bool) if speed else runs["chosen"]
    numeric = ["seed", "lr", "target", "best_val", "epochs_to_target", "steps_to_target",
               "seconds_to_target", "auc", "train_seconds", "diverged_step", "n_test"]
    numeric += [c for c in runs.columns if c.startswith("test_")]
    for column in numeric:
        if column in runs:
            runs[column] = pd.to_numeric(runs[column], errors="coerce")
    # one direction per metric, also for invalid runs that did not record it
    direction = runs.dropna(subset=["higher_is_better"]).groupby("metric")["higher_is_better"].first()
    runs["higher_is_better"] = runs["metric"].map(direction).astype("boolean")
    runs["extra"] = ""
    # store.load() adds every config key that varies between the loaded runs; the loss and activation
    # are what is compared (never a knob), and a tuned learning rate is the tuning axis
    not_knobs = ("loss.", "activation.", "dataset.name", "optimizer.lr_grid",
                 *(("lr", "optimizer.lr") if tuned else ()))
    knobs = [k for k in (*EXTRA_KEYS, *sorted(c for c in runs.columns if "." in c and not c.startswith("test_")))
             if k in runs and not k.startswith(not_knobs)]  # (test figures per level, test_coverage_0.9: no knobs)
    for _, rows in runs.groupby(["group", "dataset"]).groups.items():  # a knob varies within one dataset
        varying = [k for k in knobs if runs.loc[rows, k].astype(str).nunique(dropna=True) > 1]
        if varying:
            runs.loc[rows, "extra"] = runs.loc[rows, varying].astype(str).apply(
                lambda r: " ".join(f"{k}={v}" for k, v in zip(varying, r)), axis=1)
    runs["loss_name"] = runs["loss"]  # the loss function; `loss` becomes its label, with its parameters
    runs["loss"] = loss_labels(runs)
    runs["config"] = runs["activation"].astype(str) + "+" + runs["loss"].astype(str)
    differences = config_differences(results_dir, runs.assign(config=runs["config"] + runs["extra"])) \
        if results_dir is not None else {}
    more = runs["run_id"].map(lambda rid: differences.get(rid, ""))
    runs["extra"] = (runs["extra"] + " " + more).str.strip()
    runs["setting"] = runs["extra"]
    runs.loc[runs["extra"] != "", "config"] += " [" + runs["extra"] + "]"
    value = pd.Series(np.nan, index=runs.index)
    for metric, rows in runs.groupby("metric").groups.items():
        if f"test_{metric}" in runs:
            value[rows] = runs.loc[rows, f"test_{metric}"]
    runs["value"] = value
    runs["trained"] = runs["status"].isin(["done", "diverged"])
    return runs


def loss_labels(runs) -> pd.Series:
    """Each run's loss with the parameters (store.load()'s `loss.<key>` columns) it sets away from its
    conf/loss/<name>.yaml default: cce, cce(label_smoothing=0.1), categorical_focal(gamma=1). A loss
    parameter is part of what is compared (never a knob), and the label of a run does not depend on
    which other runs are loaded."""
    keys = sorted(c for c in runs.columns if c.startswith("loss."))

    def label(row):
        defaults = loss_defaults(row["loss"])
        changed = [f"{k[5:]}={row[k]:g}" if isinstance(row[k], (int, float)) else f"{k[5:]}={row[k]}"
                   for k in keys if k[5:] in defaults and not isinstance(row[k], (list, dict, tuple))
                   and pd.notna(row[k]) and row[k] != defaults[k[5:]]]
        return f"{row['loss']}({','.join(changed)})" if changed else row["loss"]

    if not keys or runs.empty:
        return runs["loss"]
    # one label per (loss, parameters); compared as text: a user's loss may hold lists (loss.tasks)
    key = runs[["loss", *keys]].map(repr).agg("|".join, axis=1)
    first = ~key.duplicated()
    labels = dict(zip(key[first], runs[first].apply(label, axis=1)))
    return key.map(labels)


@functools.cache  # one read per loss (prepare asks once per row)
def loss_defaults(name) -> dict:
    """The parameters of conf/loss/<name>.yaml with their defaults ({} for a name without one)."""
    import yaml

    from bench.config import CONF_DIR

    path = Path(CONF_DIR) / "loss" / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        return {}
    return {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "name"}


def seed_times(rows, column):
    """Per-seed times to target of trained seeds; never reached = inf."""
    return rows.loc[rows["trained"], column].fillna(np.inf).to_numpy(dtype=float)


def time_to_target(rows, by, column="epochs_to_target") -> pd.Series:
    """THE epochs (or seconds) to target, per group of `by`: the median over the trained seeds, a
    seed that never reached the target (diverged included) counting as inf, so a configuration
    whose median seed never gets there is `inf` ("never"). bench.results, ranking.csv and the
    page all read this number (through `ranking`)."""
    trained = rows[rows["trained"]]
    return trained[column].fillna(np.inf).groupby([trained[k] for k in by], sort=True).median()


def example_sizes(runs) -> pd.Series:
    """One test example per replicate on the main metric's scale (`stats.example_size`), per (group,
    dataset, setting): 1 / the median `n_test` for accuracy-like metrics, NaN elsewhere (or when the
    results do not record n_test)."""
    n_test = pd.to_numeric(runs["n_test"], errors="coerce") if "n_test" in runs else np.nan
    facts = runs.assign(n_test=n_test).groupby(["group", "dataset", "setting"], sort=True).agg(
        metric=("metric", "first"), n_test=("n_test", "median"))
    return pd.Series([stats.example_size(m, n) for m, n in zip(facts["metric"], facts["n_test"])], index=facts.index,
                     dtype=float)


def shared_ranks(scores, resolution) -> np.ndarray:
    """Ranks of sorted `scores` (smaller is better), ties sharing the smallest: a score within
    `resolution` of the first score of its tie (NaN resolution: equal to it) takes that rank."""
    ranks, leader, rank = np.empty(len(scores)), math.nan, 0
    for i, score in enumerate(scores):
        if not (score == leader or score - leader < resolution):
            leader, rank = score, i + 1
        ranks[i] = rank
    return ranks


def lr_bound(grid, lr) -> str:
    """"at least" / "at most" where `lr` is the largest / smallest rate of a grid of several (as trained,
    extensions included: the optimum may lie further out, so the configuration is not called tuned),
    else ""."""
    if not isinstance(grid, (tuple, list)) or len(grid) < 2:
        return ""
    return "at least" if lr == max(grid) else "at most" if lr == min(grid) else ""


def ranking(runs: pd.DataFrame, speed: pd.DataFrame = None, sig: pd.DataFrame = None) -> pd.DataFrame:
    """One row per (group, dataset, config): test metric mean and 95 % CI, speed, status counts and
    the verdict against the canonical pairing.

    mean/lo/hi/n/std: over the seeds with a finite test value (t interval); epochs/seconds_median:
    `time_to_target` of the `speed` rows (the members at the learning rate that reaches the target
    fastest; default: `runs`); reached: seeds of those that reached the target. Ranks are within
    (group, dataset, setting): losses are compared at the same knob value, never across. Rank 1 is
    the best mean (direction from `higher_is_better`), except that a configuration with any diverged
    seed ranks after every configuration with none (its mean is over its survivors only, which
    flatters it); means less than one test example (`example_sizes`) below the first of their tie
    share its rank, and rows keep the order of their means within it; invalid and failed
    configurations have no rank and keep their reason. vs_canonical and p_holm: the
    configuration's verdict in `significance` (`sig`, computed when not given); "reference" for the
    canonical pairing itself. lr_bound: the run's `lr_bound` (else `lr_bound` of its chosen rate): "at
    least" / "at most" where the optimum lies outside the grid as trained, "" = tuned (or one rate).
    """
    if runs.empty:
        return pd.DataFrame()
    if "setting" not in runs:
        runs = runs.assign(setting=runs["extra"])
    speed = runs if speed is None else speed
    if "setting" not in speed:
        speed = speed.assign(setting=speed["extra"])
    keys = ["group", "dataset", "config"]
    facts = ["task", "activation", "loss", "extra", "setting", "metric", "higher_is_better", "target", "status",
             "reason"]
    table = runs.groupby(keys, sort=True)[facts].first()
    trained = runs[runs["trained"]].assign(
        value=lambda r: r["value"].where(np.isfinite(r["value"])),
        done=lambda r: r["seed_status"] == "done", diverged=lambda r: r["seed_status"] == "diverged")
    fast = speed[speed["trained"]].assign(reached=lambda r: r["epochs_to_target"].notna())
    by, by_speed = trained.groupby(keys, sort=True), fast.groupby(keys, sort=True)
    table = table.join(stats.band(trained, keys, "value").set_index(keys)[["n", "mean", "lo", "hi"]])
    table = within_bounds(table)
    table = table.join(pd.DataFrame({
        "std": by["value"].std(), "seeds": by.size(), "done": by["done"].sum(), "diverged": by["diverged"].sum(),
        "best_val": by["best_val"].mean(), "auc": by["auc"].mean(),
        **({"n_test": by["n_test"].median()} if "n_test" in trained else {})}))
    table = table.join(pd.DataFrame({
        "epochs_median": time_to_target(fast, keys, "epochs_to_target"),
        "seconds_median": time_to_target(fast, keys, "seconds_to_target"), "reached": by_speed["reached"].sum()}))
    if "lr" in fast:
        table = table.join(pd.to_numeric(fast["lr"], errors="coerce").groupby([fast[k] for k in keys]).first()
                           .rename("speed_lr"))
    if "test_bias_pct" in trained and trained["test_bias_pct"].notna().any():  # % of the mean: positive targets
        table = table.join(by["test_bias_pct"].mean().rename("bias"))
    if "lr_bound" in trained:  # the run's own word: its optimum is outside the grid as trained
        table = table.join(by["lr_bound"].first().fillna("").rename("lr_bound"))
    elif "lr_grid" in trained and "chosen_lr" in trained:
        table = table.join(by[["lr_grid", "chosen_lr"]].first().apply(
            lambda r: lr_bound(r["lr_grid"], r["chosen_lr"]), axis=1).rename("lr_bound"))
    counts = ["n", "seeds", "done", "diverged", "reached"]
    table[counts] = table[counts].fillna(0).astype(int)
    table["reason"] = table["reason"].where(table["reason"].apply(lambda v: isinstance(v, str)), "")
    table = table.reset_index()
    higher = table["higher_is_better"].fillna(True).astype(bool)
    table["score"] = np.where(higher, -table["mean"], table["mean"])  # smaller is better
    table["any_diverged"] = table["diverged"] > 0
    # rank by (any seed diverged, score) within each knob value; ties share the smallest rank
    within = ["group", "dataset", "setting"]
    size = example_sizes(runs)
    table["rank"] = np.nan
    for key, t in table[table["score"].notna()].groupby(within, sort=True):
        t = t.sort_values(["any_diverged", "score"])
        ranks = shared_ranks(t["score"].to_numpy(float), size.get(key, math.nan))
        cut = t["any_diverged"].to_numpy()  # the diverged ones rank after every other
        if cut.any() and not cut.all():
            first = int(np.argmax(cut))
            ranks[first:] = first + shared_ranks(t["score"].to_numpy(float)[first:], size.get(key, math.nan))
        table.loc[t.index, "rank"] = ranks
    sig = significance(runs) if sig is None else sig
    verdicts = sig.set_index([*within, "config"])[["verdict", "p_holm"]].rename(columns={"verdict": "vs_canonical"})
    table = table.join(verdicts, on=[*within, "config"]) if len(sig) else table.assign(vs_canonical=None,
                                                                                       p_holm=np.nan)
    references = set(zip(sig["group"], sig["dataset"], sig["setting"], sig["reference"]))
    is_ref = [k in references for k in zip(table["group"], table["dataset"], table["setting"], table["config"])]
    table.loc[is_ref, "vs_canonical"] = "reference"
    # within a shared rank, by mean: the first row of a (dataset, setting) is its best mean
    table = table.sort_values(["group", "dataset", "setting", "rank", "score", "config"], na_position="last")
    return table.drop(columns=["score", "any_diverged"]).reset_index(drop=True)


def counted_values(r: pd.DataFrame) -> pd.Series:
    """The test values of one (group, dataset) with each diverged seed counted as a loss: it takes the
    worst value any seed reached there (a seed that diverged is never better than one that did not)."""
    value = r["value"].where(np.isfinite(r["value"]))
    finite = value.dropna()
    if finite.empty:
        return value
    higher = bool(r["higher_is_better"].fillna(True).iloc[0])
    worst = finite.min() if higher else finite.max()
    return value.mask(r["seed_status"].eq("diverged") & value.isna(), worst)


def bare(config, setting) -> str:
    """A configuration's label without its setting, for a sentence that names the setting once."""
    return config.removesuffix(f" [{setting}]") if setting else config


def family_words(size, reference, quantity, place) -> str:
    """The family of a claim in words: '11 comparisons with sigmoid+bce on breast_cancer (test
    accuracy), Holm-adjusted'."""
    return (f"{size} comparison{'s' if size != 1 else ''} with {reference} {place} ({quantity})"
            + (", Holm-adjusted" if size > 1 else ""))


def place_words(dataset, setting) -> str:
    """'on outliers at dataset.contamination=0.1', 'on digits'."""
    return f"on {dataset}" + (f" at {setting}" if setting else "")


def versus(r, reference, column="value", scale=None, higher_is_better=True, resolution=math.nan,
           budget=None, alternatives=None) -> list:
    """One family: each configuration of `r` (trained rows of one group, dataset and setting) other
    than `reference` (or those in `alternatives`) against it on `column`, paired by seed
    (`stats.compare`), adjusted together (`stats.adjust`). [dict(config, reference, value,
    reference_value, **comparison)], value = the configuration's mean over the paired seeds.

    budget: a column of `r` holding each member's time budget: `column` is then a time to target
    (NaN = never reached) compared by `stats.compare_times`, and value is its median with never = inf
    (`time_to_target`'s statistic).
    """
    rows = r.dropna(subset=["seed"])
    wide = rows.pivot(index="seed", columns="config", values=column)  # [seed, config]
    trained = rows.pivot(index="seed", columns="config", values="trained").notna()  # [seed, config]
    budgets = rows.pivot(index="seed", columns="config", values=budget) if budget else None
    others = [c for c in (alternatives or sorted(wide.columns)) if c != reference and c in wide]
    found = []
    for config in others:
        x, y = wide[config].to_numpy(float), wide[reference].to_numpy(float)
        if budget:
            both = (trained[config] & trained[reference]).to_numpy()
            x, y = x[both], y[both]
            c = stats.compare_times(x, y, budgets[config].to_numpy(float)[both],
                                    budgets[reference].to_numpy(float)[both])
            value, ref_value = (float(np.median(np.where(np.isnan(v), np.inf, v))) if len(v) else math.nan
                                for v in (x, y))
        else:
            try:
                c = stats.compare(x, y, scale or "difference")
            except ValueError as error:  # a ratio of a value <= 0
                c = stats.compare([], [], "difference") | {"note": str(error)}
            pair = np.isfinite(x) & np.isfinite(y)
            value, ref_value = (float(v[pair].mean()) if pair.any() else math.nan for v in (x, y))
        found.append({"config": config, "reference": reference, "value": value, "reference_value": ref_value, **c})
    return stats.adjust(found, higher_is_better, resolution)


SIGNIFICANCE = ["group", "dataset", "setting", "config", "reference", "metric", "higher_is_better", "scale", "n",
                "value", "reference_value", "estimate", "lo", "hi", "level", "p", "p_holm", "family_size", "verdict",
                "note", "family"]


def canonical_families(runs):
    """(group, dataset, setting, rows, reference config) of every family that has its task's
    canonical pairing, over the trained rows."""

    trained = runs[runs["trained"]]
    if "setting" not in trained:
        trained = trained.assign(setting=trained["extra"])
    for (group, dataset), whole in trained.groupby(["group", "dataset"], sort=True):
        pair = CANONICAL.get(whole["task"].iloc[0])
        if pair is None:
            continue
        for setting, r in whole.groupby("setting", sort=True):
            is_ref = (r["activation"] == pair[0]) & (r["loss"] == pair[1])
            if is_ref.any():  # else nothing to compare with: the report says so per dataset
                yield group, dataset, setting, r, r.loc[is_ref, "config"].iloc[0]


def significance(runs: pd.DataFrame) -> pd.DataFrame:
    """Every trained configuration vs the canonical pairing of its dataset's task at the same knob
    value (`setting`), paired by seed, on the test metric: one family per (group, dataset, setting).

    A diverged seed counts as the worst value on the dataset (`counted_values`). The scale is the
    metric's (`stats.scale_of`: a difference, or a ratio for a positive unbounded metric); estimate,
    lo, hi (at `level`, Holm-consistent), p, p_holm, verdict (better | worse | tie | n/a, with the
    reason in `note`) from `versus`; a difference below one test example per replicate is a tie.
    """
    out = []
    size = example_sizes(runs[runs["trained"]]) if runs["trained"].any() else pd.Series(dtype=float)
    for group, dataset, setting, r, ref in canonical_families(runs):
        values = r.assign(value=counted_values(r))
        first = r.iloc[0]
        metric, higher = first["metric"], bool(first["higher_is_better"])
        family = versus(values, ref, scale=stats.scale_of(metric), higher_is_better=higher,
                        resolution=size.get((group, dataset, setting), math.nan))
        words = family_words(len(family), ref, f"test {metric}", place_words(dataset, setting))
        out += [{"group": group, "dataset": dataset, "setting": setting, "metric": metric, "higher_is_better": higher,
                 "family": words, **f} for f in family]
    return pd.DataFrame(out, columns=SIGNIFICANCE)


def speed_significance(speed: pd.DataFrame, budget: pd.Series, column="epochs_to_target") -> pd.DataFrame:
    """`significance` on the time to target (`column` of the `speed` rows: the members at the learning
    rate that reaches the target fastest), fewer epochs being better: a seed that never reached the
    target (diverged included) counts at its run's budget (`budget`: epochs trained per run_id), so
    the ratio is of capped times and `bound` says which way capping moves it (`stats.compare_times`)."""
    out = []
    for group, dataset, setting, r, ref in canonical_families(speed):
        r = r.assign(budget=r["run_id"].map(budget).astype(float))
        family = versus(r, ref, column, higher_is_better=False, budget="budget")
        words = family_words(len(family), ref, f"epochs to val {r['metric'].iloc[0]} target",
                             place_words(dataset, setting))
        out += [{"group": group, "dataset": dataset, "setting": setting, "metric": column, "higher_is_better": False,
                 "family": words, **f} for f in family]
    return pd.DataFrame(out, columns=[*SIGNIFICANCE, "bound", "never_x", "never_y"])


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
    """Performance-profile ratios: rows = problems (a dataset at one setting: the fastest is found
    within a knob value, never across), columns = activation+loss, value = time / fastest time (inf:
    never reached in the median seed, not trained, or not run there)."""
    table = table.assign(pair=table["activation"] + "+" + table["loss"] if "activation" in table
                         else table["config"])
    index = ["dataset", "setting"] if "setting" in table else "dataset"
    t = table.pivot_table(index=index, columns="pair", values=column, aggfunc="first")
    t = t.reindex(columns=sorted(table["pair"].unique())).fillna(np.inf)
    t = t.clip(lower=stats.time_floor(t.to_numpy()))  # a target met at epoch 0: one unit, not 0 (no 0/0)
    best = t.where(np.isfinite(t)).min(axis=1)
    t = t[best.notna()]
    return t.div(best[best.notna()], axis=0)


def pitfall_rows(runs, history) -> pd.DataFrame:
    """Val history of sigmoid+BCE runs on multiclass data with both accuracies (the pitfall), with the
    run's `setting`: it is read per setting, never averaged over one."""
    keys = runs[(runs["task"] == "multiclass") & (runs["activation"] == "sigmoid") & (runs["loss"] == "bce")
                & runs["trained"]]["run_id"].unique()
    if history.empty or not len(keys) or "binary_accuracy" not in history:
        return pd.DataFrame()
    h = history[history["run_id"].isin(keys) & (history["split"] == "val")]
    info = identity(runs, h)
    return pd.DataFrame({"group": info["group"], "dataset": info["dataset"], "setting": info["extra"],
                         "n_classes": info["n_classes"], "seed": h["seed"], "epoch": h["epoch"],
                         "accuracy": h["accuracy"], "binary_accuracy": h["binary_accuracy"]})
