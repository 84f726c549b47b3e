"""Losses, output activations, and how a task meets a (loss, activation) pair.

Public API (see DESIGN "Losses and activations"):

    LOSSES["mse"](y_pred, y_true, **params) -> Tensor[..., B]   per-example, reduced over outputs
    ACTIVATIONS["sigmoid"](z) -> Tensor
    objective("bce", "sigmoid") -> f(z, y) -> Tensor[..., B]   fused and stable where possible
    make_head(task, n_classes, n_targets, activation, loss, params) -> Head

Shapes: predictions and targets are `[..., B, O]` (a leading member axis K in training); every loss
returns `[..., B]`. Element-wise losses average over the O outputs; distribution losses (cce) sum
over classes. `y_pred` is the activated output (probabilities for the cross-entropies).
"""
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
    return (y_pred - y_true).pow(2).mean(-1)


def mae(y_pred, y_true):
    return (y_pred - y_true).abs().mean(-1)


def huber(y_pred, y_true, delta=1.0):
    err = (y_pred - y_true).abs()
    quadratic = 0.5 * err.pow(2)
    linear = delta * (err - 0.5 * delta)
    return torch.where(err <= delta, quadratic, linear).mean(-1)


def _smooth_binary(y, label_smoothing):
    # Keras convention: y -> y * (1 - s) + 0.5 * s
    return y * (1 - label_smoothing) + 0.5 * label_smoothing


def _smooth_categorical(y, label_smoothing):
    # torch/Keras convention: y -> y * (1 - s) + s / C
    return y * (1 - label_smoothing) + label_smoothing / y.shape[-1]


def bce(y_pred, y_true, label_smoothing=0.0):
    y = _smooth_binary(y_true, label_smoothing)
    p = y_pred.clamp(EPS, 1 - EPS)
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean(-1)


def cce(y_pred, y_true, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    p = (y_pred / y_pred.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return -(y * p.log()).sum(-1)


LOSSES = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "bce": bce,
    "cce": cce,
}


# ---------------------------------------------------------------------------------------------
# output activations: z [..., B, O] -> prediction

ACTIVATIONS = {
    "linear": lambda z: z,
    "sigmoid": torch.sigmoid,
    "softmax": lambda z: torch.softmax(z, dim=-1),
}


# ---------------------------------------------------------------------------------------------
# fused objectives: the same values as loss(activation(z), y), computed from the logits so they
# stay finite and keep their gradient where the composition saturates (|z| large)

def _bce_with_logits(z, y_true, label_smoothing=0.0):
    y = _smooth_binary(y_true, label_smoothing)
    # -[y log s(z) + (1-y) log(1-s(z))] with log(1 - s(z)) = log s(-z)
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean(-1)


def _cce_with_logits(z, y_true, label_smoothing=0.0):
    y = _smooth_categorical(y_true, label_smoothing)
    return -(y * torch.log_softmax(z, dim=-1)).sum(-1)


FUSED = {
    ("bce", "sigmoid"): _bce_with_logits,
    ("cce", "softmax"): _cce_with_logits,
}


def objective(loss: str, activation: str, **params):
    """The per-example objective f(z, y) -> [..., B] of raw outputs z; fused where a stable form exists."""
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ACTIVATIONS)
    fused = FUSED.get((loss, activation))
    if fused is not None:
        return partial(fused, **params)
    loss_fn, act = LOSSES[loss], ACTIVATIONS[activation]

    def composed(z, y):
        return loss_fn(act(z), y, **params)

    return composed


# ---------------------------------------------------------------------------------------------
# which (task, activation, loss) triples make sense

REGRESSION_LOSSES = ("mse", "mae", "huber")
CLASSIFICATION_LOSSES = ("mse", "mae", "huber", "bce", "cce")
PROBABILITY_ACTIVATIONS = ("sigmoid", "softmax")
CANONICAL = {"regression": "linear", "binary": "sigmoid", "multiclass": "softmax"}


def canonical_activation(task: str, loss: str) -> str:
    """`activation=auto`: the usual output for the task, adjusted where the loss needs another."""
    if loss == "cce":
        return "softmax"  # cce needs a distribution over >= 2 units, also on binary data
    return CANONICAL[task]


def pairing_error(task: str, activation: str, loss: str) -> str | None:
    """Why (task, activation, loss) makes no sense, or None when it is valid."""
    if task == "regression":
        if loss not in REGRESSION_LOSSES:
            return f"loss={loss} needs class targets; a regression task fits: {', '.join(REGRESSION_LOSSES)}"
        if activation != "linear":
            return (f"activation={activation} bounds the output but regression targets are unbounded; "
                    "use activation=linear")
        return None
    if loss not in CLASSIFICATION_LOSSES:
        return f"loss={loss} is for regression; a {task} task fits: {', '.join(CLASSIFICATION_LOSSES)}"
    if loss in ("bce", "cce") and activation not in PROBABILITY_ACTIVATIONS:
        return f"loss={loss} needs probabilities; use activation=sigmoid or softmax, not {activation}"
    if loss == "cce" and activation != "softmax":
        return "loss=cce needs a distribution over the classes; use activation=softmax"
    return None


@dataclass(frozen=True)
class Head:
    """How a task meets one (loss, activation): output units, target encoding, objective, scores."""

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
            return 1  # one unit: P(class 1)
        return self.n_classes  # one unit per class (2 softmax units on binary data)

    def encode(self, y):
        """Targets as the loss sees them: [N] class indices or [N, T] values -> float [N, O]."""
        if self.task == "regression":
            return y.float()
        if self.n_outputs == 1:
            return y.float().unsqueeze(-1)  # 0/1 column
        return F.one_hot(y, self.n_outputs).float()

    @property
    def objective(self):
        return objective(self.loss, self.activation, **self.params)

    def predict(self, z):
        """The activated output: regression predictions (scaled units) or per-unit class scores."""
        return ACTIVATIONS[self.activation](z)

    def class_probabilities(self, z):
        """[..., N, O] outputs -> [..., N, C] class probabilities (rows sum to 1) for the metrics."""
        p = self.predict(z)
        if self.n_outputs == 1:
            p1 = p.clamp(0, 1)
            return torch.cat([1 - p1, p1], dim=-1)
        p = p.clamp_min(EPS)  # linear/sigmoid outputs: clip then normalise, argmax unchanged
        return p / p.sum(-1, keepdim=True)

    def unit_decisions(self, z):
        """Per-unit 0/1 decisions [..., N, O], for element-wise ("binary") accuracy."""
        return (self.predict(z) > 0.5).float()


def resolve_pairing(task: str, activation: str, loss: str) -> str:
    """Check the triple (one-line UserError with the reason) and return the activation (auto resolved)."""
    check_choice("task", task, TASKS)
    check_choice("loss", loss, LOSSES)
    check_choice("activation", activation, ["auto", *ACTIVATIONS])
    if activation == "auto":
        activation = canonical_activation(task, loss)
    reason = pairing_error(task, activation, loss)
    if reason:
        raise UserError(f"invalid pairing task={task} activation={activation} loss={loss}: {reason}")
    return activation


def make_head(task, n_classes, n_targets, activation, loss, params=None) -> Head:
    """Validate the triple and build its Head."""
    activation = resolve_pairing(task, activation, loss)
    return Head(task, n_classes, n_targets, activation, loss, dict(params or {}))


def check_targets(head: Head, y_train) -> None:
    """Reject targets the loss cannot use (before training, with a reason instead of inf/NaN)."""
    return None
