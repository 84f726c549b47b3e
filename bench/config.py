"""The one validation step: the composed Hydra config -> a validated `Plan`, before any data loads.

    plan = validate(cfg)   # UserError (one line: the key, the value, what is allowed) or a Plan

What each key accepts is declared as data (`RUN`, `TRAINER`, `MODEL`, `COMMON_DATASET`, and the
records: `bench.losses.LOSSES[...].params`, `bench.datasets.DATASETS[...].params`), in the style of
scikit-learn's `_parameter_constraints`; `validate` checks the whole config in one pass and raises
the first violation. `loss=auto` becomes the task's canonical loss (`bench.losses.CANONICAL`) here,
before the run is identified, so `loss=auto` and the loss it stands for are the same run. The later
phases (data, model, train, store) trust the plan. Torch and the registries are imported inside
`validate`, not when this module is imported.
"""
import copy
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from bench import store
from bench.errors import Interval, Rule, UserError, check_choice, check_value

# an absolute path: found the same way whether run as `python -m bench.run` or imported
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _widths(non_empty: bool) -> Rule:
    """A list of layer widths: positive integers (a non-empty list if `non_empty`)."""
    def test(value):
        widths = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else None
        return widths is not None and (widths or not non_empty) and all(_is_int(w) and w > 0 for w in widths)

    return Rule(test, f"{'a non-empty list' if non_empty else 'a list'} of positive integers, e.g. [64,64]")


POSITIVE_INT = Interval(int, 0, None, closed="neither")
BOOLEAN = [True, False]
# the keys of conf/config.yaml and what each accepts (the groups' nodes are checked by their records)
RUN = {"dataset": None, "model": None, "activation": None, "loss": None, "optimizer": None, "group": None,
       "seeds": None, "device": None, "results_dir": None, "force": BOOLEAN, "progress": ["auto", *BOOLEAN],
       "trainer": None}
TRAINER = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "eval_every": POSITIVE_INT,
    "train_curve_rows": Interval(int, -1, None, what="an integer: 0 (as many rows as the validation split), "
                                                     "N > 0 rows, or -1 (every row of the training split)"),
    "threads": Interval(int, 0, None),
    "dtype": ["float32", "float64", "bfloat16"],
    "compile": BOOLEAN,
}
MODEL = {  # every model's settings (a key the option's YAML does not have is refused first)
    "hidden": _widths(non_empty=False),
    "channels": _widths(non_empty=True),
    "kernel_size": Rule(lambda v: _is_int(v) and v > 0 and v % 2 == 1, "an odd integer > 0"),
    "out_init_scale": Interval(float, 0, None, closed="neither"),
    "out_bias_offset": Interval(float, None, None, what="a number (logit units)"),
}
FRACTION = Interval(float, 0, 1, closed="neither", what="a fraction in (0, 1)")
COMMON_DATASET = {"split_seed": Interval(int, 0, None), "val_fraction": FRACTION, "test_fraction": FRACTION}
SEEDS = Rule(lambda s: isinstance(s, list) and s and all(_is_int(x) and x >= 0 for x in s) and len(set(s)) == len(s),
             "a non-empty list of distinct integers >= 0, e.g. [0,1,2]")


@dataclass
class Plan:
    """What `validate` resolved from the config: everything the later phases need to trust."""

    cfg: DictConfig  # the config with loss=auto resolved (what the later phases read)
    config: dict  # the same, resolved to plain containers (identity, config.yaml)
    seeds: list
    device: object  # torch.device
    dtype: object  # torch.dtype
    activation: str  # activation=auto resolved
    loss_params: dict  # the loss node less its name
    path: object  # the run folder
    summary_facts: dict  # identity facts copied into summary.json


