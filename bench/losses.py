"""Losses, output activations, and how a task meets a (loss, activation) pair.

Public API (see DESIGN "Losses and activations"):

    LOSSES["mse"](y_pred, y_true, **params) -> Tensor[..., B]   per-example, reduced over outputs
    ACTIVATIONS["sigmoid"](z) -> Tensor
    objective("bce", "sigmoid") -> f(z, y) -> Tensor[..., B]   fused and stable where possible
    VALIDITY[(task, activation, loss)] -> None (valid) or the reason it makes no sense

One `Loss` record per loss holds everything the code knows about it (function, the tasks and
activations it accepts and why it refuses the others, the activation it is made for, its fused
forms, its parameters' rules); VALIDITY, `canonical_activation` and the README matrix are derived
from the records. Adding a loss = one record here + conf/loss/<name>.yaml. The head (target encoding,
outputs read back) and the anatomy are in bench.heads; the README's matrix is written by bench.matrix.

Shapes: predictions and targets are `[..., B, O]` (a leading member axis K in training); every loss
returns `[..., B]`. Element-wise losses average over the O outputs; distribution losses (cce,
kl_div) sum over classes. `y_pred` is the activated output (probabilities for the
cross-entropies). Conventions follow Keras / torch / scikit-learn: MAPE is in percent,
`100 |y - p| / max(|y|, eps)`; BCE and focal clip probabilities to [eps, 1 - eps]; CCE and KL
normalise each row to sum 1, then clip; MSLE clips both sides at eps (Keras); Poisson is
`p - y log(p + eps)` (torch PoissonNLLLoss, log_input=False); Tweedie is the deviance less its y-only
term and factor 2, `-y mu^(1-p) / (1-p) + mu^(2-p) / (2-p)`; pinball has one output unit per level
(`quantiles`); hinge losses take targets in {-1, +1}; eps = 1e-7.
"""
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from bench import metric_facts
from bench.calibration_losses import _categorical_focal_with_logits, _flsd53_with_logits, categorical_focal, flsd53
from bench.errors import Interval, Rule, UserError, check_choice, check_value
from bench.robust_losses import (_gce_with_logits, _nce_rce_with_logits, _poly1_with_logits, _sce_with_logits, gce,
                                 nce_rce, poly1, sce)

EPS = 1e-7
TASKS = ("regression", "binary", "multiclass")


# ---------------------------------------------------------------------------------------------
# losses: (y_pred [..., B, O], y_true [..., B, O]) -> [..., B]

def _matched(y_pred, y_true):
    """(y_pred, y_true) in one dtype (torch's type promotion) and y_true broadcast to y_pred's shape:
    torch's fused losses (mse_loss, huber_loss, BCE-with-logits) neither promote alike nor broadcast
    without a warning; the curves pass targets [N, O] against outputs [K, N, O]."""
    dtype = torch.promote_types(y_pred.dtype, y_true.dtype)
    return y_pred.to(dtype), y_true.to(dtype).expand_as(y_pred)


def mse(y_pred, y_true):
    """Mean squared error, (y - p)^2."""
    return F.mse_loss(*_matched(y_pred, y_true), reduction="none").mean(-1)  # one op (and backward)


def mae(y_pred, y_true):
    """Mean absolute error, |y - p|."""
    return (y_pred - y_true).abs().mean(-1)


def huber(y_pred, y_true, delta=1.0):
    """Huber: 0.5 e^2 for |e| <= delta, delta (|e| - 0.5 delta) beyond (torch HuberLoss)."""
    return F.huber_loss(*_matched(y_pred, y_true), reduction="none", delta=delta).mean(-1)


def log_cosh(y_pred, y_true):
    """log cosh(p - y), as e + log(1 + exp(-2 e)) - log 2 (softplus) so it stays finite for large |e|."""
    err = y_pred - y_true
    return (err + F.softplus(-2 * err)).mean(-1) - math.log(2)


def mape(y_pred, y_true, eps=EPS):
    """Mean absolute percentage error in percent: 100 |y - p| / max(|y|, eps)."""
    return (100 * (y_pred - y_true).abs() / y_true.abs().clamp_min(eps)).mean(-1)


