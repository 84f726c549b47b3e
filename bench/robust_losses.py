"""Classification losses made to resist wrong labels; their records are in bench.losses (LOSSES).

Each takes softmax probabilities `y_pred [..., B, C]` and class targets `y_true [..., B, C]` (one-hot,
or soft with label smoothing) and returns `[..., B]`; each has a fused form of the logits z
(`*_with_logits`, through log-softmax) that training uses, so no probability is clipped there. The
probability forms normalise each row and clip it to [eps, 1 - eps] like bench.losses.cce. p_t below is
the probability given to the target, sum_c y_c p_c (p_y for a one-hot target).

    gce      (1 - p_t^q) / q                          Zhang & Sabuncu, NeurIPS 2018 (q -> 0: CCE; q = 1: 1 - p_t)
    sce      alpha CE + beta RCE                      Wang et al., ICCV 2019
    poly1    CE + epsilon (1 - p_t)                   Leng et al., ICLR 2022 (epsilon = 0: CCE)
    nce_rce  alpha CE / sum_j (-log p_j) + beta RCE   Ma et al., ICML 2020 (NCE: the active, RCE the passive term)

RCE, the reverse cross-entropy, is -sum_c p_c log y_c with log 0 replaced by A = -4 (Wang et al.
section 3.3): for a one-hot target it is -A (1 - p_y) = 4 (1 - p_y), i.e. 2 x MAE on the probabilities.
"""
import math

import torch

EPS = 1e-7  # the probability floor of bench.losses (EPS there; tests/test_losses.py checks they agree)
LOG_ZERO = -4.0  # A: the value RCE puts for log 0 (Wang et al. 2019)


def _probabilities(y_pred):
    return (y_pred / y_pred.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)


def _rce_weights(y_true):
    # RCE = sum_c p_c w_c, w_c = -log y_c with the log clipped at A (y_c = 0 counts as log 0 = A): a
    # function of the targets alone
    return -y_true.clamp(math.exp(LOG_ZERO), 1).log()


def _rce(p, y_true):
    return (p * _rce_weights(y_true)).sum(-1)


def gce(y_pred, y_true, q=0.7):
    """Generalized cross-entropy (1 - p_t^q) / q, q in (0, 1]: CCE as q -> 0, MAE-like (1 - p_t) at q = 1."""
    p_t = (y_true * _probabilities(y_pred)).sum(-1)
    return (1 - p_t.pow(q)) / q


def sce(y_pred, y_true, alpha=0.1, beta=1.0):
    """Symmetric cross-entropy alpha CE + beta RCE (defaults: the paper's CIFAR-10 setting)."""
    p = _probabilities(y_pred)
    return alpha * -(y_true * p.log()).sum(-1) + beta * _rce(p, y_true)


def poly1(y_pred, y_true, epsilon=1.0):
    """Poly-1: CE + epsilon (1 - p_t), epsilon >= -1 (1 in the paper's first experiments)."""
    p = _probabilities(y_pred)
    return -(y_true * p.log()).sum(-1) + epsilon * (1 - (y_true * p).sum(-1))


def nce_rce(y_pred, y_true, alpha=1.0, beta=1.0):
    """Active-passive loss NCE + RCE: alpha (-sum_c y_c log p_c) / (-sum_j log p_j) + beta RCE
    (defaults: the paper's CIFAR-10 setting)."""
    p = _probabilities(y_pred)
    log_p = p.log()
    return alpha * (y_true * log_p).sum(-1) / log_p.sum(-1) + beta * _rce(p, y_true)


# ---------------------------------------------------------------------------------------------
# fused forms: f(z, y, activation, **params) of the logits (softmax only)

def _gce_with_logits(z, y_true, activation, q=0.7):
    p_t = (y_true * torch.softmax(z, -1)).sum(-1).clamp_min(EPS)  # p_t^q has an infinite slope at 0
    return (1 - p_t.pow(q)) / q


def _sce_with_logits(z, y_true, activation, alpha=0.1, beta=1.0):
    log_p = torch.log_softmax(z, -1)
    return (-alpha * y_true * log_p + beta * _rce_weights(y_true) * log_p.exp()).sum(-1)


def _poly1_with_logits(z, y_true, activation, epsilon=1.0):
    # CE + epsilon (1 - p_t) = epsilon - sum_c y_c (log p_c + epsilon p_c)
    log_p = torch.log_softmax(z, -1)
    return epsilon - (y_true * torch.add(log_p, log_p.exp(), alpha=epsilon)).sum(-1)


def _nce_rce_with_logits(z, y_true, activation, alpha=1.0, beta=1.0):
    # sum_c [log p_c alpha y_c / sum_j log p_j + p_c beta w_c]: one sum over the classes, the RCE term added
    # by one addcmul (two fewer autograd nodes than summing NCE and RCE apart, ~10 % of its step)
    log_p = torch.log_softmax(z, -1)
    nce = log_p * (alpha * y_true / log_p.sum(-1, keepdim=True))
    return torch.addcmul(nce, log_p.exp(), beta * _rce_weights(y_true)).sum(-1)
