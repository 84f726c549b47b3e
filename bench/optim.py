"""SGD, Adam and AdamW for an ensemble whose members each have their own learning rate.

Parameters carry a leading member axis ([K, ...]). Neither SGD's momentum buffer nor Adam's moments
depend on the learning rate, so each optimizer computes its update as at lr = 1 and scales it per
member (weight decay included: AdamW's decoupled p·(1 − lr·wd) is p − lr·(wd·p)): member k's values
are those of a one-member run at lr[k].

Only correctly rounded element-wise ops (mul, add, sub, div, sqrt) touch the state and the parameters,
never a fused multiply-add (addcdiv, lerp, add with alpha): a vectorised loop and its scalar tail then
round alike, so a member's numbers do not depend on how many members train beside it, where it sits,
or what learning rates its neighbours have (tested bitwise). Against torch.optim at the same
learning rate the values agree to float rounding (torch uses fused forms; also tested).
"""
import torch

from bench.errors import is_number

# the keys of each optimizer's config node (besides `name` and `lr`), with torch.optim's defaults
SETTINGS = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "maximize": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "maximize": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "maximize": False},
}


class EnsembleOptimizer:
    """`step()` updates every parameter from its `.grad`; `lr` holds one learning rate per member [K].

    `param_groups` mirrors torch.optim's (one group) for code that collects the parameters;
    `state_dict()`/`load_state_dict()` snapshot and restore the state (the divergence replay).
    `members`: per parameter, the (start, stop) span of members its leading axis holds (a pack's output
    layers hold those of one output width: bench.models.Ensemble.parameter_members); default every one."""

    def __init__(self, params, name: str, lr, members=None, **settings):
        self.name = name
        self.settings = {**SETTINGS[name], **settings}
        self.params = list(params)
        self.lr = torch.as_tensor(lr, dtype=torch.float64).flatten()  # [K]
        spans = members or [(0, len(self.lr))] * len(self.params)
        # the learning rates spread to each parameter's shape, so the scaling is one foreach multiply
        self._lr = [self.lr[a:b].to(p.device, p.dtype).view(b - a, *[1] * (p.dim() - 1)).expand_as(p).contiguous()
                    for p, (a, b) in zip(self.params, spans)]
        self.param_groups = [{"params": self.params, "lr": self.lr}]
        self.steps = 0
        self.state = {}  # name -> list of tensors, one per parameter

    @torch.no_grad()
    def step(self):
        self.steps += 1
        grads = [p.grad for p in self.params]
        if self.settings["maximize"]:
            grads = torch._foreach_neg(grads)
        update = (self._sgd if self.name == "sgd" else self._adam)(grads)  # the step at lr = 1
        torch._foreach_sub_(self.params, torch._foreach_mul(update, self._lr))

    def _decayed(self, grads):
        """grad + weight_decay·p (L2 weight decay: SGD, Adam)."""
        wd = self.settings["weight_decay"]
        return torch._foreach_add(grads, torch._foreach_mul(self.params, wd)) if wd else list(grads)

    def _sgd(self, grads):
        s = self.settings
        d = self._decayed(grads)
        if not s["momentum"]:
            return d
        if "momentum" not in self.state:  # torch starts the buffer at the first gradient
            self.state["momentum"] = [g.clone() for g in d]
        else:
            buf = self.state["momentum"]
            torch._foreach_mul_(buf, s["momentum"])
            torch._foreach_add_(buf, torch._foreach_mul(d, 1.0 - s["dampening"]))
        buf = self.state["momentum"]
        if s["nesterov"]:
            return torch._foreach_add(d, torch._foreach_mul(buf, s["momentum"]))
        return [b.clone() for b in buf]

    def _adam(self, grads):
        s = self.settings
        beta1, beta2 = s["betas"]
        g = self._decayed(grads) if self.name == "adam" else list(grads)
        if "exp_avg" not in self.state:
            self.state["exp_avg"] = [torch.zeros_like(p) for p in self.params]
            self.state["exp_avg_sq"] = [torch.zeros_like(p) for p in self.params]
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        torch._foreach_mul_(m, beta1)
        torch._foreach_add_(m, torch._foreach_mul(g, 1.0 - beta1))
        torch._foreach_mul_(v, beta2)
        torch._foreach_add_(v, torch._foreach_mul(torch._foreach_mul(g, g), 1.0 - beta2))
        correction1 = 1.0 - beta1 ** self.steps
        correction2 = (1.0 - beta2 ** self.steps) ** 0.5
        denom = torch._foreach_div(torch._foreach_sqrt(v), correction2)
        torch._foreach_add_(denom, s["eps"])
        update = torch._foreach_div(torch._foreach_div(m, denom), correction1)
        if self.name == "adamw" and s["weight_decay"]:
            torch._foreach_add_(update, torch._foreach_mul(self.params, s["weight_decay"]))
        return update

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": {key: [t.clone() for t in ts] for key, ts in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = saved["steps"]
        self.state = {key: [t.clone() for t in ts] for key, ts in saved["state"].items()}


