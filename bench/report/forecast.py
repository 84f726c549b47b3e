"""What each loss forecasts: the demand preset's answer, its loss x metric table and its page section,
from the per-member test figures that runs on generated data record (bench.optimum: forecast_vs_optimum,
forecast_vs_mean, optimum_vs_mean, coverage_optimum_<tau>; bench.metrics: rmse, ..., coverage_<tau>).

    forecasts(runs)          per (dataset, setting, config): each forecast against its loss's exact optimum
                             and both against the conditional mean; a t interval on the log ratio over seeds
    metric_table(runs)       per (dataset, setting): loss x metric means and, per metric, the best
                             configuration (a best of N: selected) against the best of those whose loss
                             optimises the metric (or, if it is one, the best of the others), paired by seed
                             (`bench.stats`: a ratio, Holm over the metrics of the table)
    answer(runs, table, history)   ANSWERS["demand"]: [(sentence, section)]
    section(g)               the page's "What each loss forecasts" blocks

A metric is optimised by the losses that elicit its functional (Gneiting 2011): RMSE the mean (MSE, Poisson,
Tweedie), MAE and its rescalings WAPE and MASE the median (MAE, pinball at 0.5), MAPE the beta-median
(MAPE). A diverged seed has no test figures and is left out here (the ranking counts it as a loss).
"""
import math

import numpy as np
import pandas as pd

from bench import stats
from bench.report import claims
from bench.report.tables import fmt, fmt_ci, place_words

METRICS = ("rmse", "mae", "mape", "wape", "mase")  # scored, lower is better; bias is shown beside them
OPTIMISED_BY = {"rmse": "mean", "mae": "median", "wape": "median", "mase": "median", "mape": "beta_median"}
HEADERS = {"bias": "bias (target units)", "bias_pct": "bias (% of the mean)"}
WORDS = {"mean": "the mean", "median": "the median", "beta_median": "the β-median (β = −1)"}


def functional(label) -> str | None:
    """What a loss label's point forecast elicits: mean | median | beta_median | '0.9-quantile'; None when
    unknown (Huber, a user's loss). A quantile head's point is its level nearest 0.5 (bench.heads)."""
    from bench.losses import LOSSES, from_label

    name, params = from_label(label)
    record = LOSSES.get(name)
    if record is None or record.elicits is None:
        return None
    if record.elicits != "quantile":
        return record.elicits
    levels = params.get("quantiles", record.default("quantiles"))
    point = min(levels, key=lambda t: (abs(t - 0.5), t))
    return "median" if point == 0.5 else f"{point:g}-quantile"


def words(kind) -> str:
    return WORDS.get(kind, f"the {kind}")


def log_ratio_interval(values) -> tuple:
    """(geometric mean, lo, hi) of positive per-seed ratios: `stats.compare` of them against 1 on the
    ratio scale (the t interval of their logs, exponentiated; NaN bounds from one seed)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return math.nan, math.nan, math.nan
    c = stats.compare(v, np.ones_like(v), "ratio")
    return c["estimate"], c["lo"], c["hi"]


def _trained(runs) -> pd.DataFrame:
    rows = runs[runs["trained"] & (runs["task"] == "regression")] if "trained" in runs else runs
    return rows[rows["seed_status"] == "done"] if "seed_status" in rows else rows


def forecasts(runs) -> pd.DataFrame:
    """One row per (group, dataset, setting, config) whose runs recorded their optimum: the functional its
    forecast elicits, and (geometric mean over seeds, t interval on the log) forecast / optimum, forecast /
    conditional mean, optimum / conditional mean; the coverage of each quantile level (mean, t interval) beside
    the exact quantile's coverage of the same test rows."""
    r = _trained(runs)
    if "test_forecast_vs_optimum" not in r or r["test_forecast_vs_optimum"].notna().sum() == 0:
        return pd.DataFrame()
    out = []
    levels = sorted({c.removeprefix("test_coverage_") for c in r.columns
                     if c.startswith("test_coverage_") and not c.startswith("test_coverage_optimum")}, key=float)
    for (group, dataset, setting, config), c in r.groupby(["group", "dataset", "setting", "config"], sort=True):
        if c["test_forecast_vs_optimum"].notna().sum() == 0:
            continue
        row = {"group": group, "dataset": dataset, "setting": setting, "config": config,
               "activation": c["activation"].iloc[0], "loss": c["loss"].iloc[0], "n": int(c["seed"].nunique()),
               "elicits": functional(c["loss"].iloc[0])}
        for name in ("forecast_vs_optimum", "forecast_vs_mean", "optimum_vs_mean"):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = log_ratio_interval(c[f"test_{name}"])
        for tau in levels:
            if c[f"test_coverage_{tau}"].notna().any():
                lo, hi = stats.t_interval(c[f"test_coverage_{tau}"].to_numpy(float))
                row[f"coverage_{tau}"] = (float(c[f"test_coverage_{tau}"].mean()), lo, hi,
                                          float(c[f"test_coverage_optimum_{tau}"].mean()))
        out.append(row)
    return pd.DataFrame(out)


