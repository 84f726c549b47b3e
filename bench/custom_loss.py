"""A user's own loss, run beside the built-ins without editing the package (conf/loss/custom.yaml).

    python -m bench.run loss=custom custom_loss.fn=my_losses:taylor_ce custom_loss.params={order:2}
    python -m bench.run -m loss=cce,custom custom_loss.fn=my_losses:taylor_ce dataset=digits,wine

loss=custom reads the top-level `custom_loss` node (conf/config.yaml; bench.config.settle_custom_loss
copies it into the loss node), and a user's own YAML on Hydra's search path sets the same keys in its
loss node (examples/conf/loss/taylor_ce.yaml); messages name the node the user set (`settings_node`). A loss
node with an `fn` key is a user's loss: `register(node)` imports `module:function` (the working
directory on the import path, as for `python -m`), builds a `bench.losses.Loss` record from the declared
tasks and activations and enters it in `LOSSES` under the node's name, so the head, the objective and
the report treat it as a built-in; `probe` then calls it once on a small batch. Both run inside
`bench.config.validate`, before any data is loaded; every failure is one UserError line:

    the module does not import / the name is missing / not callable / tasks or activations unknown /
    it raises on the probe batch / returns a scalar (reduced over the batch: the most common mistake) /
    a wrong shape / NaN or inf / no gradient (computed outside torch) / a NaN, inf or all-zero gradient

The function has the built-ins' contract, `f(y_pred, y_true, **params) -> [..., B]` on the activated
outputs (probabilities for softmax), or with `on_logits: true` `f(z, y_true, **params)` on the raw
outputs (a fused form); targets are encoded as for the built-ins (one-hot 0/1 for softmax).
"""
import importlib
import os
import sys

import torch

from bench.errors import UserError, check_choice

KEYS = ("name", "fn", "label", "tasks", "activations", "on_logits", "params")  # conf/loss/custom.yaml


def settings_node(name) -> str:
    """Where the user set a loss's keys: loss=custom -> the custom_loss node; an own YAML -> loss."""
    return "custom_loss" if name == "custom" else "loss"


def display_name(node) -> str:
    """The loss's name in results and the report: `label`, else the function's name."""
    return node.get("label") or str(node["fn"]).rpartition(":")[2].rpartition(".")[2]


def load_function(path, where="loss"):
    """'package.module:function' -> the callable (one-line UserError naming what failed, as `where`.fn)."""
    text = str(path)
    module_name, colon, attr = text.partition(":")
    if not colon or not module_name or not attr:
        raise UserError(f"{where}.fn={text!r} is not an import path; write it as module:function, "
                        f"e.g. {where}.fn=examples.my_losses:taylor_ce")
    if os.getcwd() not in sys.path:  # as `python -m` does: a user's file in the working directory imports
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or any error raised while the module runs
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise UserError(f"{where}.fn={text}: module {module_name!r} does not import ({reason})") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            names = sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n]))
            raise UserError(f"{where}.fn={text}: module {module_name!r} has no {attr!r}; its functions: "
                            f"{', '.join(names) or 'none'}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise UserError(f"{where}.fn={text}: {attr!r} is a {type(fn).__name__}, not a function")
    return fn


def register(node):
    """Check the node's keys, import its function and enter its Loss record in LOSSES (under node.name)."""
    from bench.losses import ACTIVATIONS, LOSSES, TASKS, Loss, _on

    name = node.get("name")
    where = settings_node(name)
    if node.get("fn") is None:
        raise UserError(f"loss={name} needs its function: {where}.fn=module:function, "
                        f"e.g. {where}.fn=examples.my_losses:taylor_ce")
    if name in LOSSES and not LOSSES[name].source:
        raise UserError(f"loss.name={name} is a built-in loss; give your loss another name (e.g. custom)")
    for key in node:
        if key not in KEYS:
            raise UserError(f"loss.{key} is not a setting of a user's loss; its settings are: {', '.join(KEYS)} "
                            "(the function's own parameters go under loss.params)")
    tasks, activations = list(node.get("tasks") or []), list(node.get("activations") or [])
    for key, values, allowed in (("tasks", tasks, TASKS), ("activations", activations, ACTIVATIONS)):
        if not values:
            raise UserError(f"{where}.{key} is empty; list at least one of: {', '.join(allowed)}")
        for value in values:
            check_choice(f"{where}.{key}", value, allowed)
    check_choice(f"{where}.on_logits", node.get("on_logits", False), [True, False])
    fn = load_function(node["fn"], where)
    on = {t: tuple(activations) if t in tasks else () for t in TASKS}
    fused = {}
    if node.get("on_logits"):
        fused = {a: lambda z, y, activation, **p: fn(z, y, **p) for a in activations}
    record = Loss(name, fn, on, natural=activations[0], fused=fused, source=str(node["fn"]),
                  off_task="[" + ",".join(tasks) + "]",
                  refuses={"*": f"loss={name} ({node['fn']}) declares activations=[{','.join(activations)}]"})
    LOSSES[name] = record
    return record


def probe(task: str, activation: str, name: str, params: dict) -> None:
    """Call the registered loss once on a small batch of the run's kind (2 members x 6 examples, as in
    training) and check what training needs of it; one-line UserError otherwise."""
    from bench.heads import Head
    from bench.losses import LOSSES

    record = LOSSES[name]
    where = settings_node(name)
    what = f"{where}.fn={record.source}"
    n_classes = {"binary": 2, "multiclass": 3, "regression": 0}[task]
    head = Head(task, n_classes, 1, activation, name, dict(params))
    generator = torch.Generator().manual_seed(0)
    k, b = 2, 6
    z = torch.randn(k, b, head.n_outputs, generator=generator).requires_grad_(True)  # [K, B, O]
    if task == "regression":
        y = torch.rand(b, 1, generator=generator) + 0.5
    else:
        y = torch.arange(b) % n_classes
    targets = head.encode(y).expand(k, b, head.n_outputs)
    shown = f"on a probe batch (predictions [{k}, {b}, {head.n_outputs}], {activation} outputs)"
    try:
        values = head.objective(z, targets)
    except Exception as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        raise UserError(f"{what} with {where}.params={dict(params)} raised {reason} {shown}") from None
    if not isinstance(values, torch.Tensor):
        raise UserError(f"{what} returned a {type(values).__name__}, not a torch tensor, {shown}")
    if values.shape != (k, b):
        if values.dim() == 0:
            raise UserError(f"{what} returns a scalar {shown}: it reduced over the batch; return one value "
                            f"per example, shape [..., B] = [{k}, {b}] (reduce over the last axis only, e.g. "
                            ".sum(-1), not .mean())")
        raise UserError(f"{what} returns shape {list(values.shape)} {shown}; expected one value per example, "
                        f"[{k}, {b}] (reduce over the last axis, the outputs)")
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).sum())
        raise UserError(f"{what} returns NaN or inf for {bad} of {values.numel()} examples {shown}")
    if not values.requires_grad:
        raise UserError(f"{what} is not differentiable: its value has no gradient with respect to the "
                        f"predictions {shown} (computed outside torch: numpy, .item(), .detach() or a comparison?)")
    (grad,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all():
        raise UserError(f"{what} has a NaN or inf gradient {shown}")
    if not grad.abs().sum() > 0:
        raise UserError(f"{what} has a zero gradient everywhere {shown}: training would not move")
