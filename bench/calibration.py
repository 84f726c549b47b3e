"""Calibration: how far predicted probabilities are from the frequencies they claim, and temperature
scaling, the one-parameter correction fitted on validation.

Estimators take class probabilities p [..., N, C] (rows summing to 1) and class labels y [..., N]
with any leading axes (members K: each member its own rows) and return one value per leading index:

    ece(p, y, n_bins, binning="mass")       top-label ECE: sum_b (n_b / N) |acc_b - conf_b| over bins of the
                                            confidence max_c p_c (Guo et al. 2017); equal-mass bins by default
                                            (Nixon et al. 2019: less biased than equal-width ones)
    classwise_ece(p, y, n_bins, binning)    the mean over classes c of the ECE of p_c against 1[y = c]
                                            (Kull et al. 2019); on binary data this is the positive-class
                                            form, which differs from the top-label one
    ece_sweep(p, y)                         top-label ECE with equal-mass bins at the largest bin count whose
                                            bin accuracies still rise with confidence (Roelofs et al., AISTATS
                                            2022, "ECE_sweep": their estimator of least bias; no bin count to
                                            choose)
    reliability(p, y, n_bins)               per equal-mass bin: count, mean confidence, accuracy [..., B]

Equal-mass bins: the rows sorted by score (ties in row order), row of rank r in bin floor(r B / N), so
bins hold N / B rows, give or take one. Equal-width bins: score s in bin floor(s B), 1.0 in the last.

Temperature scaling (Guo et al. 2017) is defined on the log class probabilities l = log p, so that it
covers every head: p_T = softmax(l / T), i.e. p^(1/T) renormalised, which is softmax(z / T) for a
softmax head and sigmoid(z / T) for one sigmoid unit. T > 0 never changes the order of a row's
probabilities, so the predicted class (and the accuracy) stays the same.

    fit_temperature(l, y)                   T [...] minimising the mean NLL of softmax(l / T) over the rows
    scaled(l, T)                            p_T [..., N, C]
    temperature_scaling(head, z_val, y_val, z_test, y_test, n_bins)
                                            per member: T fitted on its validation rows, the probability
                                            metrics of its test rows scaled, the reliability before and after

    probability_metrics(y, p, classes, n_bins)   what a member's probabilities score (log_loss and brier with
                                            scikit-learn, the calibration errors): the final test metrics
                                            that temperature scaling can change (bench.metrics calls it)

All of it in float64.
"""
import math

import torch

LOG_FLOOR = math.log(float(torch.finfo(torch.float64).eps))  # scikit-learn's clip of p in log_loss, in logs
TEMPERATURE_RANGE = (1e-2, 1e2)  # the search interval for T: a bound is returned where the optimum lies beyond
TOLERANCE = 1e-10  # the bisection's stop: the bracket of log T narrower than this


def top_label(p, y):
    """(confidence [..., N], hit [..., N]): the largest probability of each row and whether its class (the
    first of equal maxima) is the label, as float64."""
    confidence, predicted = p.double().max(-1)
    return confidence, (predicted == y).double()


def _bin_index(score, n_bins, binning):
    """The bin of every score [..., N] -> [..., N] long, equal-mass ("mass") or equal-width ("width")."""
    if binning == "mass":
        n = score.shape[-1]
        rank = score.argsort(dim=-1, stable=True).argsort(-1)  # [..., N]: each row's place in its sorted order
        return rank * n_bins // n
    if binning == "width":
        return (score * n_bins).floor().long().clamp(0, n_bins - 1)
    raise ValueError(f"binning={binning!r}; choose mass or width")


def _bin_sums(index, n_bins, *values):
    """Per bin sums [..., B] of each of `values` [..., N] and the count [..., B]."""
    zeros = torch.zeros(*index.shape[:-1], n_bins, dtype=torch.float64, device=index.device)
    count = zeros.scatter_add(-1, index, torch.ones_like(index, dtype=torch.float64))
    return count, *(zeros.scatter_add(-1, index, v.double()) for v in values)