def msle(y_pred, y_true):
    """Mean squared log error, (log(1 + p) - log(1 + y))^2 with p and y clipped at eps (Keras)."""
    return (torch.log1p(y_pred.clamp_min(EPS)) - torch.log1p(y_true.clamp_min(EPS))).pow(2).mean(-1)


def poisson(y_pred, y_true):
    """Poisson negative log-likelihood without the log(y!) constant: p - y log(p + eps)."""
    return (y_pred - y_true * torch.log(y_pred + EPS)).mean(-1)


def tweedie(y_pred, y_true, power=1.5):
    """Tweedie deviance with variance power p in (1, 2), less what depends on y alone:
    -y mu^(1-p) / (1-p) + mu^(2-p) / (2-p), the predicted mean mu clipped at eps. The deviance
    (scikit-learn's mean_tweedie_deviance) is 2 [this + y^(2-p) / ((1-p)(2-p))]."""
    mu = y_pred.clamp_min(EPS)
    return (-y_true * mu.pow(1 - power) / (1 - power) + mu.pow(2 - power) / (2 - power)).mean(-1)


def pinball(y_pred, y_true, quantiles=(0.5,)):
    """Pinball (quantile) loss, max(tau e, (tau - 1) e) with e = y - q, averaged over units; one unit
    per level: the units are (target, level) pairs, levels innermost, so unit j has level
    quantiles[j % len(quantiles)] and y_true holds each target once per level (bench.heads encodes it)."""
    y_pred, y_true = _matched(y_pred, y_true)
    tau = torch.tensor(quantiles, dtype=y_pred.dtype, device=y_pred.device).repeat(y_pred.shape[-1] // len(quantiles))
    err = y_true - y_pred
    return torch.maximum(tau * err, (tau - 1) * err).mean(-1)


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
    p_t = y p + (1 - y)(1 - p) is the probability given to the true label (targets 0/1: focal takes
    no label smoothing); gamma = 0 is BCE."""
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


# ---------------------------------------------------------------------------------------------
# output activations: z [..., B, O] -> prediction

def _over_classes(fn, z):
    """fn(z, dim=-1), the same values; torch's CPU kernel along a short last axis (< 16 classes) is
    slower than along the first axis once there are many rows (log-softmax of 16000 rows of 10 classes,
    fwd+bwd: 1.9 ms vs 1.3 ms, 1.5 vs 0.7 ms with the classes outermost in memory, as evaluation keeps
    them), so on CPU the class axis is moved to the front where it already is outermost in memory (as
    evaluation keeps the outputs); a training batch (K = 8 x 32 rows, contiguous) is faster as it is
    (0.09 vs 0.14 ms: the two moves cost more than they save). The choice reads the layout, never the
    size: the two ways round differently, and a member's numbers must not depend on how many members
    there are."""
    if z.device.type == "cpu" and z.shape[-1] < 16 and z.stride(-1) != 1:
        return fn(z.movedim(-1, 0), dim=0).movedim(0, -1)
    return fn(z, dim=-1)


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

TOP_LOG_P = math.log(0.6)  # log p above which a softmax unit holds most of its row's mass (at most one unit)


def _softmax_unit_logits(z):
    """u [..., C]: each softmax unit as one sigmoid unit, p_c = sigmoid(u_c), u_c = log p_c - log(1 - p_c)
    = z_c - logsumexp_{j != c} z_j, accurate where p rounds to 0 or 1 in float32: log(1 - p) is log1p(-p)
    wherever p <= 0.6 (no cancellation), and for the one unit above it (if any) the log of the others'
    mass, logsumexp_{j != c} log p_j, which stays exact where 1 - p underflows."""
    log_p = torch.log_softmax(z, -1)
    top = log_p.detach() > TOP_LOG_P  # [..., C]: at most one True per row
    rest = log_p.masked_fill(top, -math.inf)  # the top unit left out (p = 0 there: log1p stays finite)
    return log_p - torch.where(top, rest.logsumexp(-1, keepdim=True), torch.log1p(-rest.exp()))


def _bce_with_logits(z, y_true, activation, label_smoothing=0.0):
    u = z if activation == "sigmoid" else _softmax_unit_logits(z)
    return F.binary_cross_entropy_with_logits(*_matched(u, _smooth_binary(y_true, label_smoothing)),
                                              reduction="none").mean(-1)


def _focal_with_logits(z, y_true, activation, gamma=2.0):
    # focal's targets are classes, 0/1 per unit: 1 - p_t = sigmoid(wrong), with wrong = -u where y = 1 and
    # u where y = 0 (the logit of the wrong answer), so -log p_t = softplus(wrong) and the factor
    # (1 - p_t)^gamma = exp(gamma log sigmoid(wrong)) in log space: its gradient stays finite where 1 - p_t
    # underflows
    u = z if activation == "sigmoid" else _softmax_unit_logits(z)
    wrong = (1 - 2 * y_true) * u
    return (F.softplus(wrong) * torch.exp(gamma * F.logsigmoid(wrong))).mean(-1)


def _cce_with_logits(z, y_true, activation, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    return -(y * _over_classes(torch.log_softmax, z)).sum(-1)


def _kl_with_logits(z, y_true, activation, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    return (torch.xlogy(y, y) - y * _over_classes(torch.log_softmax, z)).sum(-1)


def _msle_of_positive(z, y_true, activation):
    # the prediction is positive by construction: unclipped, so its gradient never vanishes (the clip at
    # eps would zero it wherever softplus(z) < eps, z < -16); the same values down to eps
    return (torch.log1p(ACTIVATIONS[activation](z)) - torch.log1p(y_true.clamp_min(EPS))).pow(2).mean(-1)


def _poisson_with_log_rate(z, y_true, activation):
    # exp(z) - y z: torch PoissonNLLLoss(log_input=True); drops the eps of the composed form
    return (torch.exp(z) - y_true * z).mean(-1)


LOG_SOFTPLUS_TAIL = -15.0  # below it log softplus(z) = z to float32 precision (log(1 + e^z) = e^z (1 - e^z / 2))


def _log_mean(z, activation):
    """theta = log mu of a positive output: z itself for exp; log softplus(z) for softplus, taken as z in the
    tail where softplus(z) underflows (its log would be -inf and its gradient NaN)."""
    if activation == "exp":
        return z
    return torch.where(z < LOG_SOFTPLUS_TAIL, z, torch.log(F.softplus(z.clamp_min(LOG_SOFTPLUS_TAIL))))


def _tweedie_of_log_mean(z, y_true, activation, power=1.5):
    # in theta = log mu: -y e^((1-p) theta) / (1-p) + e^((2-p) theta) / (2-p), no clip at eps
    theta = _log_mean(z, activation)
    return (-y_true * torch.exp((1 - power) * theta) / (1 - power)
            + torch.exp((2 - power) * theta) / (2 - power)).mean(-1)


# ---------------------------------------------------------------------------------------------
# the records: one per loss, everything the code knows about it; every table below is derived

# what a loss parameter may be (the keys of conf/loss/<name>.yaml beyond `name`), by parameter name
PARAM_RULES = {
    "delta": Interval(float, 0, None, closed="neither"),
    "eps": Interval(float, 0, None, closed="neither"),
    "gamma": Interval(float, 0, None),
    "label_smoothing": Interval(float, 0, 1, closed="left"),  # 1 would make every target uniform: nothing to learn
    "q": Interval(float, 0, 1, closed="right"),
    "alpha": Interval(float, 0, None),
    "beta": Interval(float, 0, None),
    "epsilon": Interval(float, -1, None),
    "power": Interval(float, 1, 2, closed="neither", what="a Tweedie variance power in (1, 2) (1: Poisson, 2: gamma)"),
    "quantiles": Rule(lambda v: isinstance(v, (list, tuple)) and len(v) > 0
                      and all(isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q < 1 for q in v)
                      and all(a < b for a, b in zip(v, v[1:])),
                      "a non-empty list of levels in (0, 1), increasing, e.g. [0.1,0.5,0.9]"),
}
REGRESSION_OUTPUTS = ("linear", "softplus", "exp")
CLASS_OUTPUTS = ("linear", "sigmoid", "softmax", "tanh")
# why an output cannot serve a kind of task whatever the loss ({activation}, {span}: its range)
BOUNDED = "activation={activation} bounds the output to {span} but regression targets are unbounded"
UNBOUNDED = ("activation={activation} gives a positive unbounded output (a rate or an amount, for regression), "
             "not a class score")
OUTPUT_UNFIT = {("regression", "softmax"): "activation=softmax ties the outputs into a distribution summing to 1, "
                                           "but regression targets are independent values",
                ("regression", "sigmoid"): BOUNDED, ("regression", "tanh"): BOUNDED,
                ("classes", "softplus"): UNBOUNDED, ("classes", "exp"): UNBOUNDED}


def _on(regression=(), classes=()) -> dict:
    """task -> accepted activations (the order the error message suggests them in)."""
    return {"regression": tuple(regression), "binary": tuple(classes), "multiclass": tuple(classes)}


@dataclass(frozen=True)
class Loss:
    """One loss: its per-example function and what it accepts. `LOSSES[name](y_pred, y_true, **params)`
    calls the function."""

    name: str
    fn: Callable  # (y_pred [..., B, O], y_true [..., B, O], **params) -> [..., B]
    activations: dict  # task -> the activations it accepts there (none: it refuses the task)
    natural: str | None = None  # the activation it is made for (auto picks it where the task allows)
    fused: dict = field(default_factory=dict)  # activation -> f(z, y, activation, **params), stable
    refuses: dict = field(default_factory=dict)  # activation ("*": any other) -> why ({loss} {activation} {span})
    off_task: str | None = None  # a regression loss: why it refuses class targets
    margin: bool = False  # targets -1/+1 (else 0/1) on classification
    nonzero_targets: bool = False  # divides by |y|
    nonnegative_targets: str | None = None  # needs y >= 0: what it takes of y, for the error
    source: str | None = None  # a user's loss (bench.custom_loss): its import path "module:function"
    # the functional of the conditional distribution its optimum is (Gneiting 2011): mean | median |
    # quantile (each level of its `quantiles`) | beta_median (MAPE: the median of the density f(y)/y);
    # None where it is no simple functional (Huber, log-cosh) or not a regression loss
    elicits: str | None = None
    label_params: tuple = ()  # parameters named in its label: settings that change what it forecasts

    def __call__(self, y_pred, y_true, **params):
        return self.fn(y_pred, y_true, **params)

    @property
    def params(self) -> dict:
        """name -> rule (an Interval) of each keyword parameter of the function."""
        if self.source:  # a user's loss: its parameters are checked by calling it (bench.custom_loss)
            return {}
        return {p: PARAM_RULES[p] for p in list(inspect.signature(self.fn).parameters)[2:]}

    def default(self, param):
        """The default value of one keyword parameter of the function."""
        return inspect.signature(self.fn).parameters[param].default

    def label(self, params: dict) -> str:
        """The name of the loss in results and the report: `pinball(0.1,0.5,0.9)`, `tweedie(1.5)`; the name
        alone where no parameter changes what it forecasts."""
        if not self.label_params:
            return self.name
        values = []
        for p in self.label_params:
            value = params.get(p, self.default(p))
            values += [f"{v:g}" for v in value] if isinstance(value, (list, tuple)) else [f"{value:g}"]
        return f"{self.name}({','.join(values)})"

    def why_not(self, task: str, activation: str) -> str | None:
        """Why (task, activation) makes no sense for this loss (one line), or None when it does."""
        allowed = self.activations[task]
        if not allowed and self.source:
            return f"loss={self.name} ({self.source}) declares tasks={self.off_task}, not {task}"
        if not allowed:
            fits = ", ".join(losses_for(task))
            if task == "regression":
                return f"loss={self.name} needs class targets; a regression task fits: {fits}"
            return f"loss={self.name} {self.off_task}; a {task} task fits: {fits}"
        if activation in allowed:
            return None
        use = "use activation=" + (" or ".join(allowed) if len(allowed) < 3 else
                                   f"{', '.join(allowed[:-1])} or {allowed[-1]}")
        kind = "regression" if task == "regression" else "classes"
        why = OUTPUT_UNFIT.get((kind, activation)) or self.refuses.get(activation) or self.refuses["*"]
        return f"{why.format(loss=self.name, activation=activation, span=RANGES[activation])}; {use}"


CLASS_OFF_TASK = "is for non-negative regression targets (amounts, counts), not class labels"
NEEDS_PROBABILITIES = {"*": "loss={loss} needs probabilities in (0, 1); activation={activation} gives values in {span}"}
NEEDS_DISTRIBUTION = {
    "sigmoid": "loss={loss} needs one distribution over the classes (summing to 1); sigmoid units are independent",
    "*": "loss={loss} needs one distribution over the classes (summing to 1); activation={activation} gives "
         "values in {span}"}
NEEDS_MARGIN = {"*": "loss={loss} wants a score with a margin of 1 on both sides of 0 (targets -1/+1); "
                     "activation={activation} is never negative, so the -1 side never reaches its margin"}
LOG_LINK = {"linear": "loss={loss} is a deviance on a log link: it raises the predicted mean to a power, so the "
                       "mean must be positive; activation=linear can go negative"}
LOSSES = {loss.name: loss for loss in [
    Loss("mse", mse, _on(REGRESSION_OUTPUTS, CLASS_OUTPUTS), elicits="mean"),
    Loss("mae", mae, _on(REGRESSION_OUTPUTS, CLASS_OUTPUTS), elicits="median"),
    Loss("huber", huber, _on(REGRESSION_OUTPUTS, CLASS_OUTPUTS)),
    Loss("log_cosh", log_cosh, _on(REGRESSION_OUTPUTS, CLASS_OUTPUTS)),
    Loss("mape", mape, _on(REGRESSION_OUTPUTS), nonzero_targets=True, elicits="beta_median",
         off_task="divides by |y| and class targets are 0 for every other class"),
    Loss("msle", msle, _on(("softplus", "exp")), natural="softplus", off_task=CLASS_OFF_TASK,
         refuses={"linear": "loss={loss} clips the prediction at eps before log(1 + p), so activation=linear gets "
                            "exactly zero gradient wherever it predicts <= 0 and stalls there"},
         fused={"softplus": _msle_of_positive, "exp": _msle_of_positive},
         nonnegative_targets="log(1 + y)"),
    Loss("poisson", poisson, _on(("exp", "softplus")), natural="exp", fused={"exp": _poisson_with_log_rate},
         refuses={"linear": "loss={loss} takes the log of the predicted rate, which must be positive; "
                            "activation=linear can go negative"},
         off_task=CLASS_OFF_TASK, nonnegative_targets="y as a count", elicits="mean"),
    Loss("tweedie", tweedie, _on(("exp", "softplus")), natural="exp", refuses=LOG_LINK,
         fused={"exp": _tweedie_of_log_mean, "softplus": _tweedie_of_log_mean}, off_task=CLASS_OFF_TASK,
         nonnegative_targets="y as an amount", elicits="mean", label_params=("power",)),
    Loss("pinball", pinball, _on(REGRESSION_OUTPUTS), off_task="is a quantile loss for regression targets, not "
         "for class labels", elicits="quantile",
         label_params=("quantiles",)),
    Loss("bce", bce, _on(classes=("sigmoid", "softmax")), natural="sigmoid", refuses=NEEDS_PROBABILITIES,
         fused={"sigmoid": _bce_with_logits, "softmax": _bce_with_logits}),
    Loss("focal", focal, _on(classes=("sigmoid", "softmax")), natural="sigmoid", refuses=NEEDS_PROBABILITIES,
         fused={"sigmoid": _focal_with_logits, "softmax": _focal_with_logits}),
    Loss("cce", cce, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _cce_with_logits}),
    Loss("kl_div", kl_div, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _kl_with_logits}),
    Loss("hinge", hinge, _on(classes=("linear", "tanh")), natural="linear", refuses=NEEDS_MARGIN, margin=True),
    Loss("squared_hinge", squared_hinge, _on(classes=("linear", "tanh")), natural="linear", refuses=NEEDS_MARGIN,
         margin=True),
    Loss("gce", gce, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _gce_with_logits}),
    Loss("sce", sce, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _sce_with_logits}),
    Loss("poly1", poly1, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _poly1_with_logits}),
    Loss("nce_rce", nce_rce, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _nce_rce_with_logits}),
    Loss("categorical_focal", categorical_focal, _on(classes=("softmax",)), natural="softmax",
         refuses=NEEDS_DISTRIBUTION, fused={"softmax": _categorical_focal_with_logits}),
    Loss("flsd53", flsd53, _on(classes=("softmax",)), natural="softmax", refuses=NEEDS_DISTRIBUTION,
         fused={"softmax": _flsd53_with_logits}),
]}
CANONICAL = metric_facts.CANONICAL  # each task's usual (activation, loss), stated without torch


def from_label(label: str) -> tuple:
    """(name, params) of a label `Loss.label` wrote: 'pinball(0.1,0.9)' -> ('pinball', {'quantiles': [0.1, 0.9]}),
    'tweedie(1.1)' -> ('tweedie', {'power': 1.1}); any other name -> (name, {})."""
    name, _, inside = str(label).partition("(")
    record = LOSSES.get(name)
    if not inside or record is None or len(record.label_params) != 1:
        return str(label), {}
    param, values = record.label_params[0], [float(v) for v in inside.rstrip(")").split(",")]
    return name, {param: values if isinstance(record.default(param), (list, tuple)) else values[0]}


def losses_for(task: str) -> list:
    """The losses that fit `task`, in registry order."""
    return [name for name, loss in LOSSES.items() if loss.activations[task] and not loss.source]


REGRESSION_LOSSES = tuple(losses_for("regression"))
CLASSIFICATION_LOSSES = tuple(losses_for("multiclass"))
# (task, activation, loss) -> None when valid, else the reason (one line)
VALIDITY = {(t, a, l): LOSSES[l].why_not(t, a) for t in TASKS for a in ACTIVATIONS for l in LOSSES}


def check_loss_params(loss: str, params: dict) -> None:
    """One-line UserError for a parameter the loss does not take or a value out of range."""
    check_choice("loss", loss, LOSSES)
    if LOSSES[loss].source:  # a user's loss: checked by calling it (bench.custom_loss.probe)
        return
    rules = LOSSES[loss].params
    for key, value in params.items():
        if key not in rules:
            takes = ", ".join(rules) if rules else "no parameters"
            raise UserError(f"loss.{key} is not a parameter of loss={loss}; it takes: {takes}")
        check_value(f"loss.{key}", value, rules[key])


def objective(loss: str, activation: str, **params):
    """The per-example objective f(z, y) -> [..., B] of raw outputs z; fused where a stable form exists."""
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ACTIVATIONS)
    fused = LOSSES[loss].fused.get(activation)
    if fused is not None:
        return partial(fused, activation=activation, **params)
    loss_fn, act = LOSSES[loss].fn, ACTIVATIONS[activation]

    def composed(z, y):
        return loss_fn(act(z), y, **params)

    return composed


def canonical_activation(task: str, loss: str) -> str:
    """`activation=auto`: the activation the loss is made for (sigmoid for bce/focal, softmax for
    cce/kl_div, linear for the hinges, exp for poisson, softplus for msle) where the task allows
    it, else the task's usual output (regression -> linear, binary -> sigmoid, multiclass -> softmax)."""
    natural = LOSSES[loss].natural
    return natural if natural in LOSSES[loss].activations[task] else CANONICAL[task][0]


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
    reason = LOSSES[loss].why_not(task, activation)  # = VALIDITY's, and a user's loss too
    if reason:
        raise UserError(f"invalid pairing task={task} activation={shown} loss={loss}: {reason}")
    return activation


if __name__ == "__main__":  # (the matrix has its own entry point; nothing here imports it)
    import sys

    print("error: the validity matrix is printed by `python -m bench.matrix [README.md]`", file=sys.stderr)
    sys.exit(2)
