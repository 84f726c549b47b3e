"""Ensemble models: K independent members evaluated in one batched pass.

Every parameter carries a leading member axis K. Member k is initialised from its own
`torch.Generator().manual_seed(seeds[k])`, drawing its layers in order, so member k of a K-member
model equals the single member of a model built with `seeds=[seeds[k]]`.
"""
import math

import torch
from torch import nn

from bench.errors import UserError

HIDDEN_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "gelu": nn.functional.gelu}
# the same in place, on a fresh matmul result: no new [K, B, width] buffer (a fresh large buffer costs
# page faults: relu_ is ~4x faster than relu on [8, 1077, 64] on the CPU); autograd saves the output
HIDDEN_ACTIVATIONS_INPLACE = {"relu": torch.relu_, "tanh": torch.tanh_}


# Two conditions under which torch's CPU matrix kernels give a member the same bits whatever K and its
# position in the ensemble (measured on products of every width 1-64: without them a member's last bits
# depend on where it sits, which training amplifies): every member's output block starts on a 64-byte
# boundary, and no product has one output column. The callers pad a batch's (and an evaluation chunk's)
# rows to a multiple of ROW_ALIGN, so [K, B, out] blocks are aligned for any width; one-column products
# are padded with a zero column here. A weight's own block [in, out] is aligned where in x out is a
# multiple of 16 (the default widths); otherwise a member's weight gradient may differ in its last bit
# with its position.
ROW_ALIGN = 16


def _pad(t):
    """A zero column beside a one-column tensor (one-column products take a matrix-vector kernel)."""
    return torch.cat([t, torch.zeros_like(t)], -1) if t.shape[-1] == 1 else t


def affine(bias, x, weight):
    """x [K, B, in] @ weight [K, in, out] + bias [K, 1, out], the same bits for a member whatever K and
    its position (B a multiple of ROW_ALIGN: see above)."""
    if weight.shape[-1] == 1:
        return torch.baddbmm(_pad(bias), x, _pad(weight))[..., :1]
    return torch.baddbmm(bias, x, weight)


def affine_update_(weight, x_t, grad, alpha):
    """weight += alpha * x_t [K, in, B] @ grad [K, B, out] in place, the same bits for a member whatever K."""
    if weight.shape[-1] == 1:
        padded = _pad(weight).baddbmm_(x_t, _pad(grad), alpha=alpha)
        return weight.copy_(padded[..., :1])
    return weight.baddbmm_(x_t, grad, alpha=alpha)


def input_grad(grad, weight):
    """grad [K, B, out] @ weight^T [K, out, in]: the gradient for the layer's input, as `affine` pads."""
    return torch.bmm(_pad(grad), _pad(weight).transpose(1, 2))


def _uniform(generators, shape, bound):
    """[K, *shape] with member k drawn from generators[k], U(-bound, bound) like nn.Linear's init."""
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in generators])


