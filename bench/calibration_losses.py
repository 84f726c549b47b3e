"""Classification losses of the calibration literature; their records are in bench.losses (LOSSES).

Each takes softmax probabilities `y_pred [..., B, C]` and one-hot class targets `y_true [..., B, C]` and
returns `[..., B]`; each has a fused form of the logits z that training uses, exact where p_t rounds to
0 or 1 in float32. p_t below is the probability given to the target class.

    categorical_focal  -(1 - p_t)^gamma log p_t      the focal loss on one softmax distribution (Lin et al.
                                                     2017's multiclass form, as Mukhoti et al., NeurIPS 2020,
                                                     train it for calibration); gamma = 0 is CCE
    flsd53             the same with gamma = 5 where p_t < 0.2, else 3: Mukhoti et al.'s sample-dependent
                       FLSD-53, gamma read off p_t and not differentiated through (their code takes it with
                       .item())

`categorical_focal` is not bench.losses.focal on softmax outputs: that one is a binary focal loss on each
unit, averaged over the units. Label smoothing (Mueller et al. 2019) is cce's own `label_smoothing`.
"""
import math

import torch
import torch.nn.functional as F

EPS = 1e-7  # the probability floor of bench.losses (tests/test_losses.py checks they agree)
FLSD_THRESHOLD = 0.2  # p_t below it: gamma 5, else 3
FLSD_GAMMAS = (5.0, 3.0)


def _true_probability(y_pred, y_true):
    """(p_t, log p_t) [..., B] of rows normalised to sum 1 and clipped to [eps, 1 - eps], as bench.losses.cce."""
    p = (y_pred / y_pred.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return (y_true * p).sum(-1), (y_true * p.log()).sum(-1)


def _flsd_gamma(p_true):
    return torch.where(p_true.detach() < FLSD_THRESHOLD, *FLSD_GAMMAS)


def categorical_focal(y_pred, y_true, gamma=3.0):
    """-(1 - p_t)^gamma log p_t on the class distribution, gamma >= 0 (3 in Mukhoti et al.'s best fixed setting)."""
    p_true, log_p_true = _true_probability(y_pred, y_true)
    return -(1 - p_true).pow(gamma) * log_p_true


def flsd53(y_pred, y_true):
    """FLSD-53: categorical focal with gamma = 5 where p_t < 0.2, else 3 (gamma not differentiated)."""
    p_true, log_p_true = _true_probability(y_pred, y_true)
    return -(1 - p_true).pow(_flsd_gamma(p_true)) * log_p_true


# ---------------------------------------------------------------------------------------------
# fused forms: f(z, y, activation, **params) of the logits (softmax only)

def _wrong_logit(z, y_true):
    """w [..., B] = log(1 - p_t) - log p_t = logsumexp_{c != t} z_c - z_t for one-hot targets: -log p_t is
    softplus(w) and log(1 - p_t) is logsigmoid(w), both exact where 1 - p_t underflows (no 1 - p)."""
    others = z.masked_fill(y_true > 0.5, -math.inf).logsumexp(-1)
    return others - (z * y_true).sum(-1)


def _focal_of_wrong_logit(wrong, gamma):
    # -(1 - p_t)^gamma log p_t, the factor in log space: its gradient stays finite where 1 - p_t underflows
    return F.softplus(wrong) * torch.exp(gamma * F.logsigmoid(wrong))


def _categorical_focal_with_logits(z, y_true, activation, gamma=3.0):
    return _focal_of_wrong_logit(_wrong_logit(z, y_true), gamma)


def _flsd53_with_logits(z, y_true, activation):
    wrong = _wrong_logit(z, y_true)
    return _focal_of_wrong_logit(wrong, _flsd_gamma(torch.sigmoid(-wrong)))  # p_t = sigmoid(-w)
