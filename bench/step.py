"""The training step behind one interface: forward, objective, backward and update of all K members.

    step = make_step(model, head, optimizer)  # picks the implementation once
    losses = step(x, t, n)  # x [K, B, ...], t [K, B, O] -> each member's mean loss over the first n rows
                            # [K] (no graph behind it; the rows past n pad the batch: see bench.models)
    step.update(weights)    # the gradient of sum_k weights_k losses_k, then the optimizer's update
    z = step.forward(x)     # evaluation: x [K, N, ...] -> raw outputs [K, N, O]

Implementations (the caller never asks which one it holds):
  AutogradStep      autograd through the model: any model, autocast, torch.compile.
  HandWrittenStep   the MLP's layers with their backward written by hand (no autograd graph through
                    them, whose per-op bookkeeping is a large share of a small step), `TorchLayers`.
                    Plain SGD is applied inside the backward (one update per layer, any number of
                    learning rates); any other optimizer gets .grad.
The objective's gradient dz = d objective / dz: every objective's, softmax + CCE's included, by autograd
on the objective alone (a small graph over z [K, B, O]), so two losses' step times differ by their own
arithmetic only (a hand-written gradient for one pair would time the implementation, not the loss),
and every loss and output activation trains on every implementation.
"""
import copy

import torch

from bench.groups import Groups
from bench.models import EnsembleMLP, affine
from bench.optim import PlainSGD

# d activation / d input from the activation's output h, as autograd computes it: (grad, h) -> grad,
# in place into grad (a fresh matmul result). gelu's needs its input, which the hand-written step does
# not keep: gelu trains through autograd.
ACTIVATION_BACKWARD = {
    "relu": lambda grad, h: torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad),
    "tanh": lambda grad, h: torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad)}

class Objectives:
    """Every group's objective over its members' raw outputs (bench.groups): the model's output layers
    zs [z [K_w, B, O_w]] -> each group's z [K_g, B, O_g] (a split of its layer's along the members: views;
    autograd's backward of a split is a concatenation, no sum), its objective against its targets
    ts[g] [K_g, B, O_g], each member's mean over the first n rows -> [K] (the rows past n pad the batch
    and get no gradient). One group (a run) is its one objective on its layer, as it always was."""

    def __init__(self, groups):
        self.groups = groups
        self.functions = [g.head.objective for g in groups]
        layers = [groups.locate(i)[0] for i in range(len(groups))]
        self.sizes = [[g.size for g, layer in zip(groups, layers) if layer == j] for j in range(len(groups.outputs))]

    def split(self, zs) -> list:
        """[z [K_g, B, O_g]] per group, in order, from the output layers' zs."""
        if len(zs) == len(self.groups):  # one group per layer (a run, or a pack of distinct widths)
            return list(zs)
        return [z_g for z, sizes in zip(zs, self.sizes) for z_g in (z.split(sizes) if len(sizes) > 1 else (z,))]

    def __call__(self, z_groups, ts, n=None) -> list:
        """[per-member mean loss [K_g]] per group."""
        per_example = [f(z, t) for f, z, t in zip(self.functions, z_groups, ts)]  # [K_g, B] each
        # (a batch without padding rows takes no slice: one autograd node fewer per group and step)
        return [(p if n is None or n >= p.shape[1] else p[:, :n]).mean(1) for p in per_example]

    def join(self, per_group) -> list:
        """Gradients per group [K_g, B, O] -> per output layer [K_w, B, O], concatenated along the members,
        each laid out as the layer's outputs are, [K_w, O, B] in memory (bench.models.EnsembleOutput): the
        products of the backward then see one layout whatever the groups (another would take another
        kernel, and other bits)."""
        out, i = [], 0
        for sizes in self.sizes:
            part = [g.transpose(1, 2) for g in per_group[i:i + len(sizes)]]  # [K_g, O, B] views
            out.append((part[0].contiguous() if len(part) == 1 else torch.cat(part)).transpose(1, 2))
            i += len(sizes)
        return out


def cat_members(per_group):
    """[K_g] tensors per group -> [K]."""
    return per_group[0] if len(per_group) == 1 else torch.cat(per_group)


def as_targets(t) -> list:
    """A step's targets: one tensor [K, B, O] (a run's one group) or one per group."""
    return [t] if torch.is_tensor(t) else list(t)


