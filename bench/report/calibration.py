"""The calibration preset's answer, its page section and the numbers behind them.

    comparisons(runs)                 per dataset: every loss against plain CCE on test ECE and NLL, before
                                      and after temperature scaling, paired by replicate, Holm over the dataset
    nll_rise(history, run_ids)        CCE's validation NLL from its lowest epoch to the last, with accuracy
    answer(runs, table, history)      [(sentence, section)]: bench.report.answers.ANSWERS["calibration"]
    section(g)                        the page's blocks: the table of calibration figures, the reliability diagram

The statistics are bench.stats': `compare` on the replicates (a difference for ECE and accuracy, a ratio for
NLL) and `adjust` (Holm over a dataset's comparisons, each interval at the level Holm tested it at), called in
`comparisons`, `nll_rise` and `_scaling_change` only; the sentences word their results. Published numbers: REFERENCES (Guo et al. 2017, Mukhoti et al. 2020, Mueller et al. 2019).
"""
import math

import numpy as np
import pandas as pd

from bench import stats
from bench.report import claims
from bench.report.tables import ALPHA, fmt, fmt_ci

TEMPERATURE_RANGE = (1e-2, 1e2)  # bench.calibration.TEMPERATURE_RANGE (this module stays torch-free; a test checks)

REFERENCE = ("softmax", "cce")  # what every loss is compared with
# (column, words): the calibration figures compared, before and after temperature scaling
FIGURES = (("test_ece", "ECE"), ("test_log_loss", "NLL"), ("test_ece_scaled", "ECE after scaling"),
           ("test_log_loss_scaled", "NLL after scaling"))


def _by_seed(rows, column) -> pd.Series:
    return rows.dropna(subset=["seed"]).groupby("seed")[column].first()


def _paired(rows, config, reference, column) -> dict:
    """stats.compare of `column`, config against reference, over the replicates both have, on the scale of
    the figure's metric (`stats.scale_of`: ECE and accuracy a difference, NLL a ratio)."""
    both = pd.concat([_by_seed(rows[rows["config"] == config], column),
                      _by_seed(rows[rows["config"] == reference], column)], axis=1, join="inner")
    metric = column.removeprefix("test_").removesuffix("_scaled")
    return stats.compare(both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float), stats.scale_of(metric))


def comparisons(runs) -> pd.DataFrame:
    """One row per (dataset, config, figure): means of config and CCE, the paired comparison (estimate, lo,
    hi, level, n, p) and p_holm and verdict (lower is better) over every comparison of the dataset (the
    FIGURES of every loss: one family); the accuracy difference comes along at 95 %, unadjusted (it
    qualifies "at equal accuracy", it is no claim of its own)."""
    out = []
    trained = runs[runs["trained"]]
    for dataset, d in trained.groupby("dataset", sort=True):
        ref = d[(d["activation"] == REFERENCE[0]) & (d["loss"] == REFERENCE[1])]
        if ref.empty or "test_ece" not in d:
            continue
        reference = ref["config"].iloc[0]
        family = []
        for config in sorted(set(d["config"]) - {reference}):
            accuracy = _paired(d, config, reference, "test_accuracy")
            for column, words in FIGURES:
                if column not in d:
                    continue
                row = {"dataset": dataset, "config": config, "reference": reference, "column": column,
                       "figure": words, "mean": _by_seed(d[d["config"] == config], column).mean(),
                       "ref_mean": _by_seed(ref, column).mean(), **_paired(d, config, reference, column),
                       "acc_diff": accuracy["estimate"], "acc_lo": accuracy["lo"], "acc_hi": accuracy["hi"]}
                family.append(row)
        out.extend(stats.adjust(family, higher_is_better=False))
    return pd.DataFrame(out)


