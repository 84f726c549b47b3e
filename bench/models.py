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


def _pad_rows(t):
    """A zero row below a one-row tensor [..., 1, n] (one-row products take another kernel, as `_pad`)."""
    return torch.cat([t, torch.zeros_like(t)], -2) if t.shape[-2] == 1 else t


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

    # the hand-written backward (bench.step.TorchLayers) of the product above
    def input_grad(self, grad):
        """grad [K, B, out] -> the gradient for the layer's input [K, B, in] (from the weight as it is)."""
        return input_grad(grad, self.weight)

    def weight_grad(self, x, grad):
        """x [K, B, in], grad [K, B, out] -> d loss / d weight, the weight's shape."""
        return torch.bmm(x.transpose(1, 2), grad)

    def update_(self, x, grad):
        """weight += x^T @ grad in place (grad already scaled by -lr per member)."""
        affine_update_(self.weight, x.transpose(1, 2), grad, 1)


class EnsembleOutput(EnsembleLinear):
    """An output layer: K affine maps x [K, B, fan_in] -> z [K, B, fan_out] computed transposed, z^T =
    weight^T @ x^T, its weight stored [K, out, in] (the values EnsembleLinear draws, transposed). With a
    few output units the transposed products are the fast ones on torch's CPU kernels (measured at K = 32,
    B = 32, 64 -> 10, one thread: forward 31 against 113 us, the weight update 22 against 136 us), and z,
    a view [K, B, O] of [K, O, B] memory, has its units outer to its rows, the layout in which the
    objectives reduce over units fast (softmax + CCE's forward and backward 215 against 469 us:
    losses._over_classes). Every member's output block [O, B] starts on a 64-byte boundary (B a multiple
    of ROW_ALIGN) and has B >= 16 columns, whatever O."""

    def __init__(self, fan_in, fan_out, generators, scale=1.0, bias_offset=0.0):
        super().__init__(fan_in, fan_out, generators, scale, bias_offset)
        self.weight = nn.Parameter(self.weight.detach().transpose(1, 2).contiguous())  # [K, out, in]

    # one output unit: its products padded with a zero unit (one-row products take another kernel, whose
    # bits depend on the member's position; measured, as for one-column ones: `_pad`)
    def forward(self, x):  # x [K, B, in] -> z [K, B, out]: a view of [K, out, B]
        bias, weight = self.bias.transpose(1, 2), self.weight
        if weight.shape[1] == 1:
            return torch.baddbmm(_pad_rows(bias), _pad_rows(weight), x.transpose(1, 2))[:, :1].transpose(1, 2)
        return torch.baddbmm(bias, weight, x.transpose(1, 2)).transpose(1, 2)

    def input_grad(self, grad):  # [K, B, out] @ [K, out, in]
        return torch.bmm(_pad(grad), _pad_rows(self.weight))

    def weight_grad(self, x, grad):  # [K, out, B] @ [K, B, in]
        if self.weight.shape[1] == 1:
            return torch.bmm(_pad_rows(grad.transpose(1, 2)), x)[:, :1]
        return torch.bmm(grad.transpose(1, 2), x)

    def update_(self, x, grad):
        if self.weight.shape[1] == 1:
            padded = _pad_rows(self.weight.detach()).baddbmm_(_pad_rows(grad.transpose(1, 2)), x)
            self.weight.detach().copy_(padded[:, :1])
        else:
            self.weight.baddbmm_(grad.transpose(1, 2), x)


def output_spans(n_outputs, k: int) -> list:
    """[(start, stop, width)]: the members of equal output width side by side, one output layer each.
    n_outputs: every member's output units (an int), or one per member (a pack: bench.groups)."""
    widths = [n_outputs] * k if isinstance(n_outputs, int) else list(n_outputs)
    spans = []
    for m, width in enumerate(widths):
        if spans and spans[-1][2] == width:
            spans[-1] = (spans[-1][0], m + 1, width)
        else:
            spans.append((m, m + 1, width))
    return spans