def member_losses(model, groups, dtype, amp_dtype=None):
    """f(x [K, B, ...], ts, n=None) -> per-member mean loss over the first n rows [K] through autograd
    (the rest pad the batch and get no gradient); ts: each group's targets [K_g, B, O_g] (one tensor for
    one group); with `amp_dtype` the model runs under autocast (bfloat16 matmuls) and the objective in
    full precision. groups: bench.groups.Groups (or one Head: every member shares it)."""
    objectives = Objectives(as_groups(groups, model))

    def losses(x, t, n=None):
        if amp_dtype is None:
            zs = model.outputs(x)
        else:
            with torch.autocast(x.device.type, dtype=amp_dtype):
                zs = [z.to(dtype) for z in model.outputs(x)]
        return cat_members(objectives(objectives.split(zs), as_targets(t), n))

    return losses


def objective_and_dz(zs, ts, objectives, n=None):
    """The objectives of raw outputs zs (per output layer, [K_w, B, O_w]) computed without an autograd
    graph behind them: (per-member mean loss over the first n rows [K], dz(weights [K]) = d(sum_k
    weights_k loss_k)/dz per output layer [K_w, B, O_w], 0 on the padding rows) by autograd on the
    objectives alone (one call for every group; each group's outputs a leaf of their own)."""
    z_groups = [z.detach().requires_grad_(True) for z in objectives.split(zs)]
    with torch.enable_grad():
        losses = objectives(z_groups, as_targets(ts), n)  # [K_g] per group

    def dz(weights):
        weight_groups = [weights] if len(losses) == 1 else [weights[g.members] for g in objectives.groups]
        return objectives.join(torch.autograd.grad(losses, z_groups, weight_groups))

    return cat_members([loss.detach() for loss in losses]), dz


class Step:
    """The interface (module docstring). Subclasses set `forward` and implement __call__ and backward;
    `update` is backward, then the optimizer's step unless backward applied plain SGD itself (`sgd_step`)."""

    sgd_step = None  # -lr per member [K, 1, 1] when the backward applies plain SGD itself; None: the optimizer updates

    def __init__(self, model, groups, optimizer, forward):
        self.model, self.groups, self.optimizer = model, groups, optimizer
        self.forward = forward
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        # per parameter, the members its leading axis holds (a pack's output layers: one width's)
        self.members = model.parameter_members() if len(model.outs) > 1 else None

    @property
    def head(self):
        """A run's head (one group); a pack's groups each have their own (`groups`)."""
        return self.groups.head

    def __call__(self, x, t, n=None):
        raise NotImplementedError

    def backward(self, weights):
        """Every parameter's .grad = d(sum_k weights_k loss_k)/dp of the last call (or, with `sgd_step`,
        p -= lr * that gradient, member k at its own lr, no .grad)."""
        raise NotImplementedError

    def update(self, weights):
        self.backward(weights)
        if self.sgd_step is None:
            self.optimizer.step()
            for p in self.params:  # zero_grad(set_to_none=True) without its overhead
                p.grad = None

    def state(self):
        """The parameters and the optimizer's state, for `load_state` (a replayed epoch starts from them)."""
        return [p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict())

    def load_state(self, state):
        values, optimizer_state = state
        with torch.no_grad():
            for p, value in zip(self.params, values):
                p.copy_(value)
        self.optimizer.load_state_dict(optimizer_state)


class AutogradStep(Step):
    """Autograd through the model and the objectives; `compile`: torch.compile the forward pass and the
    objectives (the backward is compiled with them); `amp_dtype`: see `member_losses`."""

    def __init__(self, model, groups, optimizer, amp_dtype=None, compile=False):
        super().__init__(model, groups, optimizer, model)
        losses = member_losses(model, groups, self.params[0].dtype, amp_dtype)
        self.losses = torch.compile(losses) if compile else losses
        self.last = None  # the last call's losses, with their graph

    def __call__(self, x, t, n=None):
        self.last = self.losses(x, t, n)
        return self.last.detach()

    def backward(self, weights):
        self.last.backward(weights)