def nll_rise(history, run_ids) -> dict | None:
    """CCE's validation NLL and accuracy over epochs (the chosen members of `run_ids`): the epoch of the mean
    curve's lowest NLL, and per replicate the change from its lowest epoch to the last in NLL and accuracy
    (stats.compare, last − lowest, 95 %). Each replicate's lowest epoch is read off the mean curve of the
    other replicates (leave one out), so that no replicate's own noise picks the epoch its change starts
    from; None without curves or with fewer than 3 replicates."""
    if history.empty or "log_loss" not in history:
        return None
    h = history[history["run_id"].isin(run_ids) & (history["split"] == "val")]
    nll = h.pivot_table(index="epoch", columns="seed", values="log_loss")  # [epoch, seed]
    acc = h.pivot_table(index="epoch", columns="seed", values="accuracy")
    if nll.shape[1] < 3:
        return None
    last = nll.index.max()
    lowest = {s: nll.drop(columns=s).mean(axis=1).idxmin() for s in nll.columns}
    before = np.array([nll.at[lowest[s], s] for s in nll.columns])
    acc_before = np.array([acc.at[lowest[s], s] for s in nll.columns])
    return {"epoch": int(nll.mean(axis=1).idxmin()), "last": int(last),
            "nll": stats.compare(nll.loc[last].to_numpy(float), before),
            "accuracy": stats.compare(acc.loc[last].to_numpy(float), acc_before),
            "nll_low": float(nll.mean(axis=1).min()), "nll_last": float(nll.loc[last].mean())}


# ---------------------------------------------------------------------------------------------
# the answer

def _pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f} %"


def _points(diff) -> str:
    """A difference of ECEs in percentage points with its interval at its level: '−19.6 points (99.4 % CI
    −22 to −17)'."""
    return (f"{100 * diff['estimate']:+.1f} points ({claims.level_words(diff['level'])} % CI "
            f"{fmt_ci(100 * diff['lo'], 100 * diff['hi'], 2, pad=False)})")


def _sides(c, figure) -> tuple:
    """(lower, higher, neither) configurations for one figure of one dataset's family, by their adjusted
    verdicts (lower is better)."""
    f = c[c["figure"] == figure]
    return f[f["verdict"] == "better"], f[f["verdict"] == "worse"], f[~f["verdict"].isin(["better", "worse"])]


def _listing(rows, ece) -> str:
    show = _pct if ece else (lambda v: fmt(v, 3, pad=True))
    return ", ".join(f"{r['config']} {show(r['mean'])}" for _, r in rows.sort_values("mean").iterrows()) or "none"


def _figure_sentence(c, figure, ece=True) -> str:
    lower, higher, neither = _sides(c, figure)
    ref = c[c["figure"] == figure]["ref_mean"].iloc[0]
    show = _pct if ece else (lambda v: fmt(v, 3, pad=True))
    text = f"test {figure} of {c['reference'].iloc[0]} {show(ref)}; lower: {_listing(lower, ece)}"
    if len(higher):
        text += f"; higher: {_listing(higher, ece)}"
    return text + (f"; not distinguishable from it: {len(neither)} of {len(c[c['figure'] == figure])}"
                   if len(neither) else "")


def _accuracy_words(c) -> str:
    a = c.drop_duplicates("config")
    differ = a[(a["acc_lo"] > 0) | (a["acc_hi"] < 0)]
    if differ.empty:
        return "no loss's test accuracy differs from cce's: every paired interval includes 0, unadjusted"
    return "test accuracy differs from cce's for " + ", ".join(
        f"{r['config']} ({100 * r['acc_diff']:+.1f} points, 95 % CI "
        f"{fmt_ci(100 * r['acc_lo'], 100 * r['acc_hi'], 2, pad=False)})" for _, r in differ.iterrows())


