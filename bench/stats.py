"""Interval estimates over seeds, the replication unit, for the report.

Inputs are per-seed values (1-D arrays, NaN = missing; `band` takes a long frame); NaN in a result
marks an estimate that is not defined (an interval from fewer than two seeds). Levels are two-sided.

    band(frame, by, "value")            -> mean, lo, hi, n per group: t interval of the mean
    ratio_ci(ref, other)                -> (ratio, lo, hi)        median(other) / median(ref), bootstrap
    mean_ratio_ci(x, y)                 -> (ratio, lo, hi)        mean(x) / mean(y), paired bootstrap
    paired_difference(x, y)             -> dict(diff, lo, hi, n, p)   paired t interval and test
    t_interval(values)                  -> (lo, hi)               t interval of the mean (seaborn errorbar)
    holm(p)                             -> Holm-adjusted p-values

>>> import pandas as pd
>>> band(pd.DataFrame({"g": ["a"] * 3, "v": [1.0, 2.0, 3.0]}), ["g"], "v").round(3).to_dict("records")
[{'g': 'a', 'mean': 2.0, 'n': 3, 'lo': -0.484, 'hi': 4.484}]
"""
import math

import numpy as np

LEVEL = 0.95
N_BOOT = 4000  # bootstrap resamples per interval, from a fixed seed: the same results give the same report


def t_quantile(df, level=LEVEL):
    """Two-sided Student t quantile for `df` degrees of freedom (array or scalar)."""
    from scipy.stats import t

    return t.ppf(0.5 + level / 2, df)


def band(frame, by, value, level=LEVEL):
    """Per group of `by`: mean, lo, hi (t interval over the non-NaN rows; NaN when n < 2) and n."""
    stats = frame.groupby(by, sort=False, observed=True)[value].agg(["mean", "std", "count"])
    n = stats["count"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n > 1, t_quantile(np.maximum(n - 1, 1), level) * stats["std"].to_numpy() / np.sqrt(n),
                        np.nan)
    stats["lo"] = stats["mean"] - half
    stats["hi"] = stats["mean"] + half
    return stats.rename(columns={"count": "n"}).drop(columns="std").reset_index()


def resolution(times) -> float:
    """The smallest time a ratio divides by: a target met at epoch 0 (time 0) counts as one unit of
    the count's resolution, 1 epoch for whole epochs, else the smallest positive finite time; so
    ratios stay finite and err on the side of a smaller ratio (a lower bound)."""
    t = np.asarray(times, dtype=float)
    t = t[np.isfinite(t)]
    if not len(t) or np.all(t == np.round(t)):
        return 1.0
    positive = t[t > 0]
    return float(positive.min()) if len(positive) else 1.0


def ratio_ci(ref, other, level=LEVEL, n_boot=N_BOOT, seed=0):
    """median(other) / median(ref) with a percentile-bootstrap interval: (ratio, lo, hi).

    Times of 0 (a target met at epoch 0) are raised to `resolution` of both samples first:
    ratio_ci([0, 0, 1, 0, 0], [3, 4, 5, 4, 3]) is 4 (at least 4× as many epochs), not inf.

    By hand rather than scipy.stats.bootstrap: its percentile interval is NaN as soon as one
    resample is inf/inf, where this one drops those resamples and lets a bound be inf.

    ref, other: per-seed times (epochs or seconds to target); inf = the seed never reached the target.
    The seeds of each configuration are resampled independently (the two need not share seeds). A
    bound is inf when more than the tail fraction of resamples has a median that never reaches it;
    resamples where both medians are inf carry no information and are dropped.
    """
    ref, other = np.asarray(ref, dtype=float), np.asarray(other, dtype=float)
    floor = resolution(np.concatenate([ref, other]))
    ref, other = np.maximum(ref, floor), np.maximum(other, floor)
    ratio = float(np.median(other) / np.median(ref))
    rng = np.random.default_rng(seed)
    med_ref = np.median(ref[rng.integers(0, len(ref), (n_boot, len(ref)))], axis=1)
    med_other = np.median(other[rng.integers(0, len(other), (n_boot, len(other)))], axis=1)
    with np.errstate(invalid="ignore"):
        boot = med_other / med_ref  # inf/inf -> NaN: dropped
    boot = boot[~np.isnan(boot)]
    if not len(boot):
        return ratio, math.nan, math.nan
    tail = 100 * (1 - level) / 2
    # interpolating next to an inf gives inf - inf = NaN: stand a huge finite value in for inf
    lo, hi = np.percentile(np.where(np.isinf(boot), 1e300, boot), [tail, 100 - tail])
    return ratio, (math.inf if lo >= 1e299 else float(lo)), (math.inf if hi >= 1e299 else float(hi))


def mean_ratio_ci(x, y, level=LEVEL, n_boot=N_BOOT, seed=0):
    """mean(x) / mean(y) over the pairs where both are finite, with a percentile-bootstrap interval
    that resamples pairs (seeds) together: (ratio, lo, hi); NaN bounds from fewer than 2 pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pair = np.isfinite(x) & np.isfinite(y)
    x, y = x[pair], y[pair]
    if not len(x) or y.mean() == 0:
        return math.nan, math.nan, math.nan
    ratio = float(x.mean() / y.mean())
    if len(x) < 2:
        return ratio, math.nan, math.nan
    pick = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = x[pick].mean(axis=1) / y[pick].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(boot, [tail, 100 - tail])
    return ratio, float(lo), float(hi)


def paired_difference(x, y, level=LEVEL):
    """Mean of x - y over the pairs where both are finite, its t interval and the paired t-test p
    (scipy.stats.ttest_rel and its confidence_interval).

    Returns dict(diff, lo, hi, n, p); p = 1 when every difference is 0 and 0 when they are all the
    same non-zero value (no spread: the t statistic is infinite).
    """
    from scipy.stats import ttest_rel

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pair = np.isfinite(x - y)
    x, y = x[pair], y[pair]
    n = len(x)
    out = {"diff": float((x - y).mean()) if n else math.nan, "lo": math.nan, "hi": math.nan, "n": n, "p": math.nan}
    if n < 2:
        return out
    if (x - y).std(ddof=1) == 0:
        out.update(lo=out["diff"], hi=out["diff"], p=1.0 if out["diff"] == 0 else 0.0)
        return out
    test = ttest_rel(x, y)
    interval = test.confidence_interval(confidence_level=level)
    out.update(lo=float(interval.low), hi=float(interval.high), p=float(test.pvalue))
    return out


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
