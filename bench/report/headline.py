"""What opens each preset on the page: its verdict (one sentence) and its head-to-head table (one row
per dataset or setting: the reference, the alternative the question names, both means, the paired
difference with its interval, the adjusted p, better | worse | tie | n/a, and the family in words).

`answers.answers(...)` may give both (`verdict`, `head_to_head`); `complete(answer, runs, table)` keeps
what it gives and derives what it lacks from the same paired test the significance tables run
(`stats.paired_difference` on the replicates, a diverged replicate counted as the worst value,
`stats.holm` over the comparisons of one dataset at one setting), so this module adds no statistics.

    STORY                          the presets in reading order; other groups follow, by name
    story_order(groups)            the groups in that order
    complete(answer, runs, table)  the answer with `verdict` and `head_to_head`
"""
import math

import pandas as pd

from bench import stats
from bench.report.tables import ALPHA, counted_values, fmt

STORY = ("saturation", "binary_vs_categorical", "classification", "regression", "outliers", "demand")
# the reference and the alternative each preset's question names, as (activation, loss); None = the task's
# canonical pairing (reference) or the best-ranked other configuration (alternative, a selection);
# "*" = the same activation as the row (demand: each output activation on its own)
PAIRS = {"saturation": (("sigmoid", "bce"), ("sigmoid", "mse")),
         "outliers": (None, ("linear", "huber")),
         "demand": (("*", "mse"), ("*", "mape"))}
PAGE_HEADER = ["where", "reference: mean", "alternative: mean", "alternative − reference (interval)", "p (Holm)",
               "verdict"]
# the answers' head-to-head columns (answers.HEAD_TO_HEAD), those this module derives where they lack it
COLUMNS = ["dataset", "setting", "where", "quantity", "metric", "higher_is_better", "reference", "alternative",
           "ref_mean", "alt_mean", "scale", "estimate", "lo", "hi", "level", "amount", "interval", "n", "p_holm",
           "verdict", "family", "note"]


def story_order(groups) -> list:
    groups = list(dict.fromkeys(groups))
    return [g for g in STORY if g in groups] + sorted(g for g in groups if g not in STORY)


def _label(config, setting):
    return config.removesuffix(f" [{setting}]") if setting else config


def head_to_head(runs, table, group) -> pd.DataFrame:
    """One row per dataset and setting (and activation, where the preset compares within one): the
    reference against the alternative of PAIRS[group], their family adjusted by Holm."""
    from bench.losses import CANONICAL  # here, not at import: bench.losses imports torch

    ref_spec, alt_spec = PAIRS.get(group, (None, None))
    out = []
    trained = runs[runs["trained"]]
    for dataset, whole in trained.groupby("dataset", sort=True):
        whole = whole.assign(value=counted_values(whole))
        canonical = CANONICAL.get(whole["task"].iloc[0])
        blocks = [(a, b) for a, b in whole.groupby(["setting", "activation"] if ref_spec and ref_spec[0] == "*"
                                                     else ["setting"], sort=True)]
        for key, rows in blocks:
            setting = key[0] if isinstance(key, tuple) else key
            activation = key[1] if isinstance(key, tuple) and len(key) > 1 else None
            want = (activation, ref_spec[1]) if ref_spec and ref_spec[0] == "*" else ref_spec or canonical
            is_ref = (rows["activation"] == want[0]) & (rows["loss"] == want[1]) if want else rows["loss"].isna()
            if not is_ref.any():
                continue
            ref = rows.loc[is_ref, "config"].iloc[0]
            wide = rows.dropna(subset=["seed"]).pivot_table(index="seed", columns="config", values="value",
                                                            aggfunc="first")  # [replicate, config]
            others = sorted(set(rows.loc[~is_ref, "config"]))
            family = {c: stats.paired_difference(wide[c].to_numpy(), wide[ref].to_numpy()) for c in others}
            if not family:
                continue
            adjusted = dict(zip(others, stats.holm([family[c]["p"] for c in others])))
            ranked = table[(table["dataset"] == dataset) & (table["setting"] == setting)].set_index("config")
            if alt_spec:
                wanted = (activation or alt_spec[0], alt_spec[1])
                hits = rows[(rows["activation"] == wanted[0]) & (rows["loss"] == wanted[1])]["config"]
                if hits.empty:
                    continue
                alt, selected = hits.iloc[0], False
            else:
                alt, selected = ranked["rank"].reindex(others).sort_values().index[0], len(others) > 1
            higher = bool(ranked.at[ref, "higher_is_better"])
            diff, p = family[alt], adjusted[alt]
            verdict = "n/a" if math.isnan(p) else ("better" if (diff["diff"] > 0) == higher else "worse") \
                if p < ALPHA else "tie"
            where = " · ".join(x for x in (dataset, setting, activation and f"{activation} output") if x)
            metric = ranked.at[ref, "metric"]
            interval = "n/a" if math.isnan(diff["lo"]) else \
                f"95 % CI (unadjusted) {fmt(diff['lo'], 3, pad=True)} to {fmt(diff['hi'], 3, pad=True)}"
            out.append({"dataset": dataset, "setting": setting, "where": where, "quantity": f"test {metric}",
                        "metric": metric, "higher_is_better": higher, "reference": _label(ref, setting),
                        "alternative": _label(alt, setting), "ref_mean": ranked.at[ref, "mean"],
                        "alt_mean": ranked.at[alt, "mean"], "scale": "difference", "estimate": diff["diff"],
                        "lo": diff["lo"], "hi": diff["hi"], "level": 0.95, "amount": f"{diff['diff']:+.3g}",
                        "interval": interval, "n": diff["n"], "p_holm": p, "verdict": verdict,
                        "family": (f"best-ranked of {len(others)}, selected; " if selected else "")
                        + f"Holm over the {len(others)} comparison{'s' if len(others) > 1 else ''} with "
                          f"{_label(ref, setting)} here", "note": ""})
    return pd.DataFrame(out, columns=COLUMNS)