def _published(c, scaling) -> str:
    """The three published results against this dataset's numbers."""
    ref = c["reference"].iloc[0]
    said = []
    if scaling is not None:
        verdict = "reproduces" if scaling["hi"] < 0 else "does not reproduce here"
        said.append(f"Guo et al.'s temperature-scaling fix (CIFAR-100 ResNet-110: ECE 16.5 % → 1.3 %) {verdict}: "
                    f"{ref} {_pct(scaling['before'])} → {_pct(scaling['after'])}, {_points(scaling)}")
    focal = c[(c["config"] == "softmax+categorical_focal") & (c["figure"] == "ECE")]
    if len(focal):
        f = focal.iloc[0]
        verdict = "reproduces" if f["verdict"] == "better" else "does not reproduce here"
        said.append(f"Mukhoti et al.'s focal γ = 3 below CE (CIFAR-10 ResNet-50: CE 4.35 %, focal 1.48 %) {verdict}: "
                    f"{ref} {_pct(f['ref_mean'])}, focal γ = 3 {_pct(f['mean'])}, {_points(f)}, "
                    f"Holm p = {fmt(f['p_holm'], 2)}")
    smooth = c[(c["config"] == "softmax+cce(label_smoothing=0.1)") & (c["figure"] == "ECE")]
    if len(smooth) and scaling is not None:
        s = smooth.iloc[0]
        verdict = {"better": "lowers it", "worse": "raises it"}.get(s["verdict"], "does not change it distinguishably")
        said.append(f"Mueller et al.'s label smoothing (CIFAR-100: 15.0 % → 2.4 % at ε = 0.05, temperature scaling "
                    f"2.1 %): ε = 0.1 {verdict} ({_pct(s['mean'])} vs {ref}'s {_pct(s['ref_mean'])}, {_points(s)}, "
                    f"Holm p = {fmt(s['p_holm'], 2)}), "
                    f"against {_pct(scaling['after'])} for {ref} after temperature scaling")
    return "; ".join(said)


def _scaling_change(runs, dataset) -> dict | None:
    """CCE's test ECE after scaling − before, paired over its replicates (`stats.compare`, 95 %: a family of
    one), and the two means."""
    d = runs[(runs["dataset"] == dataset) & runs["trained"] & (runs["activation"] == REFERENCE[0])
             & (runs["loss"] == REFERENCE[1])]
    if d.empty or "test_ece_scaled" not in d:
        return None
    after, before = _by_seed(d, "test_ece_scaled"), _by_seed(d, "test_ece")
    temperature = _by_seed(d, "temperature").astype(float) if "temperature" in d else pd.Series(dtype=float)
    return {**stats.compare(after.to_numpy(float), before.to_numpy(float)),
            "before": float(before.mean()), "after": float(after.mean()),
            "temperature": float(temperature.mean()) if len(temperature) else math.nan,
            "at_bound": int(np.isclose(temperature, TEMPERATURE_RANGE[0], rtol=1e-6).sum())}


def answer(runs, table, history) -> list:
    """Per dataset: ECE and NLL of every loss against CCE before and after temperature scaling (Holm over
    the dataset's comparisons), whether CCE's validation NLL rises while its accuracy holds, and the
    published results against these numbers."""
    out = []
    comparison = comparisons(runs)
    if comparison.empty:
        return out
    for dataset, c in comparison.groupby("dataset", sort=True):
        scaling = _scaling_change(runs, dataset)
        t = ""
        if scaling and math.isfinite(scaling["temperature"]):
            t = f" (cce's mean temperature {fmt(scaling['temperature'], 3)}"
            if scaling["at_bound"]:
                t += (f"; at the search bound {fmt(TEMPERATURE_RANGE[0])} for {scaling['at_bound']} of {scaling['n']} "
                      "replicates: every validation row right, so the fitted NLL falls as T -> 0")
            t += ")"
        out.append((f"On {dataset} ({_accuracy_words(c)}): before temperature scaling, "
                    f"{_figure_sentence(c, 'ECE')}; {_figure_sentence(c, 'NLL', ece=False)}. After it{t}, "
                    f"{_figure_sentence(c, 'ECE after scaling')}; {_figure_sentence(c, 'NLL after scaling', ece=False)} "
                    f"(paired by replicate, Holm over the {len(c)} comparisons of {dataset} at α = {ALPHA}).",
                    "calibration"))
        ref = runs[(runs["dataset"] == dataset) & (runs["activation"] == REFERENCE[0]) & (runs["loss"] == REFERENCE[1])]
        rise = nll_rise(history, set(ref["run_id"]))
        if rise is not None and rise["epoch"] == rise["last"]:
            out.append((f"On {dataset}, {c['reference'].iloc[0]}'s validation NLL falls to the end: its mean curve is "
                        f"lowest at the last epoch, {rise['last']} ({fmt(rise['nll_last'], 3, pad=True)}), so no rise "
                        "within the epochs trained.", "curves"))
        elif rise is not None:
            n, a = rise["nll"], rise["accuracy"]
            rises = n["lo"] > 0
            out.append((f"On {dataset}, {c['reference'].iloc[0]}'s validation NLL is lowest at epoch {rise['epoch']} "
                        f"({fmt(rise['nll_low'], 3, pad=True)}, mean curve) and "
                        + (f"rises to {fmt(rise['nll_last'], 3, pad=True)} by epoch {rise['last']}" if rises else
                           f"reads {fmt(rise['nll_last'], 3, pad=True)} at epoch {rise['last']}")
                        + f": {n['estimate']:+.3f} (95 % CI {fmt_ci(n['lo'], n['hi'], 3)}) while its accuracy changes by "
                        f"{100 * a['estimate']:+.1f} points (95 % CI {fmt_ci(100 * a['lo'], 100 * a['hi'], 2, pad=False)}; "
                        "each replicate from the lowest epoch of the others' mean curve)"
                        + ("; the over-confidence Guo et al. describe (NLL up, accuracy not down)." if rises and a["hi"] >= 0
                           else "."),
                        "curves"))
        published = _published(c, scaling)
        if published:
            out.append((f"On {dataset}: {published}.", "calibration"))
    return out