def metric_table(runs) -> tuple:
    """(means, verdicts) per (group, dataset, setting). means: one row per config with the mean over seeds of
    each metric of METRICS, bias (target units), bias_pct and a quantile head's pinball_<tau>. verdicts: per
    metric, the best config against its comparison (see the module doc): `stats.compare` on the metric's
    scale (a ratio for these positive errors), adjusted by `stats.adjust` over the metrics of the table
    (one family per dataset and setting, named in `family`), lower being better."""
    r = _trained(runs)
    columns = [f"test_{m}" for m in (*METRICS, "bias", "bias_pct") if f"test_{m}" in r]
    columns += sorted(c for c in r.columns if c.startswith("test_pinball_"))  # a quantile head's proper score
    if r.empty or not columns:
        return pd.DataFrame(), pd.DataFrame()
    keys = ["group", "dataset", "setting", "config"]
    means = r.groupby(keys, sort=True)[columns].mean().rename(columns=lambda c: c.removeprefix("test_")).reset_index()
    means["elicits"] = means["config"].map(lambda c: functional(r.loc[r["config"] == c, "loss"].iloc[0]))
    verdicts = []
    for (group, dataset, setting), block in means.groupby(["group", "dataset", "setting"], sort=True):
        rows = r[(r["group"] == group) & (r["dataset"] == dataset) & (r["setting"] == setting)]
        family = []
        for metric in (m for m in METRICS if m in block and block[m].notna().any()):
            ranked = block.dropna(subset=[metric]).sort_values(metric)
            best = ranked.iloc[0]
            fits = ranked["elicits"] == OPTIMISED_BY[metric]
            theory = bool(fits.iloc[0])
            others = ranked[~fits if theory else fits]
            row = {"group": group, "dataset": dataset, "setting": setting, "metric": metric, "best": best["config"],
                   "best_value": best[metric], "n_configs": len(ranked), "as_theory": theory,
                   "optimised_by": OPTIMISED_BY[metric], "versus": None}
            if len(others):
                versus = others.iloc[0]["config"]
                pivot = rows.pivot_table(index="seed", columns="config", values=f"test_{metric}")
                row.update(versus=versus, versus_value=others.iloc[0][metric],
                           **stats.compare(pivot[best["config"]].to_numpy(), pivot[versus].to_numpy(),
                                           stats.scale_of(metric)))
            family.append(row)
        tested = [f for f in family if f["versus"] is not None]
        words = (f"{len(tested)} comparison{'s' if len(tested) != 1 else ''} of each metric's best with the best on "
                 f"the other side of theory {place_words(dataset, setting)}"
                 + (", Holm-adjusted" if len(tested) > 1 else ""))
        adjusted = iter(stats.adjust(tested, higher_is_better=False))
        verdicts += [next(adjusted) | {"family": words} if f["versus"] is not None else f for f in family]
    return means, pd.DataFrame(verdicts)