def validate(cfg: DictConfig) -> Plan:
    """Check every user choice once, with one-line errors; return the resolved Plan."""
    import torch

    from bench.losses import resolve_pairing

    cfg = resolve_auto(cfg)
    check_keys(cfg)
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else cfg.seeds
    check_value("seeds", seeds, SEEDS)
    for key, allowed in TRAINER.items():
        check_value(f"trainer.{key}", cfg.trainer[key], allowed)
    for key in ("force", "progress"):
        check_value(key, cfg[key], RUN[key])
    dataset = check_dataset(cfg.dataset)
    check_model(cfg.model, dataset)
    check_optimizer(cfg.optimizer)
    check_writable("results_dir", cfg.results_dir)
    device = resolve_device(cfg.device)
    if cfg.trainer.dtype == "bfloat16" and device.type != "cuda":
        raise UserError("trainer.dtype=bfloat16 is supported on CUDA only; use float32 on this device")
    params = loss_params(cfg)
    # the (task, activation, loss) triple: the dataset config declares its task
    activation = resolve_pairing(cfg.dataset.task, cfg.activation.name, cfg.loss.name, params)
    config = OmegaConf.to_container(cfg, resolve=True)
    rid = store.run_id(config)
    t = cfg.trainer
    summary_facts = {
        "run_id": rid, "group": cfg.group, "dataset": cfg.dataset.name, "task": cfg.dataset.task,
        "model": cfg.model.name, "activation": activation, "loss": cfg.loss.name,
        "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, "metric": cfg.dataset.metric,
        "higher_is_better": metric_direction(cfg.dataset.metric), "target": cfg.dataset.target,
        "epochs": t.epochs, "seeds": seeds,
    }
    return Plan(cfg, config, seeds, device, getattr(torch, t.dtype), activation, params,
                store.run_dir(cfg.results_dir, cfg.group, rid), summary_facts)


def resolve_auto(cfg: DictConfig) -> DictConfig:
    """`loss=auto` -> the task's canonical loss with its own settings (conf/loss/<loss>.yaml) and any
    key the user set (auto's keys are null until set); a copy. Left as it is where the task is not known yet (validate says why)."""
    from bench.losses import CANONICAL

    try:
        name, task = cfg.loss.name, cfg.dataset.task
    except Exception:  # a missing (???) or broken value: validation reports it
        return cfg
    if name != "auto" or task not in CANONICAL:
        return cfg
    loss = CANONICAL[task][1]
    node = OmegaConf.merge(OmegaConf.load(Path(CONF_DIR) / "loss" / f"{loss}.yaml"),
                           {k: v for k, v in cfg.loss.items() if k != "name" and v is not None})
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.loss = node
    return cfg


def check_keys(cfg) -> None:
    """Keys added with +key=value that nothing reads would be silently ignored: refuse them."""
    for where, node, known in (("", cfg, RUN), ("trainer.", cfg.trainer, TRAINER)):
        for key in node:
            if key not in known:
                raise UserError(f"{where}{key} is not a config key; the keys here are: {', '.join(known)}")
    for group in ("model", "activation"):  # (dataset, loss, optimizer: against their records)
        option = Path(CONF_DIR) / group / f"{cfg[group].name}.yaml"
        known = list(OmegaConf.load(option)) if option.is_file() else ["name"]
        for key in cfg[group]:
            if key not in known:
                raise UserError(f"{group}.{key} is not a setting of {group}={cfg[group].name}; "
                                f"its settings are: {', '.join(known)}")


