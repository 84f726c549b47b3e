"""Generated sentences: each finding states its numbers, their intervals and, for a comparison,
its family and adjusted verdict (`bench.stats`, through `bench.report.tables`; worded by
`bench.report.claims`).

    findings(runs, table, sig, history, speed, speed_sig)
                                         {group: [(title, [sentence, ...]), ...]}, one entry per
                                         (dataset, knob value): losses compared at the same setting
    pitfall_findings(pit)                {group: {title: sentence}}, one per (dataset, setting)

The numbers come from `bench.report.tables`; this module only words them.
"""
import math

import numpy as np
import pandas as pd

from bench import stats
from bench.metric_facts import CANONICAL
from bench.report import claims
from bench.report.tables import bare, budgets, fmt, fmt_apart, fmt_ci, speed_significance


def speed_findings(table: pd.DataFrame, ssig: pd.DataFrame, budget: pd.Series, run_ids) -> list:
    """Sentences on epochs to target for one (group, dataset, setting), read at the members whose
    learning rate reaches the target fastest: the fastest (selected from N, said so) and the slowest
    that gets there, each against the canonical pairing from its speed family (`ssig`:
    `tables.speed_significance`, never reached counted at the budget)."""
    ok = table[table["seeds"] > 0]
    if ok.empty:
        return []
    first = ok.iloc[0]
    metric, higher, target = first["metric"], bool(first["higher_is_better"]), first["target"]
    reaching = ok[np.isfinite(ok["epochs_median"])].sort_values(["epochs_median", "rank"])
    goal = f"val {metric} {'≥' if higher else '≤'} {fmt(target)}"
    if reaching.empty:
        epochs = budget.reindex(list(run_ids)).max()
        return [f"No configuration reaches {goal} in its median seed (within {fmt(epochs)} epochs)."]
    fast = reaching.iloc[0]
    text = (f"{fast['config']} reaches {goal} first: in {_epochs(fast['epochs_median'])} (median over "
            f"{fast['seeds']} seeds; the fastest of {len(ok)}, selected after the fact).")
    canonical = ssig["reference"].iloc[0] if len(ssig) else None
    if canonical is not None:
        ref = ok[ok["config"] == canonical].iloc[0]
        ref_said = _epochs(ref["epochs_median"]) if np.isfinite(ref["epochs_median"]) else "never"
        if fast["config"] != canonical:
            c = ssig[ssig["config"] == fast["config"]].iloc[0].to_dict()
            text += (f" Against the canonical {canonical} ({ref_said}), it needs {claims.amount(c)} as many epochs "
                     f"({claims.evidence(c)}): {claims.SPEED_WORDS[c['verdict']]}.")
        slow = reaching.iloc[-1]["config"]
        if slow not in (fast["config"], canonical):
            c = ssig[ssig["config"] == slow].iloc[0].to_dict()
            text += (f" The slowest that gets there in its median seed, {slow}, takes "
                     f"{fmt(reaching.iloc[-1]['epochs_median'])}: {claims.amount(c)} the canonical's epochs "
                     f"({claims.evidence(c)}): {claims.SPEED_WORDS[c['verdict']]}.")
    never = ok[~np.isfinite(ok["epochs_median"])]["config"].tolist()
    if never:
        text += (f" {len(never)} configuration{'s' if len(never) > 1 else ''} never reach{'' if len(never) > 1 else 'es'}"
                 f" it in the median seed: {_listing(never)}.")
    return [text]


def _epochs(n) -> str:
    """'1 epoch', '2.5 epochs'."""
    return f"{fmt(n)} epoch{'' if n == 1 else 's'}"


def _listing(names, most=6) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def bias_findings(runs: pd.DataFrame) -> list:
    """Regression: configurations whose forecast bias (mean signed test error, % of the mean target)
    differs from 0, each tested against 0 (`stats.compare` with zeros), Holm-adjusted over the
    configurations of the (dataset, setting) in `runs`; beside them the canonical linear+mse. This is
    where MAPE's known under-forecast shows; nothing is said when no configuration is biased."""
    if "test_bias_pct" not in runs or runs["test_bias_pct"].notna().sum() == 0:  # (positive targets only)
        return []
    configs = sorted(runs.loc[runs["test_bias_pct"].notna(), "config"].unique())
    values = [runs.loc[runs["config"] == c, "test_bias_pct"].dropna().to_numpy(float) for c in configs]
    tested = stats.adjust([stats.compare(v, np.zeros_like(v)) for v in values], higher_is_better=None)
    found = sorted(zip(configs, tested), key=lambda pair: pair[1]["estimate"])

    def describe(rows):
        return ", ".join(f"{config} {c['estimate']:+.1f} % ({claims.interval(c)})" for config, c in rows)

    under = [(k, c) for k, c in found if c["verdict"] == "lower"]
    over = [(k, c) for k, c in found if c["verdict"] == "higher"]
    if not under and not over:
        return []
    parts = [f"under-forecasting: {describe(under)}"] if under else []
    parts += [f"over-forecasting: {describe(over)}"] if over else []
    m = tested[0]["family_size"]
    text = (f"Forecast bias (mean signed test error in % of the mean target, each against 0; Holm-adjusted over "
            f"{m} configuration{'s' if m > 1 else ''}): " + "; ".join(parts) + ".")
    canonical = [(k, c) for k, c in found if k.split(" [")[0] == "+".join(CANONICAL["regression"])
                 and c["verdict"] not in ("lower", "higher")]
    if canonical:
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


