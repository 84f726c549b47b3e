"""Losses, output activations, and how a task meets a (loss, activation) pair.

Public API (see DESIGN "Losses and activations"):

    LOSSES["mse"](y_pred, y_true, **params) -> Tensor[..., B]   per-example, reduced over outputs
    ACTIVATIONS["sigmoid"](z) -> Tensor
    objective("bce", "sigmoid") -> f(z, y) -> Tensor[..., B]   fused and stable where possible
    VALIDITY[(task, activation, loss)] -> None (valid) or the reason it makes no sense
    make_head(task, n_classes, n_targets, activation, loss, params) -> Head
    anatomy(loss, activation, target, z=None) -> {"z", "loss", "grad"}   numpy arrays, for plots

Shapes: predictions and targets are `[..., B, O]` (a leading member axis K in training); every loss
returns `[..., B]`. Element-wise losses average over the O outputs; distribution losses (cce,
kl_div) sum over classes. `y_pred` is the activated output (probabilities for the
cross-entropies). Conventions follow Keras / torch / scikit-learn: MAPE is in percent,
`100 |y - p| / max(|y|, eps)`; BCE and focal clip probabilities to [eps, 1 - eps]; CCE and KL
normalise each row to sum 1, then clip; MSLE clips both sides at eps (Keras); Poisson is
`p - y log(p + eps)` (torch PoissonNLLLoss, log_input=False); hinge losses take targets in {-1, +1};
eps = 1e-7.

`python -m bench.losses` prints the validity matrix as markdown; `python -m bench.losses README.md`
rewrites the generated block of the README (tests/test_losses.py fails when they disagree).
"""
import inspect
import math
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from bench.errors import UserError, check_choice

EPS = 1e-7
TASKS = ("regression", "binary", "multiclass")


# ---------------------------------------------------------------------------------------------
# losses: (y_pred [..., B, O], y_true [..., B, O]) -> [..., B]

def mse(y_pred, y_true):
    """Mean squared error, (y - p)^2."""
    return (y_pred - y_true).pow(2).mean(-1)


def mae(y_pred, y_true):
    """Mean absolute error, |y - p|."""
    return (y_pred - y_true).abs().mean(-1)


def huber(y_pred, y_true, delta=1.0):
    """Huber: 0.5 e^2 for |e| <= delta, delta (|e| - 0.5 delta) beyond (torch HuberLoss)."""
    err = (y_pred - y_true).abs()
    quadratic = 0.5 * err.pow(2)
    linear = delta * (err - 0.5 * delta)
    return torch.where(err <= delta, quadratic, linear).mean(-1)


def log_cosh(y_pred, y_true):
    """log cosh(p - y), as |e| + log(1 + exp(-2|e|)) - log 2 so it stays finite for large |e|."""
    err = (y_pred - y_true).abs()
    return (err + F.softplus(-2 * err) - math.log(2)).mean(-1)


def mape(y_pred, y_true, eps=EPS):
    """Mean absolute percentage error in percent: 100 |y - p| / max(|y|, eps)."""
    return (100 * (y_pred - y_true).abs() / y_true.abs().clamp_min(eps)).mean(-1)


def msle(y_pred, y_true):
    """Mean squared log error, (log(1 + p) - log(1 + y))^2 with p and y clipped at eps (Keras)."""
    return (torch.log1p(y_pred.clamp_min(EPS)) - torch.log1p(y_true.clamp_min(EPS))).pow(2).mean(-1)


def poisson(y_pred, y_true):
    """Poisson negative log-likelihood without the log(y!) constant: p - y log(p + eps)."""
    return (y_pred - y_true * torch.log(y_pred + EPS)).mean(-1)


def _smooth_binary(y, label_smoothing):
    # Keras convention: y -> y * (1 - s) + 0.5 * s
    if not label_smoothing:  # the default: no two ops in every training step
        return y
    return y * (1 - label_smoothing) + 0.5 * label_smoothing


def _smooth_categorical(y, label_smoothing):
    # torch/Keras convention: y -> y * (1 - s) + s / C
    if not label_smoothing:  # the default: no two ops in every training step
        return y
    return y * (1 - label_smoothing) + label_smoothing / y.shape[-1]