class EnsembleLinear(nn.Module):
    """K independent affine maps: x [K, B, fan_in] -> [K, B, fan_out] by one batched matmul."""

    def __init__(self, fan_in, fan_out, generators, scale=1.0, bias_offset=0.0):
        super().__init__()
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init (kaiming_uniform with a=sqrt(5))
        self.weight = nn.Parameter(_uniform(generators, (fan_in, fan_out), bound) * scale)  # [K, in, out]
        self.bias = nn.Parameter(_uniform(generators, (1, fan_out), bound) * scale + bias_offset)  # [K, 1, out]

    def forward(self, x):
        return affine(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """Flatten -> (linear, activation) x len(hidden) -> linear output (pre-activation logits z)."""

    def __init__(self, input_shape, hidden, n_outputs, seeds, activation="relu", out_init_scale=1.0,
                 out_bias_offset=0.0):
        super().__init__()
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        widths = [math.prod(input_shape), *hidden]
        self.hidden = nn.ModuleList(
            EnsembleLinear(a, b, generators) for a, b in zip(widths[:-1], widths[1:]))
        # out_init_scale > 1 starts the output layer in saturation but also scales the gradient the
        # hidden layers receive; out_bias_offset (added to every output unit's initial bias) saturates
        # sigmoid/tanh outputs alone (the learning-slowdown experiment)
        self.out = EnsembleLinear(widths[-1], n_outputs, generators, scale=out_init_scale, bias_offset=out_bias_offset)
        self.activation = activation
        self.act = HIDDEN_ACTIVATIONS_INPLACE.get(activation, HIDDEN_ACTIVATIONS[activation])

    def widest_row(self) -> int:
        """Elements per example of the widest layer input or output (evaluation sizes its chunks by it)."""
        return max(max(layer.weight.shape[1:]) for layer in [*self.hidden, self.out])

    def forward(self, x):  # x [K, B, *input_shape] -> z [K, B, n_outputs]
        # the layers' own forward inlined: per-module call overhead is a visible share of a small step;
        # the activation applies in place to the matmul's fresh output
        h = x.flatten(2)
        for layer in self.hidden:
            h = self.act(affine(layer.bias, h, layer.weight))
        return affine(self.out.bias, h, self.out.weight)


MODELS = {"mlp": EnsembleMLP}


class EnsembleConv2d(nn.Module):
    """K independent convolutions in one grouped convolution (groups = K).

    x [B, K*C_in, H, W] (member k's channels in block k) -> [B, K*C_out, H, W] ('same' padding).
    The weight keeps the member axis in front, [K, C_out, C_in, kh, kw], and is viewed as the
    [K*C_out, C_in, kh, kw] that grouped convolution wants.
    """

    def __init__(self, c_in, c_out, kernel_size, generators):
        super().__init__()
        bound = 1 / math.sqrt(c_in * kernel_size**2)  # nn.Conv2d's default init, like EnsembleLinear
        self.weight = nn.Parameter(_uniform(generators, (c_out, c_in, kernel_size, kernel_size), bound))
        self.bias = nn.Parameter(_uniform(generators, (c_out,), bound))  # [K, C_out]
        self.padding = kernel_size // 2

    def forward(self, x):
        k = self.weight.shape[0]
        return nn.functional.conv2d(x, self.weight.reshape(-1, *self.weight.shape[2:]), self.bias.reshape(-1),
                                    padding=self.padding, groups=k)


class EnsembleCNN(nn.Module):
    """(conv k x k, activation, 2x2 max-pool) x len(channels) -> flatten -> the MLP's layers.

    Images x [K, B, C, H, W] are laid out as [B, K*C, H, W] so that one grouped convolution runs
    every member; the flattened features go back to [K, B, F] for the batched linear layers.
    Member k draws its layers in order from its own generator, as in EnsembleMLP.
    """

    def __init__(self, input_shape, channels, kernel_size, hidden, n_outputs, seeds, activation="relu",
                 out_init_scale=1.0, out_bias_offset=0.0):
        super().__init__()
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        c, h, w = input_shape
        widths = [c, *channels]
        self.convs = nn.ModuleList(
            EnsembleConv2d(a, b, kernel_size, generators) for a, b in zip(widths[:-1], widths[1:]))
        self.conv_rows = [c * h * w]  # elements per example of the image and each convolution's output
        for c_out in channels:
            self.conv_rows.append(c_out * h * w)
            h, w = h // 2, w // 2
        features = [widths[-1] * h * w, *hidden]
        self.hidden = nn.ModuleList(
            EnsembleLinear(a, b, generators) for a, b in zip(features[:-1], features[1:]))
        self.out = EnsembleLinear(features[-1], n_outputs, generators, scale=out_init_scale,
                                  bias_offset=out_bias_offset)
        self.act = HIDDEN_ACTIVATIONS[activation]

    def widest_row(self) -> int:
        """Elements per example of the widest activation, the image included (see EnsembleMLP's)."""
        return max(*self.conv_rows, *(max(layer.weight.shape[1:]) for layer in [*self.hidden, self.out]))

    def forward(self, x):  # x [K, B, C, H, W] -> z [K, B, n_outputs]
        k, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # [B, K*C, H, W]
        for conv in self.convs:
            h = nn.functional.max_pool2d(self.act(conv(h)), 2)  # [B, K*C_out, H/2, W/2]
        h = h.reshape(b, k, -1).transpose(0, 1)  # [K, B, C_out * H' * W']
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.out(h)


MODELS["cnn"] = EnsembleCNN


def build_model(cfg, input_shape, n_outputs, seeds) -> nn.Module:
    """The ensemble named by cfg.name (the `model` config node, checked by bench.config), on CPU."""
    hidden = list(cfg.hidden)
    if cfg.name == "cnn":
        channels, size = list(cfg.channels), cfg.kernel_size
        if min(input_shape[1:]) < 2 ** len(channels):
            raise UserError(f"model.channels={channels} halves the image {len(channels)} times, too often for "
                            f"{input_shape[1]}x{input_shape[2]} images; use fewer blocks")
        return EnsembleCNN(input_shape, channels, size, hidden, n_outputs, seeds, cfg.activation,
                           cfg.out_init_scale, cfg.get("out_bias_offset", 0.0))
    return EnsembleMLP(input_shape, hidden, n_outputs, seeds, cfg.activation, cfg.out_init_scale,
                       cfg.get("out_bias_offset", 0.0))

