"""The head: how a task meets one (loss, activation) — output units, target encoding, the objective,
and reading the outputs back as predictions and classes.

    make_head(task, n_classes, n_targets, activation, loss, params) -> Head
    check_targets(head, y_train)        one-line UserError for targets the loss cannot use
    anatomy(loss, activation, target)   the loss and its gradient against one logit, for the report

Classification targets are encoded per unit: 1 unit with a 0/1 column on binary data (2 units,
one-hot, for softmax), one unit per class (one-hot) on multiclass; the margin losses and tanh
outputs use -1/+1 instead of 0/1. A unit "says yes" above the midpoint of its two levels
(0.5 for 0/1, 0 for -1/+1).
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from bench.errors import UserError, check_choice
from bench.losses import ACTIVATIONS, EPS, LOSSES, VALIDITY, _over_classes, check_loss_params, from_label, \
    objective, resolve_pairing


def _first_argmax(scores):
    """The index of the first maximum along the last axis, as scores.max(-1).indices but from two amax
    and two elementwise passes: torch's CPU max-with-indices and argmax over a short axis are
    ~10x slower than amax (1.7 ms against 0.15 ms for 1.2M scores of 10 classes). NaN rows get the
    last index (they belong to members the curves mark as diverged)."""
    n = scores.shape[-1]
    first = torch.arange(n, 0, -1, device=scores.device, dtype=scores.dtype)  # n for index 0, ... 1
    key = torch.where(scores == scores.amax(-1, keepdim=True), first, 0)  # > 0 only at the maxima
    return (n - key.amax(-1)).long().clamp_(max=n - 1)


@dataclass(frozen=True)
class Head:
    """One task meeting one (loss, activation): output units and target encoding, the objective,
    and the outputs read back (`predict`, `unit_scores`, `classify`)."""

    task: str
    n_classes: int
    n_targets: int
    activation: str
    loss: str
    params: dict = field(default_factory=dict)

    # -- output units and target encoding

    @property
    def n_outputs(self) -> int:
        if self.task == "regression":
            return self.n_targets * max(1, len(self.quantiles))  # one unit per (target, level)
        if self.task == "binary" and self.activation != "softmax":
            return 1  # one unit: class 1 or not
        return self.n_classes  # one unit per class (2 softmax units on binary data)

    @property
    def quantiles(self) -> tuple:
        """The levels of a quantile head (pinball: one output unit per target and level, levels innermost),
        else ()."""
        record = LOSSES[self.loss]
        if record.elicits != "quantile":
            return ()
        return tuple(float(q) for q in self.params.get("quantiles", record.default("quantiles")))

    @property
    def point_level(self) -> int:
        """Which level a quantile head's point forecast is (the one the regression metrics read): the
        level nearest 0.5, the median where it is one of them (the lower of two equally near)."""
        return min(range(len(self.quantiles)), key=lambda i: (abs(self.quantiles[i] - 0.5), i))

    @property
    def levels(self) -> tuple:
        """(no, yes) target levels of a classification unit: (-1, 1) or (0, 1)."""
        return (-1.0, 1.0) if LOSSES[self.loss].margin or self.activation == "tanh" else (0.0, 1.0)

    def unit_bits(self, y):
        """[N] class indices -> 0/1 float [N, O]: what each output unit should say."""
        if self.n_outputs == 1:
            return y.float().unsqueeze(-1)
        return F.one_hot(y, self.n_outputs).float()

    def encode(self, y):
        """Targets as the loss sees them: [N] class indices or [N, T] values -> float [N, O]."""
        if self.task == "regression":
            y = y.float() if not y.is_floating_point() else y
            return y.repeat_interleave(len(self.quantiles), -1) if len(self.quantiles) > 1 else y
        no, yes = self.levels
        return self.unit_bits(y) * (yes - no) + no

    # -- the objective

    @property
    def objective(self):
        return objective(self.loss, self.activation, **self.params)

    @property
    def plain_cce(self) -> bool:
        """softmax + CCE without label smoothing: its loss and gradient follow from p_y alone (-log p_y,
        p - t), which the curves use instead of autograd."""
        return (self.loss, self.activation) == ("cce", "softmax") and not self.params.get("label_smoothing")

    # -- the outputs read back

    def predict(self, z):
        """The activated output: regression predictions (scaled units) or per-unit class scores."""
        return ACTIVATIONS[self.activation](z)

    def quantile_predictions(self, z):
        """A regression head's outputs as [..., N, T, L]: per target, one prediction per level (L = 1 but
        for a quantile head with several levels)."""
        return self.predict(z).unflatten(-1, (self.n_targets, -1))

    def point(self, z):
        """The point forecast of a regression head, [..., N, T] in scaled units: the activated output, or
        for a quantile head its `point_level` (the median where it is a level)."""
        if len(self.quantiles) <= 1:
            return self.predict(z)
        return self.quantile_predictions(z)[..., self.point_level]

    def unit_scores(self, z):
        """Per-unit class scores on the 0/1 scale: [..., N, O] (the activated output, -1/+1 mapped to 0/1)."""
        no, yes = self.levels
        scores = self.predict(z)
        return scores if (no, yes) == (0.0, 1.0) else (scores - no) / (yes - no)

    def class_probabilities(self, z):
        """[..., N, O] outputs -> [..., N, C] class probabilities (rows sum to 1) for the metrics.

        softmax: as is; 1 unit: (1 - p, p) with p the unit's score clipped to [0, 1]; several
        sigmoid / linear / tanh units: scores below eps are replaced by eps (1 + softmax(scores)) / 2,
        in (eps/2, eps) and in the scores' order (so the argmax stays the labels'), then normalised.
        """
        return self.classify(z)[1]

    @property
    def logit_slope(self) -> float | None:
        """a where one unit's score on the 0/1 scale is sigmoid(a z) (sigmoid 1, tanh 2); None otherwise."""
        return {"sigmoid": 1.0, "tanh": 2.0}.get(self.activation)

    def log_class_probabilities(self, z):
        """log of `class_probabilities` [..., N, C], from the logits where the head has a log form (softmax:
        log-softmax; one sigmoid/tanh unit: (log sigmoid(-a z), log sigmoid(a z))), exact where p or 1 - p
        round to 0 or 1; else the log of the probabilities (floored at eps / 2 there, or 0 for one clipped
        linear unit: -inf)."""
        if self.activation == "softmax":
            return _over_classes(torch.log_softmax, z)
        if self.n_outputs == 1 and self.logit_slope is not None:
            return torch.cat([F.logsigmoid(-self.logit_slope * z), F.logsigmoid(self.logit_slope * z)], -1)
        return self.classify(z)[1].log()

    def classify(self, z):
        """(labels [..., N], class probabilities [..., N, C], unit decisions [..., N, O]) of raw
        outputs z [..., N, O], from one evaluation of the activation (the metrics need all three):
        labels are the unit above its midpoint (1 unit) or the first argmax over units, both read off
        the logits z (the activations are increasing; saturated scores tie where z does not);
        decisions are each unit's 0/1 answer (for element-wise accuracy). One sigmoid/tanh unit's
        probabilities are (sigmoid(-a z), sigmoid(a z)): no 1 - p, exact at saturation."""
        scores = self.unit_scores(z)
        if self.activation == "softmax":
            decisions = (scores > 0.5).float()
        else:  # the score's midpoint 0.5 in logits: 0 for sigmoid and tanh, the levels' midpoint for linear
            decisions = (z > (0.0 if self.activation != "linear" else sum(self.levels) / 2)).to(scores.dtype)
        if self.n_outputs == 1:
            if self.logit_slope is not None:
                p1 = torch.sigmoid(self.logit_slope * z)
                return decisions[..., 0].long(), torch.cat([torch.sigmoid(-self.logit_slope * z), p1], -1), decisions
            p1 = scores.clamp(0, 1)
            return decisions[..., 0].long(), torch.cat([1 - p1, p1], dim=-1), decisions
        labels = _first_argmax(z)
        if self.activation == "softmax":  # already a distribution (the scores are the output itself)
            return labels, scores, decisions
        p = torch.where(scores >= EPS, scores, EPS * (1 + torch.softmax(scores, dim=-1)) / 2)
        return labels, p / p.sum(-1, keepdim=True), decisions