def _ratio(row, name) -> str:
    return f"{fmt(row[name], 3, pad=True)}× ({fmt_ci(row[f'{name}_lo'], row[f'{name}_hi'], 3)})"


def _what(block) -> str:
    """Per loss, its optimum against the mean and each of its configurations' forecasts against that optimum:
    'mape's optimum is the β-median (β = −1), 0.687× the mean: linear+mape 0.978× (0.952–1.01), ...'; the losses
    ordered by their optimum, lowest first."""
    parts = []
    for loss, rows in sorted(block.groupby("loss"), key=lambda item: (item[1]["optimum_vs_mean"].mean(), item[0])):
        kind = rows["elicits"].iloc[0]
        optimum = words(kind) if kind else "its functional"
        if kind != "mean":
            optimum += f", {fmt(rows['optimum_vs_mean'].mean(), 3, pad=True)}× the mean"
        parts.append(f"{loss}'s optimum is {optimum}: " + ", ".join(
            f"{row['config']} {_ratio(row, 'forecast_vs_optimum')}" for _, row in rows.iterrows()))
    return "; ".join(parts)


def _coverage(f, median=True) -> list:
    """'linear+pinball(0.9) covers 0.893 (0.885–0.901) at 0.9; the exact 0.9-quantile covers 0.899 of these rows'
    (median=False: the levels other than 0.5 only)."""
    out = []
    for _, row in f.iterrows():
        for key in (k for k in row.index if k.startswith("coverage_") and isinstance(row[k], tuple)
                    and (median or k != "coverage_0.5")):
            mean, lo, hi, exact = row[key]
            tau = key.removeprefix("coverage_")
            out.append(f"{row['config']} covers {fmt(mean, 3, pad=True)} of the test targets at level {tau} "
                       f"(95 % CI {fmt_ci(lo, hi, 3)}; the exact {tau}-quantile covers "
                       f"{fmt(exact, 3, pad=True)} of them)")
    return out


SHORT = {"mean": "a loss of the mean", "median": "a loss of the median", "beta_median": "MAPE's own"}


def _verdict_words(v) -> str:
    """'RMSE softplus+poisson (373.1, a loss of the mean; 0.978× softplus+mae's, 98.3 % CI 0.960–0.996×;
    Holm-adjusted p = 0.018 over 3 comparisons, 5 paired replicates: better)': the best, whether its loss
    elicits the metric's functional, and its comparison as `bench.report.claims` words it."""
    kind = SHORT.get(v["optimised_by"], v["optimised_by"])
    text = f"{v['metric'].upper()} {v['best']} ({fmt(v['best_value'], 4)}, {'' if v['as_theory'] else 'not '}{kind}"
    if v["versus"] is None or pd.isna(v.get("estimate")):
        return text + ")"
    against = (f"{claims.amount(v)} {v['versus']}'s" if v["scale"] == "ratio"
               else f"{claims.amount(v)} against {v['versus']}")
    return text + f"; {against}, {claims.evidence(v)}: {claims.VERDICT_WORDS[v['verdict']]})"


def _pick(means, kind, metric):
    """The config with the lowest mean `metric` among those eliciting `kind`, or None."""
    fits = means[(means["elicits"] == kind) & means[metric].notna()] if metric in means else means.iloc[:0]
    return fits.sort_values(metric).iloc[0] if len(fits) else None