# torch.optim.SGD settings that plain SGD leaves at 0 / False
PLAIN_SGD_ZEROS = ("momentum", "weight_decay", "dampening", "nesterov", "maximize")


class PlainSGD(EnsembleOptimizer):
    """Plain SGD, p -= lr * grad, with one learning rate per member (`lr` [K]): this module's SGD with no
    setting, whose update is one correctly rounded multiply and subtract per parameter (so a member's
    numbers do not depend on K, its position or its neighbours' rates). It keeps no state, and building
    it imports nothing (a torch optimizer imports torch._dynamo, a second of a short run's start-up).
    The hand-written step applies it inside its backward instead (`TorchLayers.backward`)."""

    def __init__(self, params, lr, members=None):
        params = list(params)
        super().__init__(params, "sgd", [float(lr)] * len(params[0]) if isinstance(lr, (int, float)) else lr,
                         members)


# ------------------------------------------------------------------------------------------------
# building the optimizer of a run from its config node

# what each optimizer setting accepts (bench.config checks the node against these, before any data)
def _betas(value) -> bool:
    values = list(value) if isinstance(value, (list, tuple)) else None
    return values is not None and len(values) == 2 and all(is_number(b) and 0 <= b < 1 for b in values)


def _learning_rates(value) -> bool:
    values = list(value) if isinstance(value, (list, tuple)) else None
    return bool(values) and all(is_number(v) and v > 0 for v in values) and len(set(values)) == len(values)


def setting_rules():
    """{setting: what it accepts} (bench.errors constraints), for every key of any optimizer node."""
    from bench.errors import Interval, Rule

    number = Interval(float, 0, None)
    return {
        "lr": Rule(lambda v: _learning_rates(v if isinstance(v, (list, tuple)) else [v]),
                   "a number > 0, or a non-empty list of distinct numbers > 0 (a grid: members = seeds x "
                   "learning rates), e.g. 0.1 or [0.01,0.1,1]"),
        "lr_grid": Rule(_learning_rates, "a non-empty list of distinct numbers > 0, e.g. [0.01,0.1,1]"),
        "lr_extend": Interval(int, 0, None, what="an integer >= 0 (rates a tuned grid may grow by past each edge)"),
        "momentum": number, "dampening": Interval(float, 0, 1), "weight_decay": number,
        "eps": Interval(float, 0, None, closed="neither"), "nesterov": [True, False], "maximize": [True, False],
        "betas": Rule(_betas, "a list of two numbers in [0, 1), e.g. [0.9,0.999]"),
    }


def learning_rates(lr) -> list:
    """optimizer.lr as the run's grid: a scalar is a grid of one ([0.1]), a list is itself."""
    return [float(lr)] if isinstance(lr, (int, float)) else [float(v) for v in lr]


def members(seeds, grid) -> tuple:
    """The ensemble's members, for each learning rate every seed: (member seeds [K], member lrs [K]),
    K = len(grid) x len(seeds); the members at one learning rate are contiguous."""
    return [s for _ in grid for s in seeds], [lr for lr in grid for _ in seeds]


def settings_of(cfg) -> dict:
    """The node's optimizer settings (every key but name, lr, lr_grid and lr_extend), as plain values."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else dict(cfg)
    settings = {k: v for k, v in node.items() if k not in ("name", "lr", "lr_grid", "lr_extend")}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    return settings


def make_optimizer(cfg, params, lr=None, members=None):
    """The optimizer of a run: cfg its `optimizer` node, `lr` one learning rate per member [K] (default:
    cfg.lr, a scalar, for every member); members: the members each parameter holds (EnsembleOptimizer).

    Plain SGD (no momentum, weight decay, dampening, nesterov or maximize) is `PlainSGD` (this SGD,
    which the hand-written step applies inside its backward: one update per layer, whatever the number
    of learning rates). Every other setting is `EnsembleOptimizer`."""
    params = list(params)
    if lr is None:
        lr = [float(cfg.lr)] * (len(params[0]) if params[0].dim() else 1)
    settings = settings_of(cfg)
    if cfg.name == "sgd" and not any(settings.get(key) for key in PLAIN_SGD_ZEROS):
        return PlainSGD(params, lr, members)
    return EnsembleOptimizer(params, cfg.name, lr, members, **settings)