def encoding(head: Head) -> str:
    """The head's target encoding in words (for the README matrix)."""
    if head.task == "regression":
        return "y / scale"
    bits = "-1/+1" if head.levels[0] < 0 else "0/1"
    if head.n_outputs == 1:
        return f"1 unit {bits}"
    if head.task == "binary":
        return f"2 units {'one-hot' if bits == '0/1' else bits}"
    return "one-hot" if bits == "0/1" else "-1/+1 per class"


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
    loss = LOSSES[head.loss]
    if loss.nonzero_targets and zeros:
        raise UserError(f"loss={head.loss} divides by |y| but {zeros} of {n} training targets are 0 (the loss "
                        "there is ~1e9 %, not a signal); use loss=mae, huber or mse, or drop those rows")
    if loss.nonnegative_targets and negative:
        raise UserError(f"loss={head.loss} takes {loss.nonnegative_targets} and needs targets >= 0 but "
                        f"{negative} of {n} training targets are negative; use loss=mse, mae or huber")
    if head.activation in ("softplus", "exp") and negative:
        raise UserError(f"activation={head.activation} outputs positive values only but {negative} of {n} "
                        "training targets are negative; use activation=linear")
    if n > 1 and (y_train == y_train[:1]).all(0).any():  # a target column with one value only
        raise UserError(f"all {len(y_train)} training targets are equal, so MASE's scale (the in-sample MAE of "
                        "the training-mean forecast) is 0 and there is nothing to learn; check the target column")