class OutputLayers(nn.ModuleList):
    """The output layers of an ensemble: one EnsembleLinear per span of members of equal width, so that
    each member's product has its own width (the kernel it takes alone). Member k draws its output layer
    from its own generator after its hidden layers, as with a single output layer."""

    def __init__(self, fan_in, n_outputs, generators, scale=1.0, bias_offset=0.0):
        spans = output_spans(n_outputs, len(generators))
        super().__init__(EnsembleOutput(fan_in, width, generators[start:stop], scale, bias_offset)
                         for start, stop, width in spans)
        self.spans = [(start, stop) for start, stop, _ in spans]

    def forward(self, h) -> list:
        """h [K, B, in] -> [z [K_w, B, O_w]] per output layer (h sliced per span: views, no copy)."""
        return [layer(h[start:stop]) for layer, (start, stop) in zip(self, self.spans)]


def one_or_all(outputs: list):
    """A model's outputs as callers read them: z [K, B, O] for one output width, the list for several."""
    return outputs[0] if len(outputs) == 1 else outputs


class Ensemble(nn.Module):
    """What the ensemble models share: `features` (theirs) feeds the output layers `outs`."""

    def features(self, x):
        raise NotImplementedError

    def outputs(self, x) -> list:  # x [K, B, ...] -> [z [K_w, B, O_w]] per output layer
        return self.outs(self.features(x))

    def forward(self, x):  # x [K, B, ...] -> z [K, B, n_outputs] (a list per output width for several)
        return one_or_all(self.outputs(x))

    def parameter_members(self) -> list:
        """Per parameter (in `parameters()` order), the (start, stop) span of members its leading axis
        holds: every member's, but an output layer's own span."""
        k = self.outs.spans[-1][1]
        own = {id(p): span for layer, span in zip(self.outs, self.outs.spans) for p in layer.parameters()}
        return [own.get(id(p), (0, k)) for p in self.parameters()]


class EnsembleMLP(Ensemble):
    """Flatten -> (linear, activation) x len(hidden) -> linear output (pre-activation logits z).

    n_outputs: the output units of every member, or a list of one per member (a pack of configurations:
    members of equal width side by side, one output layer each: `OutputLayers`)."""

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
        self.outs = OutputLayers(widths[-1], n_outputs, generators, scale=out_init_scale, bias_offset=out_bias_offset)
        self.activation = activation
        self.act = HIDDEN_ACTIVATIONS_INPLACE.get(activation, HIDDEN_ACTIVATIONS[activation])

    def widest_row(self) -> int:
        """Elements per example of the widest layer input or output (evaluation sizes its chunks by it)."""
        return max(max(layer.weight.shape[1:]) for layer in [*self.hidden, *self.outs])

    def features(self, x):  # x [K, B, *input_shape] -> the last hidden layer's output [K, B, H]
        # the layers' own forward inlined: per-module call overhead is a visible share of a small step;
        # the activation applies in place to the matmul's fresh output
        h = x.flatten(2)
        for layer in self.hidden:
            h = self.act(affine(layer.bias, h, layer.weight))
        return h



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


class EnsembleCNN(Ensemble):
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
        self.outs = OutputLayers(features[-1], n_outputs, generators, scale=out_init_scale,
                                 bias_offset=out_bias_offset)
        self.act = HIDDEN_ACTIVATIONS[activation]

    def widest_row(self) -> int:
        """Elements per example of the widest activation, the image included (see EnsembleMLP's)."""
        return max(*self.conv_rows, *(max(layer.weight.shape[1:]) for layer in [*self.hidden, *self.outs]))

    def features(self, x):  # x [K, B, C, H, W] -> the last hidden layer's output [K, B, H]
        k, b = x.shape[:2]
        h = x.transpose(0, 1).reshape(b, -1, *x.shape[3:])  # [B, K*C, H, W]
        for conv in self.convs:
            h = nn.functional.max_pool2d(self.act(conv(h)), 2)  # [B, K*C_out, H/2, W/2]
        h = h.reshape(b, k, -1).transpose(0, 1)  # [K, B, C_out * H' * W']
        for layer in self.hidden:
            h = self.act(layer(h))
        return h


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