# ---------------------------------------------------------------------------------------------
# the page section: a table per dataset and the reliability diagram

TABLE = (("test_accuracy", "accuracy", False), ("test_ece", "ECE", True), ("test_ece_scaled", "ECE after scaling", True),
         ("test_ece_sweep", "ECE_sweep", True), ("test_log_loss", "NLL", False),
         ("test_log_loss_scaled", "NLL after scaling", False), ("temperature", "temperature", False))


def calibration_table(runs) -> pd.DataFrame:
    """Per (dataset, config) and figure of TABLE: mean and t interval over replicates."""
    trained = runs[runs["trained"]]
    columns = [c for c, _, _ in TABLE if c in trained]
    if "test_ece" not in columns:
        return pd.DataFrame()
    long = trained.melt(id_vars=["dataset", "config"], value_vars=columns, var_name="column", value_name="v")
    long["v"] = pd.to_numeric(long["v"], errors="coerce")
    return stats.band(long.dropna(subset=["v"]), ["dataset", "config", "column"], "v")


def section(g) -> list:
    """The calibration blocks of one group: a table per dataset (mean and 95 % CI over replicates of every
    figure before and after temperature scaling), then the reliability diagram; [] where no run has the
    calibration figures."""
    from bench.report.figures import reliability

    frame = calibration_table(g.runs)
    if frame.empty:
        return []
    blocks = []
    for dataset, d in frame.groupby("dataset", sort=True):
        header = ["configuration", *(words for c, words, _ in TABLE if c in set(d["column"]))]
        rows = []
        for config, r in d.groupby("config", sort=True):
            cells = {row["column"]: row for _, row in r.iterrows()}
            shown = []
            for column, _, ece in TABLE:
                if column not in set(d["column"]):
                    continue
                row = cells.get(column)
                scale = 100 if ece else 1
                shown.append("n/a" if row is None else f"{fmt(scale * row['mean'], 3, pad=True)}"
                             f"{' %' if ece else ''} ({fmt_ci(scale * row['lo'], scale * row['hi'], 3)})")
            rows.append({"cls": "", "cells": [config, *shown]})
        blocks.append({"kind": "table", "title": f"{dataset} — test calibration (mean and 95 % CI over replicates)",
                       "header": header, "rows": rows, "text_cols": [0]})
    pending = g.draw(reliability.draw, g.runs, g.out, f"{g.slug}-reliability.png")
    blocks.append({"kind": "figure", "pending": pending, "empty": None, "figure": "reliability",
                   "lead": "{figure} draws each configuration's reliability diagram, before and after temperature "
                           "scaling, the losses of one dataset and setting on one panel.", "caption":
                   "Accuracy against confidence on the test split, per equal-mass bin of the top-label confidence "
                   "(the bins of every replicate pooled by their rank); filled markers: as trained, hollow: after "
                   "temperature scaling; on the diagonal a model is calibrated, below it over-confident. The bars at "
                   "the bottom are the rows per bin, at each bin's mean confidence: where the confidences lie. The x axis "
                   "starts at the dataset's lowest confidence (at least 0.5 on a binary problem)."})
    return blocks