def verdict_from(h2h) -> str:
    """One sentence counting the head-to-head rows: how often the alternative is better, worse or not
    distinguishable from the reference (Hui & Belkin's headline count)."""
    if h2h.empty:
        return "No head-to-head comparison: the configurations this question compares were not both trained."
    counts = h2h["verdict"].value_counts()
    n = len(h2h)
    alts, refs = list(dict.fromkeys(h2h["alternative"])), list(dict.fromkeys(h2h["reference"]))
    if h2h["family"].str.startswith("best-ranked").any():
        who = "The best-ranked other configuration (a selection) against the canonical pairing"
    elif len(alts) == 1 and len(refs) == 1:
        who = f"{alts[0]} against {refs[0]}"
    elif set(alts) & set(refs):  # the reference changes with the task (binary_vs_categorical)
        who = f"{' and '.join(sorted(set(alts) | set(refs)))}, each against the other where that one is canonical"
    elif len({a.split("+", 1)[1] for a in alts}) == 1 and len({r.split("+", 1)[1] for r in refs}) == 1:
        who = f"{alts[0].split('+', 1)[1]} against {refs[0].split('+', 1)[1]} on each output"  # demand
    else:
        who = f"{' / '.join(alts)} against {' / '.join(refs)} (row by row)"
    parts = [f"{word} in {counts[key]}" for key, word in (("better", "better"), ("worse", "worse"),
                                                         ("tie", "not distinguishable"), ("n/a", "untestable"))
             if counts.get(key, 0)]
    one_dataset = h2h["dataset"].nunique() == 1
    places = "setting" if one_dataset and h2h["setting"].ne("").any() else \
        "dataset" if h2h["dataset"].is_unique else "comparison"
    metric = ", ".join(h2h["quantity"].unique())
    return (f"{who}: " + ", ".join(parts) + f" of {n} {places}{'s' if n > 1 else ''} ({metric}, paired by "
            "replicate, Holm-adjusted).")


def complete(answer, runs, table) -> dict:
    """The answer with `verdict` and `head_to_head`: its own where it has them, else derived here."""
    answer = dict(answer)
    if answer.get("head_to_head") is None:
        answer["head_to_head"] = head_to_head(runs, table, answer["group"])
    if not answer.get("verdict"):
        answer["verdict"] = verdict_from(answer["head_to_head"])
    return answer


def rows_for_page(h2h) -> tuple:
    """(rows, notes): the head-to-head as table rows, bold (class "holds") where the difference holds
    after adjustment, the dataset left out of `where` when the preset has one; and the rows' notes (why
    a tie or n/a), 'where: note', for the fold under the table."""
    rows, notes = [], []
    one = h2h["dataset"].nunique() == 1
    for _, r in h2h.iterrows():
        where = r["where"].removeprefix(f"{r['dataset']} · ") if one and r["where"] != r["dataset"] else r["where"]
        rows.append({"cls": "holds" if r["verdict"] in ("better", "worse") else "", "cells": [
            where, f"{r['reference']}: {fmt(r['ref_mean'], 4, pad=True)}",
            f"{r['alternative']}: {fmt(r['alt_mean'], 4, pad=True)}", f"{r['amount']} ({r['interval']})",
            fmt(r["p_holm"], 2), r["verdict"]]})
        if r.get("note"):
            notes.append(f"{where}: {r['note']}")
    return rows, notes