def _advice(f, means) -> str | None:
    """What to train on for which business question, from these results: for each question the configuration
    scoring best on its proper score among those whose loss elicits what the question asks (a selection)."""
    parts = []
    mean = _pick(means, "mean", "rmse")
    if mean is not None:
        bias = f", bias {mean['bias_pct']:+.1f} % of the mean" if pd.notna(mean.get("bias_pct")) else ""
        count = int((means["elicits"] == "mean").sum())
        parts.append(f"to plan stock on average (totals: the mean), a loss of the mean (MSE, Poisson, Tweedie), here "
                     f"{mean['config']}, the lowest test RMSE of the {count} that elicit it{bias}")
    for kind in sorted({k for k in f["elicits"].dropna() if k.endswith("-quantile")}, key=lambda k: float(k[:-9])):
        tau = kind.removesuffix("-quantile")
        best = _pick(means.rename(columns={f"pinball_{tau}": "score"}), kind, "score")
        if best is None:
            continue
        cover = f.set_index("config").at[best["config"], f"coverage_{tau}"]
        covers = f", which covers {fmt(cover[0], 3, pad=True)} of the test targets" if isinstance(cover, tuple) else ""
        parts.append(f"for a service level of {float(tau) * 100:g} % (stock-outs on {(1 - float(tau)) * 100:g} % of "
                     f"days), the pinball loss at {tau}, here {best['config']}, the lowest pinball loss at "
                     f"{tau}{covers}")
    median = _pick(means, "median", "mae")
    if median is not None:
        parts.append(f"for the smallest absolute errors (MAE, WAPE, MASE), a loss of the median (MAE, pinball at 0.5), "
                     f"here {median['config']}")
    mape = f[f["elicits"] == "beta_median"]
    if len(mape):
        low, high = mape["forecast_vs_mean"].min(), mape["forecast_vs_mean"].max()
        spread = fmt(low, 3, pad=True) + (f"–{fmt(high, 3, pad=True)}" if fmt(high, 3) != fmt(low, 3) else "")
        parts.append(f"and MAPE only where a forecast below the median is wanted: it forecasts {spread}× the mean, "
                     "the under-forecast its optimum implies")
    return ("What to train on: " + "; ".join(parts) + ".") if parts else None


def answer(runs, table, history) -> list:
    """The demand preset's answer, per (dataset, setting): what each loss forecasts against its exact optimum,
    the coverage of its quantiles, which loss scores best on each metric, and what to train on."""
    f = forecasts(runs)
    if f.empty:  # no exact optimum recorded: bench.report.answers falls back to the best-vs-canonical answer
        return []
    means, verdicts = metric_table(runs)
    out = []
    datasets = f["dataset"].nunique()
    for (dataset, setting), block in f.groupby(["dataset", "setting"], sort=True):
        where = f"On {dataset}" if datasets > 1 or not setting else ""
        where += (f"{' at' if where else 'At'} {setting}" if setting else "")
        n = int(block["n"].max())
        out.append((f"{where + ', w' if where else 'W'}hat each loss forecasts, against the exact optimum it elicits "
                    f"(mean test forecast over mean optimum; geometric mean over {n} seeds, 95 % t interval on the log "
                    "ratio): " + _what(block) + ".", "forecast"))
        covered = _coverage(block, median=False)
        if covered:
            out.append(("Coverage of the quantiles: " + "; ".join(covered) + ".", "forecast"))
        v = verdicts[(verdicts["dataset"] == dataset) & (verdicts["setting"] == setting)] if len(verdicts) else verdicts
        if len(v):
            theory = v["as_theory"].all()
            lead = "Each metric is won by a loss that elicits its functional" if theory else "The best per metric"
            out.append((f"{lead}"
                        f" (the best of {int(v['n_configs'].max())} configurations, a selection; against the best "
                        "configuration on the other side of theory, paired by seed, Holm over the "
                        f"{len(v)} metrics): " + "; ".join(_verdict_words(row) for _, row in v.iterrows()) + ".",
                        "forecast"))
        m = means[(means["dataset"] == dataset) & (means["setting"] == setting)] if len(means) else means
        advice = _advice(block, m)
        if advice:
            out.append((advice, "forecast"))
    return out