def findings(runs, table, sig, history, speed=None, speed_sig=None) -> dict:
    """Generated sentences: {group: [(title, [sentence, ...]), ...]} with the numbers behind them, one
    entry per (dataset, setting): "outliers · dataset.contamination=0.3". speed: the members at the
    learning rate that reaches the target fastest (default: `runs`); speed_sig: their
    `tables.speed_significance` (computed when not given)."""
    budget = budgets(history)
    speed = runs if speed is None else speed
    speed_sig = speed_significance(speed, budget) if speed_sig is None else speed_sig
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
            here = ((sig["group"] == group) & (sig["dataset"] == dataset) & (sig["setting"] == setting))
            s = sig[here & sig["p_holm"].notna()]
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
                mine = sig[here & (sig["config"] == best["config"])]
                if len(mine):  # the best is a selection: it is judged with its whole family
                    m = mine.iloc[0].to_dict()
                    text += (f" The best of {len(ok)}, selected after the fact, against it: {claims.amount(m)} "
                             f"({claims.evidence(m)}): "
                             f"{claims.verdict(m, bare(best['config'], setting), bare(c['config'], setting))}.")
            sentences.append(text)
            sentences.extend(gap_finding(best))
            fast = speed_sig[(speed_sig["group"] == group) & (speed_sig["dataset"] == dataset)
                             & (speed_sig["setting"] == setting)]
            sentences.extend(speed_findings(t, fast, budget, r["run_id"].unique()))
            sentences.extend(bias_findings(r))
            if len(s):
                counts = s["verdict"].value_counts()
                small = int(s["note"].str.contains("test example").sum())
                better = s[s["verdict"] == "better"]["config"].tolist()
                text = (f"Against {s['reference'].iloc[0]}, paired by seed with Holm correction over "
                        f"{len(s)} comparison{'s' if len(s) > 1 else ''}: {counts.get('worse', 0)} worse, "
                        f"{counts.get('better', 0)} better, {counts.get('tie', 0)} not distinguishable"
                        + (f" ({small} of them less than one test example per replicate apart)" if small else "")
                        + ".")
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
                                 "worst test value at its setting in the paired comparisons (and as never "
                                 "reaching the target).")
            for status, bad in t[~t["status"].isin(["done", "diverged"])].groupby("status", sort=True):
                names = bad["config"].tolist()
                sentences.append(f"{len(names)} configuration{'s' if len(names) > 1 else ''} {status}, not trained "
                                 f"(the reasons are in the ranking table): {_listing(names)}.")
            out.setdefault(group, []).append((dataset_title, sentences))
            sentences = []
    return out


def pitfall_findings(pit: pd.DataFrame) -> dict:
    """{group: {title: sentence}}: binary vs categorical val accuracy at the first and last epoch, one
    sentence per (dataset, setting), never averaged over settings; title as in `findings`
    ("digits · model.out_bias_offset=4")."""
    out = {}
    if pit.empty:
        return out
    pit = pit if "setting" in pit else pit.assign(setting="")
    for (group, dataset, setting), h in pit.groupby(["group", "dataset", "setting"], sort=True):
        mean = h.groupby("epoch")[["accuracy", "binary_accuracy"]].mean()
        (first_b, first_a), (last_b, last_a) = (fmt_apart(row["binary_accuracy"], row["accuracy"])
                                                for row in (mean.iloc[0], mean.iloc[-1]))
        last = f"{last_b} vs {last_a}" if last_b != last_a else f"{last_b} for both (equal to 6 digits)"
        out.setdefault(group, {})[f"{dataset} · {setting}" if setting else dataset] = (
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
    rate at an edge of the grid as trained (its extensions included: the cap was hit, so the optimum is
    "at least" or "at most" that rate and the configuration is not called tuned), by edge, and which
    ones per dataset ([] when none did)."""
    edge = sens[sens["at_edge"]]
    if edge.empty:
        return []
    low, high = edge["grid"].map(min), edge["grid"].map(max)
    sides = [(f"the {'top' if lr == hi else 'bottom'} of the grid as trained, lr {fmt(lr, 3)} of {fmt(lo, 3)} to "
              f"{fmt(hi, 3)} (the optimum is {'at least' if lr == hi else 'at most'} that)",
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
