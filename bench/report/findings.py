"""Generated sentences: each finding states its numbers and their 95 % intervals over seeds.

    findings(runs, table, sig, history)  {group: [(title, [sentence, ...]), ...]}, one entry per
                                         (dataset, knob value): losses compared at the same setting
    pitfall_findings(pit)                {group: {dataset: sentence}}

The numbers come from `bench.report.tables`; this module only words them.
"""
import math

import numpy as np
import pandas as pd

from bench import stats
from bench.losses import CANONICAL
from bench.report.tables import budgets, fmt, fmt_apart, fmt_ci, seed_times


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
    fast_times = seed_times(runs[runs["config"] == fast["config"]], "epochs_to_target")
    text = (f"{fast['config']} reaches {goal} first: in {fmt(fast['epochs_median'])} epochs "
            f"(median over {fast['seeds']} seeds).")
    pair = "+".join(CANONICAL.get(first["task"], ("", "")))
    canon = ok[(ok["activation"] + "+" + ok["loss"]) == pair]["config"]
    canonical = canon.iloc[0] if len(canon) else pair
    others = []
    if canonical in set(ok["config"]) and canonical != fast["config"]:
        others.append(canonical)
    slow = reaching.iloc[-1]["config"]
    if slow not in (fast["config"], *others):
        others.append(slow)
    for config in others:
        row = ok[ok["config"] == config].iloc[0]
        times = seed_times(runs[runs["config"] == config], "epochs_to_target")
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
    if "test_bias_pct" not in runs or runs["test_bias_pct"].notna().sum() == 0:  # (positive targets only)
        return []
    b = stats.band(runs[runs["test_bias_pct"].notna()], "config", "test_bias_pct").sort_values("mean")

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
    canonical = b[b["config"].str.split(" [", regex=False).str[0] == "+".join(CANONICAL["regression"])]
    if len(canonical) and canonical.index[0] not in under.index.union(over.index):
        text += f" For comparison, {describe(canonical)}."
    return [text]


GAP = 0.15  # validation and test "disagree markedly" when they differ by more than 15 %


def gap_finding(best) -> list:
    """A sentence when the best configuration's mean best validation value and mean test value differ
    by more than GAP (relative): the validation split then stands in poorly for the test split."""
    val, test = best["best_val"], best["mean"]
    if not (np.isfinite(val) and np.isfinite(test)) or val == 0 or abs(test / val - 1) <= GAP:
        return []
    return [f"Validation and test disagree markedly: {best['config']} reaches a best validation {best['metric']} of "
            f"{fmt(val)} (mean over seeds) but a test {best['metric']} of {fmt(test)}, {fmt(test / val, 3)}× as much; "
            "validation numbers (targets, epochs to target, learning-rate choice) do not carry over to test here, "
            "so read the rankings on test."]