# ---------------------------------------------------------------------------------------------
# anatomy: the loss and its gradient against one logit, for the report

def anatomy(loss: str, activation: str, target, z=None, **params) -> dict:
    """Loss and dloss/dz of one output unit over a grid of logits, by autograd.

    target: a class, 0 or 1, where (activation, loss) is a classification pairing (encoded as a
        run encodes it: 0/1, or -1/+1 for the hinges and tanh); otherwise a regression target
        value (in the scaled units the loss sees). mse/mae/huber/log_cosh with linear, sigmoid or
        tanh and a 0/1 target are read as classification (the same numbers for 0/1 encodings).
    loss: a name, or a label of the results naming its settings (pinball(0.9), tweedie(1.5)).
    z: the logits, 1-D (default: 401 points on [-10, 10]); a quantile head gets z at every level.
    softmax: two units with logits (0, z), so p(class 1) = sigmoid(z); z is the margin of class 1
        over class 0 and `grad` is dloss/dz at the second unit.

    Returns {"z": [G], "loss": [G], "grad": [G]} float64 numpy arrays. An invalid pairing or a
    target the loss cannot take raises UserError with the reason.

    >>> a = anatomy("bce", "sigmoid", 1.0, z=[0.0])
    >>> round(float(a["loss"][0]), 4), round(float(a["grad"][0]), 4)   # log 2, sigmoid(0) - 1
    (0.6931, -0.5)
    """
    loss, labelled = from_label(loss)  # a label from the results (pinball(0.9)) names its settings
    params = {**labelled, **params}
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
    record = LOSSES[loss]
    if task == "regression" and ((record.nonzero_targets and target == 0) or (target < 0 and (
            record.nonnegative_targets or activation in ("softplus", "exp")))):
        need = "a non-zero target (it divides by |y|)" if record.nonzero_targets else "a target >= 0"
        raise UserError(f"target={target:g} does not fit {activation}+{loss}: it needs {need}")
    check_targets(head, y)
    grid = torch.linspace(-10, 10, 401, dtype=torch.float64) if z is None else \
        torch.as_tensor(z, dtype=torch.float64).reshape(-1)
    logit = grid.clone().requires_grad_(True)
    if head.quantiles:  # one forecast q = the logit at every level: the head's loss as a function of it
        units = logit[:, None].expand(-1, head.n_outputs)  # [G, O]
    else:
        units = torch.stack([torch.zeros_like(logit), logit], -1) if head.n_outputs == 2 else logit[:, None]  # [G, O]
    values = head.objective(units, head.encode(y).double())  # [G]
    (grad,) = torch.autograd.grad(values.sum(), logit)
    return {"z": grid.numpy(), "loss": values.detach().numpy(), "grad": grad.numpy()}