def bce(y_pred, y_true, label_smoothing=0.0):
    """Binary cross-entropy per unit, -[y log p + (1 - y) log(1 - p)], p clipped to [eps, 1 - eps]."""
    y = _smooth_binary(y_true, label_smoothing)
    p = y_pred.clamp(EPS, 1 - EPS)
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean(-1)


def focal(y_pred, y_true, gamma=2.0):
    """Binary focal loss per unit (Lin et al. 2017, no class weight): BCE x (1 - p_t)^gamma, where
    p_t = y p + (1 - y)(1 - p) is the probability given to the true label; gamma = 0 is BCE."""
    p = y_pred.clamp(EPS, 1 - EPS)
    cross = -(y_true * p.log() + (1 - y_true) * (1 - p).log())
    p_true = y_true * p + (1 - y_true) * (1 - p)
    return (cross * (1 - p_true).pow(gamma)).mean(-1)


def cce(y_pred, y_true, label_smoothing=0.0):
    """Categorical cross-entropy, -sum_c y_c log p_c (rows normalised to sum 1, then clipped)."""
    y = _smooth_categorical(y_true, label_smoothing)
    p = (y_pred / y_pred.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return -(y * p.log()).sum(-1)


def kl_div(y_pred, y_true, label_smoothing=0.0):
    """Kullback-Leibler divergence KL(y || p) = sum_c y_c (log y_c - log p_c): CCE minus the
    entropy of the targets, so 0 at a perfect fit also with label smoothing."""
    y = _smooth_categorical(y_true, label_smoothing)
    p = (y_pred / y_pred.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return (torch.xlogy(y, y) - y * p.log()).sum(-1)


def hinge(y_pred, y_true):
    """Hinge, max(0, 1 - y p), targets y in {-1, +1} (one-vs-rest per unit on multiclass)."""
    return (1 - y_true * y_pred).clamp_min(0).mean(-1)


def squared_hinge(y_pred, y_true):
    """Squared hinge, max(0, 1 - y p)^2, targets y in {-1, +1}."""
    return (1 - y_true * y_pred).clamp_min(0).pow(2).mean(-1)


LOSSES = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "log_cosh": log_cosh,
    "mape": mape,
    "msle": msle,
    "poisson": poisson,
    "bce": bce,
    "focal": focal,
    "cce": cce,
    "kl_div": kl_div,
    "hinge": hinge,
    "squared_hinge": squared_hinge,
}

# allowed values of the loss parameters (keys of conf/loss/<name>.yaml beyond `name`)
PARAM_RULES = {
    "delta": (lambda v: v > 0, "a number > 0"),
    "eps": (lambda v: v > 0, "a number > 0"),
    "gamma": (lambda v: v >= 0, "a number >= 0"),
    "label_smoothing": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
}


def loss_parameters(loss: str) -> list:
    """Names of the keyword parameters of LOSSES[loss] (after y_pred, y_true)."""
    return list(inspect.signature(LOSSES[loss]).parameters)[2:]


def check_loss_params(loss: str, params: dict) -> None:
    """One-line UserError for a parameter the loss does not take or a value out of range."""
    check_choice("loss", loss, LOSSES)
    allowed = loss_parameters(loss)
    for key, value in params.items():
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no parameters"
            raise UserError(f"loss.{key} is not a parameter of loss={loss}; it takes: {takes}")
        ok, what = PARAM_RULES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise UserError(f"loss.{key}={value!r} is not allowed; it must be {what}")


# ---------------------------------------------------------------------------------------------
# output activations: z [..., B, O] -> prediction

def _over_classes(fn, z):
    """fn(z, dim=-1), the same values; torch's CPU kernel along a short last axis (< 16 classes) is
    several times slower than along the first axis once there are many rows (e.g. 14 µs vs 2.2 µs per
    1000 rows of 10 classes, fwd+bwd), so on CPU the class axis is moved to the front."""
    if z.device.type == "cpu" and z.shape[-1] < 16 and z.numel() >= 256 * z.shape[-1]:
        return fn(z.movedim(-1, 0), dim=0).movedim(0, -1)
    return fn(z, dim=-1)


def _first_argmax(scores):
    """The index of the first maximum along the last axis, as scores.max(-1).indices but from two amax
    and two elementwise passes: torch's CPU max-with-indices and argmax over a short axis are
    ~10x slower than amax (1.7 ms against 0.15 ms for 1.2M scores of 10 classes). NaN rows get the
    last index (they belong to members the curves mark as diverged)."""
    n = scores.shape[-1]
    first = torch.arange(n, 0, -1, device=scores.device, dtype=scores.dtype)  # n for index 0, ... 1
    key = torch.where(scores == scores.amax(-1, keepdim=True), first, 0)  # > 0 only at the maxima
    return (n - key.amax(-1)).long().clamp_(max=n - 1)


ACTIVATIONS = {
    "linear": lambda z: z,
    "sigmoid": torch.sigmoid,
    "softmax": lambda z: _over_classes(torch.softmax, z),
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "exp": torch.exp,
}
RANGES = {"linear": "(-inf, inf)", "sigmoid": "(0, 1)", "softmax": "(0, 1) summing to 1",
          "tanh": "(-1, 1)", "softplus": "(0, inf)", "exp": "(0, inf)"}


# ---------------------------------------------------------------------------------------------
# fused objectives: the same values as loss(activation(z), y), computed from the logits so they
# stay finite and keep their gradient where the composition saturates (|z| large)

def _log_probs(z, activation):
    """(log p, log(1 - p)) per unit from the logits, without forming p (sigmoid or softmax)."""
    if activation == "sigmoid":
        return F.logsigmoid(z), F.logsigmoid(-z)
    # softmax: log(1 - p_c) = logsumexp_{j != c} z_j - logsumexp_j z_j
    n = z.shape[-1]
    mask = torch.eye(n, dtype=torch.bool, device=z.device)
    others = z.unsqueeze(-2).expand(*z.shape, n).masked_fill(mask, -math.inf)  # [..., C, C]: row c without z_c
    total = torch.logsumexp(z, dim=-1, keepdim=True)
    return z - total, torch.logsumexp(others, dim=-1) - total


def _bce_with_logits(z, y_true, activation, label_smoothing=0.0):
    y = _smooth_binary(y_true, label_smoothing)
    log_p, log_q = _log_probs(z, activation)
    return -(y * log_p + (1 - y) * log_q).mean(-1)


def _focal_with_logits(z, y_true, activation, gamma=2.0):
    log_p, log_q = _log_probs(z, activation)
    cross = -(y_true * log_p + (1 - y_true) * log_q)
    # log(1 - p_t) = log(y (1 - p) + (1 - y) p), in log space: the factor keeps a finite gradient
    log_miss = torch.logaddexp(torch.log(y_true) + log_q, torch.log1p(-y_true) + log_p)
    return (cross * torch.exp(gamma * log_miss)).mean(-1)


def _cce_with_logits(z, y_true, activation, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    return -(y * _over_classes(torch.log_softmax, z)).sum(-1)


def _cce_and_gradient(z, y_true):
    """(per-example CCE [..., B], its gradient d loss_i / dz_i [..., B, C]) of softmax outputs by hand:
    softmax(z) - y, since every row of y sums to 1. Autograd on the same objective costs several
    times the arithmetic on the small tensors of a training step."""
    log_p = _over_classes(torch.log_softmax, z)
    loss = -(y_true * log_p).sum(-1)
    return loss, log_p.exp_().sub_(y_true)


def _kl_with_logits(z, y_true, activation, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    return (torch.xlogy(y, y) - y * _over_classes(torch.log_softmax, z)).sum(-1)


def _poisson_with_log_rate(z, y_true, activation):
    # exp(z) - y z: torch PoissonNLLLoss(log_input=True); drops the eps of the composed form
    return (torch.exp(z) - y_true * z).mean(-1)


FUSED = {
    ("bce", "sigmoid"): _bce_with_logits,
    ("bce", "softmax"): _bce_with_logits,
    ("focal", "sigmoid"): _focal_with_logits,
    ("focal", "softmax"): _focal_with_logits,
    ("cce", "softmax"): _cce_with_logits,
    ("kl_div", "softmax"): _kl_with_logits,
    ("poisson", "exp"): _poisson_with_log_rate,
}


def objective(loss: str, activation: str, **params):
    """The per-example objective f(z, y) -> [..., B] of raw outputs z; fused where a stable form exists."""
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ACTIVATIONS)
    fused = FUSED.get((loss, activation))
    if fused is not None:
        return partial(fused, activation=activation, **params)
    loss_fn, act = LOSSES[loss], ACTIVATIONS[activation]

    def composed(z, y):
        return loss_fn(act(z), y, **params)

    return composed


# ---------------------------------------------------------------------------------------------
# which (task, activation, loss) triples make sense: one table, a reason for every invalid triple

REGRESSION_LOSSES = ("mse", "mae", "huber", "log_cosh", "mape", "msle", "poisson")
CLASSIFICATION_LOSSES = ("mse", "mae", "huber", "log_cosh", "bce", "focal", "cce", "kl_div", "hinge",
                         "squared_hinge")
MARGIN_LOSSES = ("hinge", "squared_hinge")  # targets in {-1, +1}
# each task's usual (activation, loss): the reference every other pairing is compared with
CANONICAL = {"regression": ("linear", "mse"), "binary": ("sigmoid", "bce"), "multiclass": ("softmax", "cce")}
# the activation a loss is made for (auto picks it where the task allows it)
NATURAL = {"bce": "sigmoid", "focal": "sigmoid", "cce": "softmax", "kl_div": "softmax",
           "hinge": "linear", "squared_hinge": "linear", "poisson": "exp", "msle": "softplus"}


def allowed_activations(task: str, loss: str) -> tuple:
    """The activations that make sense for `loss` on `task` (empty when the loss does not fit the task)."""
    if task == "regression":
        if loss not in REGRESSION_LOSSES:
            return ()
        return ("exp", "softplus") if loss == "poisson" else ("linear", "softplus", "exp")
    if loss not in CLASSIFICATION_LOSSES:
        return ()
    if loss in ("bce", "focal"):
        return ("sigmoid", "softmax")
    if loss in ("cce", "kl_div"):
        return ("softmax",)
    if loss in MARGIN_LOSSES:
        return ("linear", "tanh")
    return ("linear", "sigmoid", "softmax", "tanh")


def _reason(task: str, activation: str, loss: str) -> str | None:
    allowed = allowed_activations(task, loss)
    if not allowed:  # the loss does not fit the task at all
        if task == "regression":
            return (f"loss={loss} needs class targets; a regression task fits: "
                    f"{', '.join(REGRESSION_LOSSES)}")
        fits = f"a {task} task fits: {', '.join(CLASSIFICATION_LOSSES)}"
        if loss == "mape":
            return f"loss=mape divides by |y| and class targets are 0 for every other class; {fits}"
        return f"loss={loss} is for non-negative regression targets (amounts, counts), not class labels; {fits}"
    if activation in allowed:
        return None
    use = "use activation=" + (" or ".join(allowed) if len(allowed) < 3 else
                               f"{', '.join(allowed[:-1])} or {allowed[-1]}")
    span = RANGES[activation]
    if task == "regression":
        if activation == "softmax":
            why = "activation=softmax ties the outputs into a distribution summing to 1, but regression targets are independent values"
        elif activation in ("sigmoid", "tanh"):
            why = f"activation={activation} bounds the output to {span} but regression targets are unbounded"
        else:  # poisson + linear
            why = f"loss={loss} takes the log of the predicted rate, which must be positive; activation=linear can go negative"
    elif activation in ("softplus", "exp"):
        why = f"activation={activation} gives a positive unbounded output (a rate or an amount, for regression), not a class score"
    elif loss in ("bce", "focal"):
        why = f"loss={loss} needs probabilities in (0, 1); activation={activation} gives values in {span}"
    elif loss in ("cce", "kl_div"):
        why = (f"loss={loss} needs one distribution over the classes (summing to 1); " +
               ("sigmoid units are independent" if activation == "sigmoid" else f"activation={activation} gives values in {span}"))
    else:  # margin losses on positive outputs
        why = (f"loss={loss} wants a score with a margin of 1 on both sides of 0 (targets -1/+1); "
               f"activation={activation} is never negative, so the -1 side never reaches its margin")
    return f"{why}; {use}"


# (task, activation, loss) -> None when valid, else the reason (one line)
VALIDITY = {(t, a, l): _reason(t, a, l) for t in TASKS for a in ACTIVATIONS for l in LOSSES}


def canonical_activation(task: str, loss: str) -> str:
    """`activation=auto`: the activation the loss is made for (sigmoid for bce/focal, softmax for
    cce/kl_div, linear for the hinges, exp for poisson, softplus for msle) where the task allows
    it, else the task's usual output (regression -> linear, binary -> sigmoid, multiclass -> softmax)."""
    natural = NATURAL.get(loss)
    return natural if natural in allowed_activations(task, loss) else CANONICAL[task][0]


def pairing_error(task: str, activation: str, loss: str) -> str | None:
    """Why (task, activation, loss) makes no sense, or None when it is valid."""
    return VALIDITY[(task, activation, loss)]


def resolve_pairing(task: str, activation: str, loss: str, params: dict | None = None) -> str:
    """Check the triple and the loss parameters (one-line UserError with the reason) and return the
    activation (auto resolved)."""
    check_choice("task", task, TASKS)
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ["auto", *ACTIVATIONS])
    check_loss_params(loss, dict(params or {}))
    shown = activation
    if activation == "auto":
        activation = canonical_activation(task, loss)
        shown = f"auto ({activation})"
    reason = pairing_error(task, activation, loss)
    if reason:
        raise UserError(f"invalid pairing task={task} activation={shown} loss={loss}: {reason}")
    return activation


# ---------------------------------------------------------------------------------------------
# the head: how a task meets one (loss, activation)

@dataclass(frozen=True)
class Head:
    """How a task meets one (loss, activation): output units, target encoding, objective, scores.

    Classification targets are encoded per unit: 1 unit with a 0/1 column on binary data (2 units,
    one-hot, for softmax), one unit per class (one-hot) on multiclass; the margin losses and tanh
    outputs use -1/+1 instead of 0/1. A unit "says yes" above the midpoint of its two levels
    (0.5 for 0/1, 0 for -1/+1).
    """

    task: str
    n_classes: int
    n_targets: int
    activation: str
    loss: str
    params: dict = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        if self.task == "regression":
            return self.n_targets
        if self.task == "binary" and self.activation != "softmax":
            return 1  # one unit: class 1 or not
        return self.n_classes  # one unit per class (2 softmax units on binary data)

    @property
    def levels(self) -> tuple:
        """(no, yes) target levels of a classification unit: (-1, 1) or (0, 1)."""
        return (-1.0, 1.0) if self.loss in MARGIN_LOSSES or self.activation == "tanh" else (0.0, 1.0)

    def unit_bits(self, y):
        """[N] class indices -> 0/1 float [N, O]: what each output unit should say."""
        if self.n_outputs == 1:
            return y.float().unsqueeze(-1)
        return F.one_hot(y, self.n_outputs).float()

    def encode(self, y):
        """Targets as the loss sees them: [N] class indices or [N, T] values -> float [N, O]."""
        if self.task == "regression":
            return y.float() if not y.is_floating_point() else y
        no, yes = self.levels
        return self.unit_bits(y) * (yes - no) + no

    def encoding(self) -> str:
        """The target encoding in words (for the README matrix)."""
        if self.task == "regression":
            return "y / scale"
        bits = "-1/+1" if self.levels[0] < 0 else "0/1"
        if self.n_outputs == 1:
            return f"1 unit {bits}"
        if self.task == "binary":
            return f"2 units {'one-hot' if bits == '0/1' else bits}"
        return "one-hot" if bits == "0/1" else "-1/+1 per class"

    @property
    def objective(self):
        return objective(self.loss, self.activation, **self.params)

    @property
    def objective_and_gradient(self):
        """f(z, t) -> (per-example objective [..., B], d objective_i / dz_i [..., B, O]) written by hand,
        for softmax + CCE without label smoothing (the default classification objective); None for
        every other objective (autograd computes theirs)."""
        if (self.loss, self.activation) != ("cce", "softmax") or self.params.get("label_smoothing"):
            return None
        return _cce_and_gradient

    def predict(self, z):
        """The activated output: regression predictions (scaled units) or per-unit class scores."""
        return ACTIVATIONS[self.activation](z)

    def unit_scores(self, z):
        """Per-unit class scores on the 0/1 scale: [..., N, O] (the activated output, -1/+1 mapped to 0/1)."""
        no, yes = self.levels
        scores = self.predict(z)
        return scores if (no, yes) == (0.0, 1.0) else (scores - no) / (yes - no)

    def unit_decisions(self, z):
        """Per-unit 0/1 decisions [..., N, O], for element-wise ("binary") accuracy."""
        return self.classify(z)[2]

    def labels(self, z):
        """Predicted class indices [..., N]: the unit above 0.5 (1 unit) or the argmax over units."""
        return self.classify(z)[0]

    def class_probabilities(self, z):
        """[..., N, O] outputs -> [..., N, C] class probabilities (rows sum to 1) for the metrics.

        softmax: as is; 1 unit: (1 - p, p) with p the unit's score clipped to [0, 1]; several
        sigmoid / linear / tanh units: scores below eps are replaced by eps (1 + softmax(scores)) / 2,
        in (eps/2, eps) and in the scores' order (so the argmax stays the labels'), then normalised.
        """
        return self.classify(z)[1]

    def classify(self, z):
        """(labels [..., N], class probabilities [..., N, C], unit decisions [..., N, O]) of raw
        outputs z [..., N, O], from one evaluation of the activation (the metrics need all three)."""
        scores = self.unit_scores(z)
        decisions = (scores > 0.5).float()
        if self.n_outputs == 1:
            p1 = scores.clamp(0, 1)
            return decisions[..., 0].long(), torch.cat([1 - p1, p1], dim=-1), decisions
        labels = _first_argmax(scores)
        if self.activation == "softmax":  # already a distribution (the scores are the output itself)
            return labels, scores, decisions
        p = torch.where(scores >= EPS, scores, EPS * (1 + torch.softmax(scores, dim=-1)) / 2)
        return labels, p / p.sum(-1, keepdim=True), decisions


def make_head(task, n_classes, n_targets, activation, loss, params=None) -> Head:
    """Validate the triple and the loss parameters and build its Head."""
    activation = resolve_pairing(task, activation, loss, params)
    return Head(task, n_classes, n_targets, activation, loss, dict(params or {}))


def check_targets(head: Head, y_train) -> None:
    """Reject targets the loss or output cannot use, before training, with a reason instead of inf/NaN.

    y_train: [N] class indices, or [N, T] regression targets as stored (y / target_scale: signs and
    zeros are the original ones).
    """
    n = y_train.numel()
    if head.task != "regression":
        low, high = int(y_train.min()), int(y_train.max())
        if low < 0 or high >= head.n_classes:
            raise UserError(f"class labels span {low}..{high} but task={head.task} has {head.n_classes} "
                            f"classes (0..{head.n_classes - 1})")
        return
    if not torch.isfinite(y_train).all():
        bad = int((~torch.isfinite(y_train)).sum())
        raise UserError(f"{bad} of {n} training targets are NaN or inf; clean the data first")
    zeros, negative = int((y_train == 0).sum()), int((y_train < 0).sum())
    if head.loss == "mape" and zeros:
        raise UserError(f"loss=mape divides by |y| but {zeros} of {n} training targets are 0 (the loss "
                        "there is ~1e9 %, not a signal); use loss=mae, huber or mse, or drop those rows")
    if head.loss in ("msle", "poisson") and negative:
        need = "log(1 + y)" if head.loss == "msle" else "y as a count"
        raise UserError(f"loss={head.loss} takes {need} and needs targets >= 0 but {negative} of {n} "
                        "training targets are negative; use loss=mse, mae or huber")
    if head.activation in ("softplus", "exp") and negative:
        raise UserError(f"activation={head.activation} outputs positive values only but {negative} of {n} "
                        "training targets are negative; use activation=linear")


# ---------------------------------------------------------------------------------------------
# anatomy: the loss and its gradient against one logit, for the report

def anatomy(loss: str, activation: str, target, z=None, **params) -> dict:
    """Loss and dloss/dz of one output unit over a grid of logits, by autograd.

    target: a class, 0 or 1, where (activation, loss) is a classification pairing (encoded as a
        run encodes it: 0/1, or -1/+1 for the hinges and tanh); otherwise a regression target
        value (in the scaled units the loss sees). mse/mae/huber/log_cosh with linear, sigmoid or
        tanh and a 0/1 target are read as classification (the same numbers for 0/1 encodings).
    z: the logits, 1-D (default: 401 points on [-10, 10]).
    softmax: two units with logits (0, z), so p(class 1) = sigmoid(z); z is the margin of class 1
        over class 0 and `grad` is dloss/dz at the second unit.

    Returns {"z": [G], "loss": [G], "grad": [G]} float64 numpy arrays. An invalid pairing or a
    target the loss cannot take raises UserError with the reason.

    >>> a = anatomy("bce", "sigmoid", 1.0, z=[0.0])
    >>> round(float(a["loss"][0]), 4), round(float(a["grad"][0]), 4)   # log 2, sigmoid(0) - 1
    (0.6931, -0.5)
    """
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ACTIVATIONS)
    check_loss_params(loss, params)
    target = float(target)
    if VALIDITY[("binary", activation, loss)] is None and target in (0.0, 1.0):
        task = "binary"
    elif VALIDITY[("regression", activation, loss)] is None:
        task = "regression"
    elif VALIDITY[("binary", activation, loss)] is None:
        raise UserError(f"target={target:g} is not a class; {activation}+{loss} is a classification "
                        "pairing: use target 0 or 1")
    else:
        raise UserError(f"activation={activation} loss={loss} is valid for no task: "
                        f"{VALIDITY[('binary', activation, loss)]}")
    head = Head(task, 2 if task == "binary" else 0, 1, activation, loss, params)
    y = torch.tensor([int(target)]) if task == "binary" else torch.tensor([[target]], dtype=torch.float64)
    if task == "regression" and ((loss == "mape" and target == 0) or (target < 0 and (
            loss in ("msle", "poisson") or activation in ("softplus", "exp")))):
        need = "a non-zero target (it divides by |y|)" if loss == "mape" else "a target >= 0"
        raise UserError(f"target={target:g} does not fit {activation}+{loss}: it needs {need}")
    check_targets(head, y)
    grid = torch.linspace(-10, 10, 401, dtype=torch.float64) if z is None else \
        torch.as_tensor(z, dtype=torch.float64).reshape(-1)
    logit = grid.clone().requires_grad_(True)
    units = torch.stack([torch.zeros_like(logit), logit], -1) if head.n_outputs == 2 else logit[:, None]  # [G, O]
    values = head.objective(units, head.encode(y).double())  # [G]
    (grad,) = torch.autograd.grad(values.sum(), logit)
    return {"z": grid.numpy(), "loss": values.detach().numpy(), "grad": grad.numpy()}


