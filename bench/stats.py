"""The one inference procedure: every claim that two configurations differ (the answers, the
findings, the ranking's and the significance table's verdicts, `bench.results`, findings.txt) is
made here, the same way everywhere.

Replicates are the replication unit and comparisons pair them: replicate k of two configurations is
the same seed. A comparison is one of two paired estimates, each with a Student t interval that has
its nominal coverage at 5 replicates when the paired quantity is normal (no bootstrap: a percentile
bootstrap under-covers at n < 20):

    compare(x, y, "difference")   mean of x - y; t on the paired differences (accuracy, r2, bias)
    compare(x, y, "ratio")        exp(mean log(x / y)), the geometric mean of the paired ratios; t on
                                  the paired log ratios (positive quantities: rmse, log_loss, seconds)
    compare_times(x, y, bx, by)   a ratio of times to target; a replicate that never reached the target
                                  counts at its budget (the epochs or seconds it trained), so the ratio
                                  is of capped times, and `bound` says which way capping moves it
    adjust(comparisons, ...)      one family, Holm-adjusted: p_holm, the interval at the level
                                  Holm's step used for that comparison (so it excludes the null value
                                  exactly when the verdict is better or worse), and the verdict

A family is the set of comparisons one claim belongs to: the configurations of one dataset at one
setting against one reference, on one quantity. A difference smaller than one test example per
replicate (`example_size`: 1 / n_test for accuracy-like metrics) is a tie, whatever its p.
Descriptive intervals of one configuration's mean (`band`, `t_interval`) are t intervals too.

>>> c = compare([0.91, 0.88, 0.93, 0.90, 0.95], [0.90, 0.85, 0.91, 0.91, 0.90], "difference")
>>> round(c["estimate"], 3), c["n"], round(c["p"], 3)
(0.02, 5, 0.116)
>>> [a["verdict"] for a in adjust([c], higher_is_better=True)]
['tie']
"""
import math

import numpy as np

LEVEL = 0.95
ALPHA = 0.05  # family-wise error rate of every family, after Holm's adjustment
SCALES = ("difference", "ratio")
# metrics whose value is a share of the test examples: a difference below 1 / n_test is less than
# one example per replicate
COUNTED = ("accuracy", "binary_accuracy")
# what a time-to-target ratio's capping does to it, by the sides it touched (see compare_times)
BOUNDS = {frozenset(): "exact", frozenset({"up"}): "at least", frozenset({"down"}): "at most",
          frozenset({"up", "down"}): "capped"}


def t_quantile(df, level=LEVEL):
    """Two-sided Student t quantile for `df` degrees of freedom (array or scalar)."""
    from scipy.stats import t

    return t.ppf(0.5 + level / 2, df)


def scale_of(metric) -> str:
    """The scale a metric is compared on: "ratio" for a positive quantity without an upper bound
    (rmse, mae, mape, log_loss, brier: how many times as large), else "difference"."""
    from bench.metric_facts import BOUNDS as VALUES

    low, high = VALUES.get(metric, (None, None))
    return "ratio" if low == 0 and high is None else "difference"


def example_size(metric, n_test) -> float:
    """One test example of a replicate on `metric`'s scale: 1 / n_test for accuracy-like metrics
    (COUNTED), NaN for the others or when n_test is not known."""
    if metric not in COUNTED or n_test is None or not np.isfinite(n_test) or n_test <= 0:
        return math.nan
    return 1.0 / float(n_test)