def check_dataset(node):
    """The `dataset` node (DictConfig or dict) against its record -> the record (bench.datasets.Dataset)."""
    from bench.datasets import COMMON_KEYS, DATASETS, _plain
    from bench.losses import TASKS

    cfg = _plain(node)
    name = cfg.get("name")
    check_choice("dataset", name, DATASETS)
    record = DATASETS[name]
    signature = inspect.signature(record.loader).parameters
    allowed = [p for p in signature if p != "split"]
    required = [p for p, v in signature.items() if p != "split" and v.default is inspect.Parameter.empty]
    params = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise UserError(f"dataset.{unknown[0]} is not a parameter of dataset {name}; its parameters are: "
                        f"{', '.join(list(COMMON_KEYS) + allowed)}")
    missing = [k for k in required + ["task", *COMMON_DATASET]
               if k not in cfg or cfg[k] == "???"]  # ??? = OmegaConf's mandatory value, left unset
    if missing:
        raise UserError(f"dataset {name}: dataset.{missing[0]} is required; set it, e.g. "
                        f"dataset.{missing[0]}=... (see conf/dataset/{name}.yaml)")
    check_choice("dataset.task", cfg["task"], [record.task] if record.task else TASKS)
    for key, rule in (*COMMON_DATASET.items(), *record.params.items()):
        if key in cfg:
            check_value(f"dataset.{key}", cfg[key], rule)
    for test, key, what in record.rules:
        if not test(cfg):
            raise UserError(f"dataset.{key}={cfg[key]!r} is not allowed; it must be {what.format(**cfg)}")
    vf, tf = cfg["val_fraction"], cfg["test_fraction"]
    if vf + tf >= 1:
        raise UserError(f"dataset.val_fraction={vf} + dataset.test_fraction={tf} leave nothing to train on; "
                        "their sum must be < 1")
    return record


def check_model(node, dataset) -> None:
    """The `model` node: its name, every setting's value, and images for a CNN (before data loads)."""
    from bench.models import HIDDEN_ACTIVATIONS, MODELS

    check_choice("model", node.name, MODELS)
    check_choice("model.activation", node.activation, HIDDEN_ACTIVATIONS)
    for key, rule in MODEL.items():
        if key in node:
            check_value(f"model.{key}", node[key], rule)
    if node.name == "cnn" and not dataset.images:
        raise UserError(f"model=cnn needs images (input shape [channels, height, width]) but dataset="
                        f"{dataset.name} is tabular; use model=mlp")


def check_optimizer(node) -> None:
    """The `optimizer` node: its name, lr, keys that are keyword arguments of the torch optimizer, and
    every setting as torch checks it (types and ranges: momentum >= 0, betas in [0, 1), ...), by
    building the optimizer for one dummy parameter."""
    import inspect

    import torch

    from bench.train import OPTIMIZERS, make_optimizer

    check_choice("optimizer", node.name, OPTIMIZERS)
    check_value("optimizer.lr", node.lr, Interval(float, 0, None, closed="neither"))
    allowed = [p for p in inspect.signature(OPTIMIZERS[node.name]).parameters if p != "params"]
    for name in node:
        if name != "name" and name not in allowed:
            raise UserError(f"optimizer.{name} is not a setting of optimizer={node.name}; "
                            f"allowed: {', '.join(allowed)}")
    try:
        make_optimizer(node, [torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError, RuntimeError) as error:
        settings = ", ".join(f"{k}={v!r}" for k, v in node.items() if k != "name")
        reason = " ".join(str(error).split())
        raise UserError(f"optimizer={node.name} does not accept {settings}: {reason}") from None


def check_writable(key: str, directory) -> None:
    """The results folder (or its nearest existing parent) must be a writable directory."""
    path = Path(str(directory)).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{key}={directory} is not usable: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{key}={directory} is not writable (no write permission on {existing})")


def resolve_device(name: str):
    """auto | cpu | cuda | cuda:N | mps -> torch.device; asking for an absent device is an error."""
    import torch

    name = str(name)
    allowed = "auto, cpu, cuda, cuda:N, mps"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("device=mps is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available on this machine "
                            "(no silent fallback); use device=cpu or device=auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    raise UserError(f"device={name!r} is not allowed; choose one of: {allowed}")


def loss_params(cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg.loss).items() if k != "name"}


def metric_direction(metric) -> bool:
    from bench.metrics import HIGHER_IS_BETTER

    check_choice("dataset.metric", metric, HIGHER_IS_BETTER)
    return HIGHER_IS_BETTER[metric]
