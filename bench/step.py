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
arithmetic only (a hand-written gradient for one pair would time the implementation, not the loss:
issue 14), and every loss and output activation trains on every implementation.
"""
import copy

import torch

from bench.models import EnsembleMLP, affine, affine_update_, input_grad
from bench.optim import PlainSGD

# d activation / d input from the activation's output h, as autograd computes it: (grad, h) -> grad,
# in place into grad (a fresh matmul result). gelu's needs its input, which the hand-written step does
# not keep: gelu trains through autograd.
ACTIVATION_BACKWARD = {
    "relu": lambda grad, h: torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad),
    "tanh": lambda grad, h: torch.ops.aten.tanh_backward.grad_input(grad, h, grad_input=grad)}

def member_losses(model, objective, dtype, amp_dtype=None):
    """f(x [K, B, ...], t [K, B, O], n=None) -> per-member mean loss over the first n rows [K] through
    autograd (the rest pad the batch and get no gradient); with `amp_dtype` the model runs under autocast
    (bfloat16 matmuls) and the objective in full precision."""
    if amp_dtype is None:
        def losses(x, t, n=None):
            return objective(model(x), t)[:, :n].mean(1)
    else:
        def losses(x, t, n=None):
            with torch.autocast(x.device.type, dtype=amp_dtype):
                z = model(x)
            return objective(z.to(dtype), t)[:, :n].mean(1)
    return losses


def objective_and_dz(z, t, objective, n=None):
    """The objective of raw outputs z [K, B, O] computed without an autograd graph behind them:
    (per-member mean loss over the first n rows [K], dz(weights [K]) = d(sum_k weights_k loss_k)/dz
    [K, B, O], 0 on the padding rows) by autograd on the objective alone."""
    z.requires_grad_(True)
    with torch.enable_grad():
        losses = objective(z, t)[:, :n].mean(1)  # [K]

    def dz(weights):
        return torch.autograd.grad(losses, z, weights)[0]

    return losses.detach(), dz


class Step:
    """The interface (module docstring). Subclasses set `forward` and implement __call__ and backward;
    `update` is backward, then the optimizer's step unless backward applied plain SGD itself (`sgd_step`)."""

    sgd_step = None  # -lr per member [K, 1, 1] when the backward applies plain SGD itself; None: the optimizer updates

    def __init__(self, model, head, optimizer, forward):
        self.model, self.head, self.optimizer = model, head, optimizer
        self.forward = forward
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

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
    """Autograd through the model and the objective; `compile`: torch.compile the forward pass and the
    objective (the backward is compiled with them); `amp_dtype`: see `member_losses`."""

    def __init__(self, model, head, optimizer, amp_dtype=None, compile=False):
        super().__init__(model, head, optimizer, model)
        losses = member_losses(model, head.objective, self.params[0].dtype, amp_dtype)
        self.losses = torch.compile(losses) if compile else losses
        self.last = None  # the last call's losses, with their graph

    def __call__(self, x, t, n=None):
        self.last = self.losses(x, t, n)
        return self.last.detach()

    def backward(self, weights):
        self.last.backward(weights)


class HandWrittenStep(Step):
    """The layers' forward and backward by `layers` (TorchLayers: forward(x) -> z keeping what backward
    needs, backward(dz, step), a call for evaluation), the objective's gradient by `objective_and_dz`."""

    def __init__(self, model, head, optimizer, layers):
        super().__init__(model, head, optimizer, layers)
        self.layers, self.objective = layers, head.objective
        if isinstance(optimizer, PlainSGD):
            p = self.params[0]
            self.sgd_step = (-optimizer.lr).to(p.device, p.dtype).view(-1, 1, 1)  # [K, 1, 1]
        self.dz = None  # the last call's dz(weights)

    def __call__(self, x, t, n=None):
        losses, self.dz = objective_and_dz(self.layers.forward(x), t, self.objective, n)
        return losses

    def backward(self, weights):
        self.layers.backward(self.dz(weights), self.sgd_step)


class TorchLayers:
    """An EnsembleMLP's layers in torch ops with their backward written by hand: 2 matmuls, a sum and the
    activation's backward per layer, the same products autograd forms."""

    def __init__(self, model):
        self.model, self.layers = model, [*model.hidden, model.out]
        self.act_backward = ACTIVATION_BACKWARD[model.activation]
        self.inputs = None  # each layer's input [K, B, fan_in] of the last forward

    def __call__(self, x):  # evaluation: the model's forward
        return self.model(x)

    @torch.no_grad()
    def forward(self, x):
        """x [K, B, ...] -> z [K, B, O], keeping every layer's input."""
        inputs, h = [], x.flatten(2)
        for layer in self.model.hidden:
            inputs.append(h)
            h = self.model.act(affine(layer.bias, h, layer.weight))
        inputs.append(h)
        self.inputs = inputs
        return affine(self.model.out.bias, h, self.model.out.weight)  # [K, B, O]

    @torch.no_grad()
    def backward(self, dz, step=None):
        """dz [K, B, O] of the last forward: every parameter's .grad set (step None), or plain SGD applied
        in place with step = -lr per member [K, 1, 1]: each layer's output gradient scaled once per member
        (a correctly rounded multiply), then one weight update (baddbmm_) and one bias add per layer,
        whatever the number of learning rates, so a member's update is the same at any K or position."""
        grad = dz
        for i in range(len(self.layers) - 1, -1, -1):
            layer, x = self.layers[i], self.inputs[i]
            # the gradient for the layer below first, from the unscaled gradient: it needs the weight
            # before its update (the data needs no gradient)
            below = self.act_backward(input_grad(grad, layer.weight), x) if i else None
            if step is None:
                layer.weight.grad = torch.bmm(x.transpose(1, 2), grad)  # [K, in, out]
                layer.bias.grad = grad.sum(1, keepdim=True)  # [K, 1, out]
            else:
                grad = grad * step  # [K, B, out]: -lr_k * grad
                affine_update_(layer.weight, x.transpose(1, 2), grad, 1)
                layer.bias.add_(grad.sum(1, keepdim=True))
            grad = below


def make_step(model, head, optimizer, *, amp_dtype=None, compile=False, hand_written=True) -> Step:
    """The step for this model and run: the hand-written step in torch ops where the model has one,
    else autograd. Autocast and compile take autograd; `hand_written=False` forces it (the reference
    the tests compare with)."""
    if hand_written and amp_dtype is None and not compile and isinstance(model, EnsembleMLP) \
            and model.activation in ACTIVATION_BACKWARD:
        return HandWrittenStep(model, head, optimizer, TorchLayers(model))
    return AutogradStep(model, head, optimizer, amp_dtype, compile)