def section(g) -> list:
    """The page blocks: the forecasts against their optima, the loss x metric table, the figure."""
    from bench.report.figures import forecast as figure

    f = forecasts(g.runs)
    if f.empty:
        return []  # no run here recorded an exact optimum: the section does not apply
    means, verdicts = metric_table(g.runs)
    blocks = [{"kind": "text", "text": (
        "Each loss's optimum is a functional of the distribution of y given x (Gneiting 2011): MSE, Poisson and "
        "Tweedie elicit the mean, MAE and pinball at 0.5 the median, pinball at τ the τ-quantile, MAPE the β-median "
        "with β = −1 (the median of f(y)/y). On generated data that distribution is known for every test row, so "
        "the optimum is computed exactly (bench/optimum.py) and each forecast is measured against it: the ratio "
        "of the mean forecast to the mean optimum over the test rows (1 = the loss got what it asks for), "
        "geometric mean over seeds with a 95 % t interval on the log ratio.")}]
    for (dataset, setting), block in f.groupby(["dataset", "setting"], sort=True):
        where = f"{dataset} at {setting}" if setting else dataset
        block = block.sort_values(["optimum_vs_mean", "loss", "activation"])  # the ladder of optima, as the figure
        levels = sorted({k for k in block.columns if k.startswith("coverage_")})
        rows = [{"cls": "", "cells": [row["config"], words(row["elicits"]) if row["elicits"] else "—",
                                      _ratio(row, "optimum_vs_mean"), _ratio(row, "forecast_vs_optimum"),
                                      _ratio(row, "forecast_vs_mean"),
                                      *(f"{fmt(row[k][0], 3, pad=True)} (exact {fmt(row[k][3], 3, pad=True)})"
                                        if isinstance(row[k], tuple) else "—" for k in levels)]}
                for _, row in block.iterrows()]
        blocks.append({"kind": "table", "title": f"{where} — what each loss forecasts (test)",
                       "header": ["configuration", "its optimum", "optimum / mean", "forecast / optimum",
                                  "forecast / mean", *(f"coverage at {k.removeprefix('coverage_')}" for k in levels)],
                       "rows": rows, "text_cols": [0, 1]})
        m = means[(means["dataset"] == dataset) & (means["setting"] == setting)].set_index("config")
        m = m.reindex([c for c in block["config"] if c in m.index]).reset_index()  # the same order
        shown = [c for c in (*METRICS, "bias", "bias_pct") if c in m and m[c].notna().any()]
        best = {c: m[c].abs().min() if c.startswith("bias") else m[c].min() for c in shown}
        rows = [{"cls": "", "cells": [row["config"], words(row["elicits"]) if row["elicits"] else "—", *(
            fmt(row[c], 4) + (" (best)" if (abs(row[c]) if c.startswith("bias") else row[c]) == best[c] else "")
            for c in shown)]} for _, row in m.iterrows()]
        blocks.append({"kind": "table", "title": f"{where} — loss × metric (test, mean over seeds; lower is better, "
                       "bias closest to 0)",
                       "header": ["configuration", "its optimum", *(HEADERS.get(c, c) for c in shown)],
                       "rows": rows, "text_cols": [0, 1]})
        v = verdicts[(verdicts["dataset"] == dataset) & (verdicts["setting"] == setting)] if len(verdicts) else verdicts
        if len(v):
            blocks.append({"kind": "list", "title": "Best per metric (a selection among the configurations; paired by "
                           "seed, Holm over the metrics)", "items": [_verdict_words(row) for _, row in v.iterrows()]})
    blocks.append({"kind": "figure", "pending": g.draw(figure.draw, f, g.out, f"{g.slug}-forecast.png"),
                   "figure": "forecast",
                   "lead": "{figure} puts each configuration's forecast beside the exact optimum of its loss.",
                   "caption": "Each configuration's mean test forecast over the conditional mean (dot: geometric mean "
                              "over seeds, bar: 95 % t interval), and its loss's exact optimum over the conditional "
                              "mean (open diamond): a dot on its diamond forecasts what its loss asks for.",
                   "empty": None})
    return blocks