def binned_error(score, hit, n_bins, binning="mass"):
    """sum_b (n_b / N) |mean hit_b - mean score_b| of scores [..., N] against outcomes [..., N] -> [...]:
    the ECE of one probability per row."""
    _, hits, scores = _bin_sums(_bin_index(score, n_bins, binning), n_bins, hit, score)
    return (hits - scores).abs().sum(-1) / score.shape[-1]


def ece(p, y, n_bins=15, binning="mass"):
    """Top-label expected calibration error of probabilities [..., N, C] and labels [..., N] -> [...]."""
    confidence, hit = top_label(p, y)
    return binned_error(confidence, hit, n_bins, binning)


def classwise_ece(p, y, n_bins=15, binning="mass"):
    """The mean over classes of the ECE of p_c against 1[y = c] -> [...]."""
    n_classes = p.shape[-1]
    score = p.double().movedim(-1, -2)  # [..., C, N]
    hit = torch.nn.functional.one_hot(y, n_classes).movedim(-1, -2)  # [..., C, N]
    return binned_error(score, hit, n_bins, binning).mean(-1)


def ece_sweep(p, y):
    """Roelofs et al.'s ECE_sweep (top label, equal mass, L1) -> [...]: bin counts b = 2, 3, ..., N - 1 are
    tried in turn and the ECE is read at the last b before the bin accuracies first fall somewhere from one
    bin to the next (1 bin if b = 2 already falls), as in their reference code (robustness_metrics' msce).
    Sorted by confidence once: the bins of b are the same runs of sorted rows for every leading index."""
    confidence, hit = top_label(p, y)
    order = confidence.argsort(dim=-1, stable=True)
    confidence, hit = confidence.gather(-1, order), hit.gather(-1, order)  # [..., N] in rising confidence
    n = confidence.shape[-1]
    error = (hit.sum(-1) - confidence.sum(-1)).abs() / n  # [...]: one bin
    rising = torch.ones_like(error, dtype=torch.bool)  # still monotone at every b so far
    rank = torch.arange(n, device=confidence.device)
    for b in range(2, n):
        index = (rank * b // n).expand_as(confidence)
        count, hits, scores = _bin_sums(index, b, hit, confidence)
        accuracy = hits / count
        rising &= (accuracy[..., 1:] >= accuracy[..., :-1]).all(-1)
        if not rising.any():
            break
        error = torch.where(rising, (hits - scores).abs().sum(-1) / n, error)
    return error


def reliability(p, y, n_bins=15):
    """The reliability diagram's data, per equal-mass bin of the confidence: {"count", "confidence",
    "accuracy"} [..., B] (mean confidence and accuracy NaN in an empty bin: more bins than rows)."""
    confidence, hit = top_label(p, y)
    count, hits, scores = _bin_sums(_bin_index(confidence, n_bins, "mass"), n_bins, hit, confidence)
    return {"count": count, "confidence": scores / count, "accuracy": hits / count}


def probability_metrics(y, p, classes, n_bins=15) -> dict:
    """What one member's probabilities p [N, C] score against its labels y [N] (numpy or tensors), as
    floats: log_loss and brier (scikit-learn; brier halved on binary data, as scikit-learn), ece,
    ece_classwise and ece_sweep."""
    from sklearn import metrics as skm

    p, y = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(y)
    return {"log_loss": skm.log_loss(y.numpy(), p.numpy(), labels=classes),
            "brier": skm.brier_score_loss(y.numpy(), p.numpy(), labels=classes),
            "ece": float(ece(p, y, n_bins)), "ece_classwise": float(classwise_ece(p, y, n_bins)),
            "ece_sweep": float(ece_sweep(p, y))}


# ---------------------------------------------------------------------------------------------
# temperature scaling

def nll(log_p, y, temperature):
    """Mean negative log-likelihood of softmax(log_p / T) over the rows: log_p [..., N, C], y [..., N],
    temperature [...] -> [...]."""
    logits = _floored(log_p) / temperature[..., None, None]
    return (logits.logsumexp(-1) - logits.gather(-1, y[..., None]).squeeze(-1)).mean(-1)


def _floored(log_p):
    # a probability of exactly 0 (a clipped linear unit) would make the likelihood -inf: raised to the floor of
    # scikit-learn's log_loss clip (only those: a finite log p below it is kept, as the head computed it)
    return log_p.double().nan_to_num(nan=math.nan, neginf=LOG_FLOOR)


def fit_temperature(log_p, y, bounds=TEMPERATURE_RANGE, tol=TOLERANCE):
    """T [...] minimising `nll(log_p, y, T)`, by bisection on the slope in s = log(1 / T).

    In the inverse temperature 1 / T the NLL is convex (a log-sum-exp of functions linear in it, less one),
    so its slope, mean_i (E_q[l_i] - l_iy) with q = softmax(l_i / T), rises with 1 / T: the minimum is where
    it crosses 0, bracketed to `tol` in log T. Where it does not cross inside `bounds` (every validation row
    right and confident: the NLL falls all the way to T -> 0) the nearer bound is returned."""
    l = _floored(log_p)  # [..., N, C]
    l_true = l.gather(-1, y[..., None]).squeeze(-1)  # [..., N]
    lead = l.shape[:-2]
    low = torch.full(lead, -math.log(bounds[1]), dtype=torch.float64, device=l.device)  # log(1 / T) bracket
    high = torch.full(lead, -math.log(bounds[0]), dtype=torch.float64, device=l.device)
    while bool(((high - low) > tol).any()):
        mid = (low + high) / 2
        q = torch.softmax(mid.exp()[..., None, None] * l, -1)
        slope = ((q * l).sum(-1) - l_true).mean(-1)  # d NLL / d(1 / T) [...]
        up = slope <= 0  # the NLL still falls (or is flat to float precision): the minimum is at a larger 1 / T
        low, high = torch.where(up, mid, low), torch.where(up, high, mid)
    return torch.exp(-(low + high) / 2)


def scaled(log_p, temperature):
    """p_T = softmax(log_p / T) [..., N, C] for temperature [...]."""
    return torch.softmax(_floored(log_p) / temperature[..., None, None], -1)


def temperature_scaling(head, z_val, y_val, z_test, y_test, n_bins=15) -> list:
    """Per member: {"temperature": T fitted on its validation rows, "test_scaled": `probability_metrics` of
    its test rows after scaling, "reliability": {"before", "after"}: `reliability` of its test rows as lists},
    or None for a member whose outputs are not all finite (diverged).

    z_val [K, Nv, O], z_test [K, Nt, O]: raw outputs; y_val, y_test: labels [Nv] / [Nt] shared by the
    members, or [K, Nv] / [K, Nt], each member's own."""
    z_val, z_test = torch.as_tensor(z_val).double(), torch.as_tensor(z_test).double()
    k = len(z_val)
    y_val, y_test = torch.as_tensor(y_val).expand(k, -1), torch.as_tensor(y_test).expand(k, -1)
    finite = z_val.isfinite().flatten(1).all(1) & z_test.isfinite().flatten(1).all(1)  # [K]
    temperature = fit_temperature(head.log_class_probabilities(z_val).nan_to_num(), y_val)  # [K]
    p_test = head.classify(z_test)[1]  # [K, Nt, C]
    p_scaled = scaled(head.log_class_probabilities(z_test).nan_to_num(), temperature)  # [K, Nt, C]
    diagrams = {when: {name: [[None if math.isnan(x) else x for x in row] for row in v.tolist()]  # JSON: no NaN
                       for name, v in reliability(p, y_test, n_bins).items()}
                for when, p in (("before", p_test), ("after", p_scaled))}
    classes = list(range(head.n_classes))
    return [{"temperature": float(temperature[m]),
             "test_scaled": probability_metrics(y_test[m], p_scaled[m], classes, n_bins),
             "reliability": {when: {name: values[m] for name, values in d.items()} for when, d in diagrams.items()}}
            if finite[m] else None for m in range(k)]