# ---------------------------------------------------------------------------------------------
# the validity matrix as markdown (README)

README_START = "<!-- validity matrix: generated by `python -m bench.losses README.md`; do not edit -->"
README_END = "<!-- end of validity matrix -->"


def validity_markdown() -> str:
    """The validity matrix from VALIDITY: one table per task (rows losses, columns activations),
    each valid cell with its target encoding (**auto** marks the canonical activation), each
    invalid cell with a numbered reason listed under the table."""
    lines = []
    for task in TASKS:
        reasons = []
        lines += [f"**{task}**", "", "| loss | " + " | ".join(ACTIVATIONS) + " |",
                  "| --- |" + " --- |" * len(ACTIVATIONS)]
        for loss in LOSSES:
            cells = []
            for activation in ACTIVATIONS:
                reason = VALIDITY[(task, activation, loss)]
                if reason is None:
                    head = Head(task, 2 if task == "binary" else 10, 1, activation, loss)
                    auto = " **auto**" if canonical_activation(task, loss) == activation else ""
                    cells.append(f"✓ {head.encoding()}{auto}")
                else:
                    if reason not in reasons:
                        reasons.append(reason)
                    cells.append(f"✗ {reasons.index(reason) + 1}")
            lines.append(f"| `{loss}` | " + " | ".join(cells) + " |")
        lines += [""] + [f"{i}. {r}" for i, r in enumerate(reasons, 1)] + [""]
    return "\n".join(lines).rstrip() + "\n"


def readme_block(text: str) -> str | None:
    """The generated block of a README's text (between the markers), or None without markers."""
    if README_START not in text or README_END not in text:
        return None
    return text.split(README_START, 1)[1].split(README_END, 1)[0].strip("\n") + "\n"


def write_readme(path) -> None:
    """Rewrite the generated block of the README at `path` from the table."""
    from pathlib import Path

    text = Path(path).read_text()
    if readme_block(text) is None:
        raise SystemExit(f"{path}: no validity-matrix markers ({README_START} ... {README_END})")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    Path(path).write_text(f"{head}{README_START}\n{validity_markdown()}{README_END}{tail}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        write_readme(sys.argv[1])
    else:
        print(validity_markdown(), end="")