def findings(runs, table, sig, history) -> dict:
    """Generated sentences: {group: [(title, [sentence, ...]), ...]} with the numbers behind them, one
    entry per (dataset, setting): "outliers · dataset.contamination=0.3"."""
    budget = budgets(history)
    out = {}
    for group, g in table.groupby("group", sort=True):
        sentences = []
        for (dataset, setting), t in g.groupby(["dataset", "setting"], sort=True):
            dataset_title = f"{dataset} · {setting}" if setting else dataset
            r = runs[(runs["group"] == group) & (runs["dataset"] == dataset) & (runs["setting"] == setting)]
            ok = t[t["n"] > 0]
            if ok.empty:
                out.setdefault(group, []).append((dataset_title, ["No configuration finished with a test value."]))
                continue
            best = ok.iloc[0]
            metric = best["metric"]
            direction = "higher" if best["higher_is_better"] else "lower"
            text = (f"Best final test {metric} ({direction} is better): {best['config']} at "
                    f"{fmt(best['mean'], pad=True)} (95 % CI {fmt_ci(best['lo'], best['hi'])}, {best['n']} seeds).")
            canonical = "+".join(CANONICAL.get(best["task"], ("", "")))
            canon = ok[(ok["activation"] + "+" + ok["loss"]) == canonical]
            if len(canon) and canon.iloc[0]["config"] != best["config"]:
                c = canon.iloc[0]
                text += (f" The canonical {c['config']} scores {fmt(c['mean'], pad=True)} "
                         f"({fmt_ci(c['lo'], c['hi'])}), rank {int(c['rank'])} of {len(ok)}.")
            sentences.append(text)
            sentences.extend(gap_finding(best))
            sentences.extend(speed_findings(r, t, budget))
            sentences.extend(bias_findings(r))
            s = sig[(sig["group"] == group) & (sig["dataset"] == dataset) & (sig["setting"] == setting)
                    & sig["p_holm"].notna()]
            if len(s):
                worse = s[s["verdict"] == "worse"]["config"].tolist()
                better = s[s["verdict"] == "better"]["config"].tolist()
                reference = s["reference"].iloc[0]
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
                                 f"diverged (loss NaN/inf): {parts}. A configuration with a diverged seed ranks "
                                 "after every configuration without one, and each diverged seed counts as the "
                                 "worst test value on the dataset in the paired comparisons.")
            for status, bad in t[~t["status"].isin(["done", "diverged"])].groupby("status", sort=True):
                names = bad["config"].tolist()
                sentences.append(f"{len(names)} configuration{'s' if len(names) > 1 else ''} {status}, not trained "
                                 f"(the reasons are in the ranking table): {_listing(names)}.")
            out.setdefault(group, []).append((dataset_title, sentences))
            sentences = []
    return out


def pitfall_findings(pit: pd.DataFrame) -> dict:
    """{group: {dataset: sentence}}: binary vs categorical val accuracy at the first and last epoch."""
    out = {}
    if pit.empty:
        return out
    for (group, dataset), h in pit.groupby(["group", "dataset"], sort=True):
        mean = h.groupby("epoch")[["accuracy", "binary_accuracy"]].mean()
        (first_b, first_a), (last_b, last_a) = (fmt_apart(row["binary_accuracy"], row["accuracy"])
                                                for row in (mean.iloc[0], mean.iloc[-1]))
        last = f"{last_b} vs {last_a}" if last_b != last_a else f"{last_b} for both (equal to 6 digits)"
        out.setdefault(group, {})[dataset] = (
            f"sigmoid+bce shows val binary_accuracy {first_b} at epoch {mean.index[0]} (categorical accuracy "
            f"{first_a}) and {last} at epoch {mean.index[-1]} (mean over seeds): element-wise accuracy over "
            "one-hot outputs is not the classification accuracy.")
    return out



def robustness_findings(summary: pd.DataFrame) -> dict:
    """{group: {dataset: sentence}} from `figures.robustness.summary`: at the highest label noise, the
    canonical pairing's best-epoch vs last-epoch clean metric and the losses' clean test metric at the
    last epoch; without noise, the same test metric (95 % t intervals over seeds); each with its
    learning rate where the group has several (tuned: each configuration's chosen one)."""
    out = {}
    for (group, dataset), s in summary.groupby(["group", "dataset"], sort=True):
        canonical = "+".join(CANONICAL.get(s["task"].iloc[0], ("", "")))
        metric, top = s["metric"].iloc[0], s["noise"].max()
        several = s["lr"].nunique() > 1

        def scores(rows):
            return "; ".join(f"{r['pair']} {fmt(r['test'], 3, pad=True)} ({fmt_ci(r['test_lo'], r['test_hi'], 3)}"
                             + (f", lr {fmt(r['lr'], 3)})" if several else ")") for _, r in rows.iterrows())

        high, clean = s[s["noise"] == top], s[s["noise"] == s["noise"].min()]
        text = f"At {top:.0%} symmetric label noise"
        ref = high[high["pair"] == canonical]
        if len(ref):
            c = ref.iloc[0]
            text += (f", {canonical}'s clean validation {metric} is {fmt(c['best'], 3, pad=True)} at its best epoch and "
                     f"{fmt(c['last'], 3, pad=True)} at the last (memorisation gap {fmt(c['gap'], 3, pad=True)}, 95 % CI "
                     f"{fmt_ci(c['gap_lo'], c['gap_hi'], 3)})")
        text += f"; clean test {metric} at the last epoch, best first: {scores(high)}."
        if clean["noise"].iloc[0] < top:
            text += f" At {clean['noise'].iloc[0]:.0%} noise: {scores(clean)}."
        out.setdefault(group, {})[dataset] = text
    return out


