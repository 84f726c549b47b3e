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

# the keys of each optimizer's config node (besides `name` and `lr`), with torch.optim's defaults
SETTINGS = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "maximize": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "maximize": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "maximize": False},
}


class EnsembleOptimizer:
    """`step()` updates every parameter from its `.grad`; `lr` holds one learning rate per member [K].

    `param_groups` mirrors torch.optim's (one group) for code that collects the parameters;
    `state_dict()`/`load_state_dict()` snapshot and restore the state (the divergence replay)."""

    def __init__(self, params, name: str, lr, **settings):
        self.name = name
        self.settings = {**SETTINGS[name], **settings}
        self.params = list(params)
        self.lr = torch.as_tensor(lr, dtype=torch.float64).flatten()  # [K]
        k = len(self.lr)
        # the learning rates spread to each parameter's shape, so the scaling is one foreach multiply
        self._lr = [self.lr.to(p.device, p.dtype).view(k, *[1] * (p.dim() - 1)).expand_as(p).contiguous()
                    for p in self.params]
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

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": {key: [t.clone() for t in ts] for key, ts in self.state.items()}}

    def load_state_dict(self, saved: dict) -> None:
        self.steps = saved["steps"]
        self.state = {key: [t.clone() for t in ts] for key, ts in saved["state"].items()}