class HandWrittenStep(Step):
    """The layers' forward and backward by `layers` (TorchLayers: forward(x) -> zs keeping what backward
    needs, backward(dzs, step), a call for evaluation), the objectives' gradient by `objective_and_dz`."""

    def __init__(self, model, groups, optimizer, layers):
        groups = as_groups(groups, model)
        super().__init__(model, groups, optimizer, layers)
        self.layers, self.objectives = layers, Objectives(groups)
        if isinstance(optimizer, PlainSGD):
            p = self.params[0]
            self.sgd_step = (-optimizer.lr).to(p.device, p.dtype).view(-1, 1, 1)  # [K, 1, 1]
        self.dz = None  # the last call's dz(weights)

    def __call__(self, x, t, n=None):
        losses, self.dz = objective_and_dz(self.layers.forward(x), t, self.objectives, n)
        return losses

    def backward(self, weights):
        self.layers.backward(self.dz(weights), self.sgd_step)


class TorchLayers:
    """An EnsembleMLP's layers in torch ops with their backward written by hand: 2 matmuls, a sum and the
    activation's backward per layer, the same products autograd forms (the output layers' input
    gradients, one per output width, concatenated along the members)."""

    def __init__(self, model):
        self.model, self.hidden, self.outs = model, list(model.hidden), model.outs
        self.act_backward = ACTIVATION_BACKWARD[model.activation]
        self.inputs = None  # each layer's input [K, B, fan_in] of the last forward

    def __call__(self, x):  # evaluation: the model's forward
        return self.model(x)

    @torch.no_grad()
    def forward(self, x) -> list:
        """x [K, B, ...] -> zs [z [K_w, B, O_w]] per output layer, keeping every layer's input."""
        inputs, h = [], x.flatten(2)
        for layer in self.hidden:
            inputs.append(h)
            h = self.model.act(affine(layer.bias, h, layer.weight))
        inputs.append(h)
        self.inputs = inputs
        return self.outs(h)

    @torch.no_grad()
    def backward(self, dzs, step=None):
        """dzs per output layer [K_w, B, O_w] of the last forward: every parameter's .grad set (step None),
        or plain SGD applied in place with step = -lr per member [K, 1, 1]: each layer's output gradient
        scaled once per member (a correctly rounded multiply), then one weight update (baddbmm_) and one
        bias add per layer, whatever the number of learning rates, so a member's update is the same at any
        K or position."""
        x = self.inputs[-1]
        below = [self._layer(layer, x[a:b], grad, step if step is None else step[a:b], bool(self.hidden))
                 for layer, (a, b), grad in zip(self.outs, self.outs.spans, dzs)]
        grad = below[0] if len(below) == 1 else torch.cat(below)  # [K, B, H]
        for i in range(len(self.hidden) - 1, -1, -1):
            grad = self.act_backward(grad, self.inputs[i + 1])
            grad = self._layer(self.hidden[i], self.inputs[i], grad, step, input_grad_needed=i > 0)

    @staticmethod
    def _layer(layer, x, grad, step, input_grad_needed=True):
        """One layer's backward: its input's gradient (from the unscaled gradient and the weight before
        its update; the data needs none), then its .grad or its plain SGD update."""
        below = layer.input_grad(grad) if input_grad_needed else None
        if step is None:
            layer.weight.grad = layer.weight_grad(x, grad)
            layer.bias.grad = grad.sum(1, keepdim=True)  # [K, 1, out]
        else:
            grad = grad * step  # [K, B, out]: -lr_k * grad
            layer.update_(x, grad)
            layer.bias.add_(grad.sum(1, keepdim=True))
        return below


def make_step(model, groups, optimizer, *, amp_dtype=None, compile=False, hand_written=True) -> Step:
    """The step for this model and run: the hand-written step in torch ops where the model has one,
    else autograd. Autocast and compile take autograd; `hand_written=False` forces it (the reference
    the tests compare with). groups: bench.groups.Groups, or a run's one Head."""
    groups = as_groups(groups, model)
    if hand_written and amp_dtype is None and not compile and isinstance(model, EnsembleMLP) \
            and model.activation in ACTIVATION_BACKWARD:
        return HandWrittenStep(model, groups, optimizer, TorchLayers(model))
    return AutogradStep(model, groups, optimizer, amp_dtype, compile)


def as_groups(groups, model) -> Groups:
    """Groups as given, or a run's one head shared by every member of `model`."""
    return groups if isinstance(groups, Groups) else Groups.single(groups, len(next(model.parameters())))