def label_noise_answer(runs, table, history) -> list:
    """The label_noise preset's answer (bench.report.answers.ANSWERS): the robustness finding per
    dataset, [(sentence, section)], from the chosen runs and their members' history."""
    from bench.report.figures import robustness

    frame = robustness.robustness_frame(runs, history)
    if frame.empty:
        return []
    said = robustness_findings(robustness.summary(frame))
    return [(f"On {dataset}: {text}", "robustness") for by_dataset in said.values()
            for dataset, text in by_dataset.items()]


TOLERANCE = 0.05  # robustness: learning rates whose mean validation value is within 5 % of the best


def tuning_findings(sens) -> dict:
    """Tuned runs: {group: [(title, [sentence, ...])]}: first, when any configuration's chosen learning
    rate sits at an edge of its grid, one grouped warning (`edge_warning`); then per (dataset, setting),
    how forgiving each configuration is (the learning rates within TOLERANCE of its best validation
    value). A group whose grid has one learning rate is left out (nothing was tuned)."""
    out = {}
    sens = sens[sens["grid"].map(len) > 1] if len(sens) else sens
    for group, g in sens.groupby("group", sort=True):
        warning = edge_warning(g)
        if warning:
            out[group] = [("Learning rate at the edge of the grid", warning)]
        for (dataset, setting), s in g.groupby(["dataset", "setting"], sort=True):
            parts = []
            for _, r in s.sort_values("config").iterrows():
                near = r["near"]
                span = "none" if not len(near) else (f"lr {fmt(near.min(), 3)}" if len(near) == 1 else
                                                     f"lr {fmt(near.min(), 3)} to {fmt(near.max(), 3)}")
                parts.append(f"{r['config']} {span} ({len(near)} of {len(r['grid'])} grid values)")
            out.setdefault(group, []).append((f"{dataset} · {setting}" if setting else dataset, [
                f"Robustness to the learning rate: the learning rates whose mean final validation "
                f"{s['metric'].iloc[0]} is within {TOLERANCE:.0%} of the configuration's best: " + "; ".join(parts)
                + ". A learning rate with a diverged seed counts as outside."]))
    return out


def edge_warning(sens) -> list:
    """One sentence for one group's `tuned.sensitivity` rows: how many configurations chose a learning
    rate at an edge of the grid, by edge, and which ones per dataset ([] when none did)."""
    edge = sens[sens["at_edge"]]
    if edge.empty:
        return []
    low, high = edge["grid"].map(min), edge["grid"].map(max)
    sides = [(f"the {'top' if lr == hi else 'bottom'} of the grid, lr {fmt(lr, 3)} of {fmt(lo, 3)} to {fmt(hi, 3)}",
              "; ".join(f"on {dataset} {', '.join(sorted(d['config']))}" for dataset, d in e.groupby("dataset")), len(e))
             for (lr, lo, hi), e in edge.groupby([edge["chosen_lr"], low, high], sort=True)]
    n = len(edge)
    them = "them" if n > 1 else "it"
    if len(sides) == 1:
        side, where, _ = sides[0]
        return [f"Warning: {n} of {len(sens)} tuned configurations chose {side}, so the grid was too narrow to call "
                f"{them} tuned: {where}."]
    return [f"Warning: {n} of {len(sens)} tuned configurations chose a learning rate at the edge of the grid, so the "
            f"grid was too narrow to call {them} tuned: "
            + "; ".join(f"{k} chose {side} ({where})" for side, where, k in sides) + "."]