def _paired(x, y):
    """x, y as float arrays over the pairs where both are finite."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _t_test(d, scale, level) -> dict:
    """The one-sample t interval and test of the paired quantities `d` (differences or log ratios)."""
    from scipy.stats import t

    n = len(d)
    out = {"scale": scale, "n": n, "estimate": math.nan, "lo": math.nan, "hi": math.nan, "p": math.nan,
           "level": level, "center": math.nan, "se": math.nan, "df": max(n - 1, 0)}
    if n == 0:
        return out
    out["center"] = float(d.mean())
    if n >= 2:
        out["se"] = float(d.std(ddof=1) / math.sqrt(n))
        if out["se"] == 0:  # no spread: every pair says the same
            out["p"] = 1.0 if out["center"] == 0 else 0.0
        else:
            out["p"] = float(2 * t.sf(abs(out["center"]) / out["se"], n - 1))
    return _at_level(out, level)


def _at_level(c, level) -> dict:
    """The comparison `c` with its interval at `level` (from its center, se and df)."""
    back = math.exp if c["scale"] == "ratio" else float
    c = dict(c, level=level)
    if math.isnan(c["center"]):
        return c
    c["estimate"] = back(c["center"])
    if c["n"] >= 2:
        half = 0.0 if c["se"] == 0 else float(t_quantile(c["df"], level)) * c["se"]
        c["lo"], c["hi"] = back(c["center"] - half), back(c["center"] + half)
    return c


def compare(x, y, scale="difference", level=LEVEL) -> dict:
    """x against y, paired by position (replicate k with replicate k) over the pairs where both are
    finite: {scale, estimate, lo, hi, level, p, n, center, se, df}.

    difference: estimate = mean(x - y), p of the paired t-test (scipy.stats.ttest_rel's).
    ratio: estimate = exp(mean(log(x / y))), the geometric mean of the per-pair ratios, its interval
    exp of the t interval of the log ratios, p of the t-test of log x = log y; every value must be
    positive (a ValueError otherwise: a ratio of a value <= 0 is not defined).
    No spread (every pair the same): p = 1 when that is no difference, else 0; the interval is the
    estimate itself. Fewer than 2 pairs: no interval, p NaN.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not allowed; choose one of {', '.join(SCALES)}")
    x, y = _paired(x, y)
    if scale == "difference":
        return _t_test(x - y, scale, level)
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError(f"a ratio needs positive values; got {np.concatenate([x, y]).min():g}")
    return _t_test(np.log(x) - np.log(y), scale, level)


def time_floor(times) -> float:
    """The smallest time a ratio divides by: a target met at epoch 0 (time 0) counts as one unit of
    the count's resolution, 1 epoch for whole epochs, else the smallest positive finite time; so
    ratios stay finite (the time is then at most that: `compare_times` says so)."""
    t = np.asarray(times, dtype=float)
    t = t[np.isfinite(t)]
    if not len(t) or np.all(t == np.round(t)):
        return 1.0
    positive = t[t > 0]
    return float(positive.min()) if len(positive) else 1.0


def compare_times(x, y, budget_x, budget_y, level=LEVEL) -> dict:
    """Times to target of x against y (epochs or seconds per replicate, NaN or inf = never reached;
    every position a pair of replicates that both trained), on the ratio scale: `compare(..., "ratio")` of the capped times, plus
    `bound`, `never_x`, `never_y` (replicates that never reached it).

    A replicate that never reached the target counts at its budget (budget_x / budget_y: the time it
    trained, a number or one per replicate): its true time is at least that. A time below
    `time_floor` (the target met at epoch 0) counts at the floor: its true time is at most that. So
    each pair's capped ratio x / y is exact, a lower bound (x capped, or y floored), an upper bound
    (y capped, or x floored) or neither (both capped); `bound` is "exact", "at least", "at most" or
    "capped" (neither) for the estimate and its interval as a whole. No p (n/a, with the reason in
    `note`) when a replicate that never reached the target has no budget (leaving it out would keep
    the fast replicates only) or when neither side reached the target in any replicate.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bx = np.broadcast_to(np.asarray(budget_x, dtype=float), x.shape)
    by = np.broadcast_to(np.asarray(budget_y, dtype=float), y.shape)
    floor = time_floor(np.concatenate([x, y]))
    never_x, never_y = ~np.isfinite(x), ~np.isfinite(y)
    cx = np.where(never_x, np.maximum(bx, floor), np.maximum(x, floor))
    cy = np.where(never_y, np.maximum(by, floor), np.maximum(y, floor))
    note = ("no replicate trained in both" if not len(x) else "a replicate that never reached the target has no "
            "recorded budget" if not (np.isfinite(cx).all() and np.isfinite(cy).all())
            else "neither reached the target in any replicate" if (never_x & never_y).all() else "")
    counts = {"never_x": int(never_x.sum()), "never_y": int(never_y.sum())}
    if note:
        return compare([], [], "ratio", level) | {"bound": "exact", "note": note, **counts}
    sides = set()
    if (never_x | (~never_y & (y < floor))).any():
        sides.add("up")
    if (never_y | (~never_x & (x < floor))).any():
        sides.add("down")
    return compare(cx, cy, "ratio", level) | {"bound": BOUNDS[frozenset(sides)], **counts}


def adjust(comparisons, higher_is_better=True, resolution=math.nan, alpha=ALPHA) -> list:
    """One family of comparisons (dicts from `compare`), Holm-adjusted: each comes back with
    `p_holm`, `family_size` (the comparisons with a p), its interval at the level Holm's step
    used for it, `verdict` and `note`.

    The interval: Holm tests the comparison of the j-th smallest p (j = 1..m) at alpha / (m - j + 1)
    while every smaller p was rejected at its own step; from the first step that fails on, all the
    rest are tested at that step's alpha. Each interval has level 1 - the alpha its comparison was
    tested at, so it excludes the null value (0, or 1 for a ratio) exactly when Holm rejects.

    verdict: better | worse (by `higher_is_better`, the direction of x - y, or a comparison's own
    "higher_is_better" where the family mixes quantities; None for a quantity without one: higher |
    lower) when Holm rejects (p_holm < alpha) and the difference is at least
    `resolution` (one test example per replicate: smaller is a tie, whatever its p); tie otherwise;
    n/a without a p (fewer than 2 pairs).
    """
    found = [dict(c) for c in comparisons]
    ps = np.array([c["p"] for c in found], dtype=float)
    adjusted = holm(ps)
    valid = np.flatnonzero(~np.isnan(ps))
    order = valid[np.argsort(ps[valid], kind="stable")]
    m = len(order)
    still, step_alpha, rejected = True, alpha, np.zeros(len(found), dtype=bool)
    for j, i in enumerate(order):
        if still:
            step_alpha = alpha / (m - j)
            still = rejected[i] = ps[i] < step_alpha
        found[i] = _at_level(found[i], 1 - step_alpha)
    for c, p, reject in zip(found, adjusted, rejected):
        c.update(p_holm=float(p), family_size=m, note=c.get("note", ""))
        if math.isnan(p):
            c["verdict"] = "n/a"
            c["note"] = c["note"] or "fewer than 2 replicates with a value in both"
            continue
        up, higher = c["center"] > 0, c.get("higher_is_better", higher_is_better)
        c["verdict"] = ("higher" if up else "lower") if higher is None else ("better" if up == bool(higher) else "worse")
        small = c["scale"] == "difference" and abs(c["estimate"]) < resolution
        if small:
            c["note"] = (f"the difference, {c['estimate']:+.3g}, is less than one test example per replicate "
                         f"(1 / n_test = {resolution:.3g})")
        if not reject or small:
            c["verdict"] = "tie"
    return found


def band(frame, by, value, level=LEVEL):
    """Per group of `by`: mean, lo, hi (t interval over the non-NaN rows; NaN when n < 2) and n.

    >>> import pandas as pd
    >>> band(pd.DataFrame({"g": ["a"] * 3, "v": [1.0, 2.0, 3.0]}), ["g"], "v").round(3).to_dict("records")
    [{'g': 'a', 'mean': 2.0, 'n': 3, 'lo': -0.484, 'hi': 4.484}]
    """
    stats = frame.groupby(by, sort=False, observed=True)[value].agg(["mean", "std", "count"])
    n = stats["count"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n > 1, t_quantile(np.maximum(n - 1, 1), level) * stats["std"].to_numpy() / np.sqrt(n),
                        np.nan)
    stats["lo"] = stats["mean"] - half
    stats["hi"] = stats["mean"] + half
    return stats.rename(columns={"count": "n"}).drop(columns="std").reset_index()


def t_interval(values, level=LEVEL):
    """(lo, hi): the t interval of the mean of the non-NaN `values`; (mean, mean) from one value.
    Usable as seaborn's `errorbar=`."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        mean = float(v.mean()) if len(v) else math.nan
        return mean, mean
    half = float(t_quantile(len(v) - 1, level) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()) - half, float(v.mean()) + half


def holm(p):
    """Holm-Bonferroni adjusted p-values, in the input order; NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
