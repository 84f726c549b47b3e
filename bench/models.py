"""Ensemble models: K independent members evaluated in one batched pass.

Every parameter carries a leading member axis K. Member k is initialised from its own
`torch.Generator().manual_seed(seeds[k])`, drawing its layers in order, so member k of a K-member
model equals the single member of a model built with `seeds=[seeds[k]]`.
"""
import math

import torch
from torch import nn

from bench.errors import UserError, check_choice

HIDDEN_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu}


def _uniform(generators, shape, bound):
    """[K, *shape] with member k drawn from generators[k], U(-bound, bound) like nn.Linear's init."""
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in generators])


class EnsembleLinear(nn.Module):
    """K independent affine maps: x [K, B, fan_in] -> [K, B, fan_out] by one batched matmul."""

    def __init__(self, fan_in, fan_out, generators, scale=1.0):
        super().__init__()
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init (kaiming_uniform with a=sqrt(5))
        self.weight = nn.Parameter(_uniform(generators, (fan_in, fan_out), bound) * scale)  # [K, in, out]
        self.bias = nn.Parameter(_uniform(generators, (1, fan_out), bound) * scale)  # [K, 1, out]

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """Flatten -> (linear, activation) x len(hidden) -> linear output (pre-activation logits z)."""

    def __init__(self, input_shape, hidden, n_outputs, seeds, activation="relu", out_init_scale=1.0):
        super().__init__()
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        widths = [math.prod(input_shape), *hidden]
        self.hidden = nn.ModuleList(
            EnsembleLinear(a, b, generators) for a, b in zip(widths[:-1], widths[1:]))
        # out_init_scale > 1 starts the output layer in saturation (the learning-slowdown experiment)
        self.out = EnsembleLinear(widths[-1], n_outputs, generators, scale=out_init_scale)
        self.act = HIDDEN_ACTIVATIONS[activation]

    def forward(self, x):  # x [K, B, *input_shape] -> z [K, B, n_outputs]
        h = x.flatten(2)
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.out(h)


MODELS = {"mlp": EnsembleMLP}


def build_model(cfg, input_shape, n_outputs, seeds) -> nn.Module:
    """The ensemble named by cfg.name (the `model` config node), on CPU."""
    check_choice("model", cfg.name, MODELS)
    check_choice("model.activation", cfg.activation, HIDDEN_ACTIVATIONS)
    hidden = list(cfg.hidden)
    if any(not isinstance(h, int) or h <= 0 for h in hidden):
        raise UserError(f"model.hidden={hidden} is not allowed; it must be a list of positive integers")
    return EnsembleMLP(input_shape, hidden, n_outputs, seeds, cfg.activation, cfg.out_init_scale)
