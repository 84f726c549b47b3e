"""The one validation step: the composed Hydra config -> a validated `Plan`, before any data loads.

    plan = validate(cfg)   # UserError (one line: the key, the value, what is allowed) or a Plan

What each key accepts is declared as data (`RUN`, `TRAINER`, `MODEL`, `COMMON_DATASET`, and the
records: `bench.losses.LOSSES[...].params`, `bench.datasets.DATASETS[...].params`), in the style of
scikit-learn's `_parameter_constraints`; `validate` checks the whole config in one pass and raises
the first violation. `loss=auto` becomes the task's canonical loss (`bench.losses.CANONICAL`) here,
before the run is identified, so `loss=auto` and the loss it stands for are the same run. The later
phases (data, model, train, store) trust the plan. Torch and the registries are imported inside
`check_values`, after the checks that need neither (keys, seeds, trainer, device, metric and target),
never when this module is imported: a mistyped command is refused without waiting for torch.
`check_values` (every value on its own) is also what a sweep runs on its jobs before any starts;
`validate` adds the pairings (model and data, task, activation and loss), which a sweep records `invalid`.
"""
import copy
import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from bench import store
from bench.errors import Interval, MachineError, Rule, UserError, check_choice, check_value

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
       "trainer": None, "custom_loss": None, "pack": None}
CUSTOM_LOSS = ("fn", "label", "tasks", "activations", "on_logits", "params")  # conf/config.yaml's custom_loss node
TRAINER = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "eval_every": POSITIVE_INT,
    "train_curve_rows": Interval(int, -1, None, what="an integer: 0 (as many rows as the validation split), "
                                                     "N > 0 rows, or -1 (every row of the training split)"),
    "threads": Interval(int, 0, None),
    "dtype": ["float32", "float64", "bfloat16"],
    "compile": BOOLEAN,
    "calibration_bins": POSITIVE_INT,
}
PACK = {  # conf/config.yaml's pack node: how a sweep's launcher packs configurations (bench.pack)
    "enabled": ["auto", *BOOLEAN],
    "clock_epochs": POSITIVE_INT,
    "max_members": POSITIVE_INT,
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
LABEL_NOISE = {"label_noise": Interval(float, 0, 1, closed="left", what="a share in [0, 1)"),  # optional keys
               "label_noise_kind": ["symmetric", "asymmetric"]}
GROUP = Rule(lambda g: isinstance(g, (str, int)) and not isinstance(g, bool) and g != store.REPORT
             and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", str(g)) is not None,
             f"a plain folder name (letters, digits, '-', '_', '.'; not starting with '.', "
                                    f"not '{store.REPORT}', the report's folder), e.g. my_sweep")
RESULTS_DIR = Rule(lambda d: isinstance(d, (str, int)) and not isinstance(d, bool) and str(d).strip() != ""
                   and not str(d).startswith("~"),
                   "a folder: not empty (that would be the working directory) and not starting with ~ (not "
                   "expanded here: give the full path)")
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
    lr_grid: list  # optimizer.lr as a list (one value for a scalar lr): members = seeds x lr_grid

def validate(cfg: DictConfig) -> Plan:
    """Check every user choice once, with one-line errors; return the resolved Plan."""
    cfg = check_values(cfg)
    import torch

    from bench.losses import LOSSES, resolve_pairing
    from bench.optim import learning_rates

    seeds = list(cfg.seeds)
    check_images(cfg.model, cfg.dataset)
    device = resolve_device(cfg.device)
    if cfg.trainer.dtype == "bfloat16" and device.type != "cuda":
        # with device=auto the machine decided: another one (with CUDA) runs this config
        error = MachineError if str(cfg.device) == "auto" else UserError
        raise error(f"trainer.dtype=bfloat16 is supported on CUDA only; use float32 on this device ({device})")
    params = loss_params(cfg)
    user_loss = "fn" in cfg.loss  # a user's own loss (bench.custom_loss): imported and entered in LOSSES here
    if user_loss:
        from bench.custom_loss import register

        register(cfg.loss)
    # the (task, activation, loss) triple: the dataset config declares its task
    activation = resolve_pairing(cfg.dataset.task, cfg.activation.name, cfg.loss.name, params)
    if user_loss:
        from bench.custom_loss import display_name, probe

        probe(cfg.dataset.task, activation, cfg.loss.name, params)
    config = OmegaConf.to_container(cfg, resolve=True)
    rid = store.run_id(config)
    t = cfg.trainer
    summary_facts = {
        "run_id": rid, "group": cfg.group, "dataset": cfg.dataset.name, "task": cfg.dataset.task,
        "model": cfg.model.name, "activation": activation,
        "loss": display_name(cfg.loss) if user_loss else LOSSES[cfg.loss.name].label(params),
        "optimizer": cfg.optimizer.name, "lr": config["optimizer"]["lr"], "metric": cfg.dataset.metric,
        "higher_is_better": metric_direction(cfg.dataset.metric), "target": cfg.dataset.target,
        "epochs": t.epochs, "seeds": seeds, "label_noise": cfg.dataset.get("label_noise", 0.0),
    }
    return Plan(cfg, config, seeds, device, getattr(torch, t.dtype), activation, params,
                store.run_dir(cfg.results_dir, cfg.group, rid), summary_facts, learning_rates(cfg.optimizer.lr))


def settle_custom_loss(cfg: DictConfig) -> DictConfig:
    """The top-level `custom_loss` node is read only through loss=custom's ${custom_loss.*} keys
    (conf/loss/custom.yaml): resolve the loss node, then drop the node, so that it is in no run's
    config or identity (a built-in run keeps its id; a loss=custom run is identified by its loss node).
    A copy; left as it is where an interpolation is broken (validate says why)."""
    from omegaconf.errors import OmegaConfBaseException

    if "custom_loss" not in cfg:
        return cfg
    try:
        loss = OmegaConf.to_container(cfg.loss, resolve=True)
    except OmegaConfBaseException:
        return cfg
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.loss = loss
        del cfg["custom_loss"]
    return cfg


def resolve_auto(cfg: DictConfig) -> DictConfig:
    """`loss=auto` -> the task's canonical loss with its own settings (conf/loss/<loss>.yaml) and any
    key the user set (auto's keys are null until set); a copy, without the `custom_loss` node
    (settle_custom_loss). Left as it is where the task is not known yet (validate says why)."""
    from bench.losses import CANONICAL

    cfg = settle_custom_loss(cfg)
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
    nodes = [("", cfg, RUN), ("trainer.", cfg.trainer, TRAINER)]
    if isinstance(cfg.get("pack"), DictConfig):
        nodes.append(("pack.", cfg.pack, PACK))
    if isinstance(cfg.get("custom_loss"), DictConfig):
        nodes.append(("custom_loss.", cfg.custom_loss, CUSTOM_LOSS))
    for where, node, known in nodes:
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
    allowed = [p for p in signature if p != "task"]  # (a loader taking `task` reads the common key)
    required = [p for p, v in signature.items() if p != "task" and v.default is inspect.Parameter.empty]
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
    for key, rule in (*COMMON_DATASET.items(), *LABEL_NOISE.items(), *record.params.items()):
        if key in cfg:
            check_value(f"dataset.{key}", cfg[key], rule)
    for test, key, what in record.rules:
        if not test(cfg):
            raise UserError(f"dataset.{key}={cfg[key]!r} is not allowed; it must be {what.format(**cfg)}")
    if cfg.get("label_noise") and cfg["task"] == "regression":
        raise UserError(f"dataset.label_noise={cfg['label_noise']} replaces class labels but dataset={name} is a "
                        "regression task; use 0 (noisy regression targets: dataset=outliers)")
    vf, tf = cfg["val_fraction"], cfg["test_fraction"]
    if vf + tf >= 1:
        raise UserError(f"dataset.val_fraction={vf} + dataset.test_fraction={tf} leave nothing to train on; "
                        "their sum must be < 1")
    return record


def check_model(node, dataset=None) -> None:
    """The `model` node: its name, every setting's value, and images for a CNN (given the dataset)."""
    from bench.models import HIDDEN_ACTIVATIONS, MODELS

    check_choice("model", node.name, MODELS)
    check_choice("model.activation", node.activation, HIDDEN_ACTIVATIONS)
    for key, rule in MODEL.items():
        if key in node:
            check_value(f"model.{key}", node[key], rule)
    if dataset is not None and node.name == "cnn" and not dataset.images:
        raise UserError(f"model=cnn needs images (input shape [channels, height, width]) but dataset="
                        f"{dataset.name} is tabular; use model=mlp")


def check_optimizer(node) -> None:
    """The `optimizer` node: its name, then every key against `bench.optim.setting_rules()` (lr a
    number > 0 or a grid of them, settings the optimizer has, each of the right kind: a list only
    where one is needed), then the combinations torch refuses."""
    from bench.optim import SETTINGS, setting_rules

    check_choice("optimizer", node.name, SETTINGS)
    allowed = ["lr", "lr_grid", "lr_extend", *SETTINGS[node.name]]
    rules = setting_rules()
    for name in node:
        if name != "name" and name not in allowed:
            raise UserError(f"optimizer.{name} is not a setting of optimizer={node.name}; "
                            f"allowed: {', '.join(allowed)}")
    if "lr" not in node:
        raise UserError(f"optimizer.lr is required; set it, e.g. optimizer.lr=0.1 (see conf/optimizer/{node.name}.yaml)")
    for name in node:
        if name != "name":
            value = node[name]
            check_value(f"optimizer.{name}", OmegaConf.to_container(value) if OmegaConf.is_list(value) else value,
                        rules[name])
    if node.get("nesterov") and (not node.get("momentum") or node.get("dampening")):
        raise UserError(f"optimizer.nesterov=true needs optimizer.momentum > 0 and optimizer.dampening=0; "
                        f"got momentum={node.get('momentum')}, dampening={node.get('dampening', 0)}")


def check_images(model, dataset_node) -> None:
    """A pairing, not a value: model=cnn needs an image dataset (in a sweep, `invalid` and it goes on)."""
    from bench.datasets import DATASETS

    check_model(model, DATASETS[dataset_node.name])


def check_writable(key: str, directory, group=None) -> None:
    """The folder (results_dir, or its `group` folder inside it) or its nearest existing parent must be
    a directory this process may write in: a file in the way, a read-only folder or a folder that
    cannot be entered is refused here, before any job, instead of by the first write."""
    path = Path(str(directory)).absolute() / (str(group) if group is not None else "")
    where = f"{key}={directory}" + (f" (group={group})" if group is not None else "")
    for folder in (path, *path.parents):
        try:
            if not folder.exists():
                continue
        except OSError as error:  # a parent that cannot be entered
            raise UserError(f"{where} is not usable: {folder} cannot be read ({error.strerror})") from None
        if not folder.is_dir():
            raise UserError(f"{where} is not usable: {folder} is a file, not a directory")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f"{where} is not writable (no write permission on {folder})")
        return


def resolve_device(name: str):
    """auto | cpu | cuda | cuda:N | mps -> torch.device; asking for a device this machine lacks is a
    MachineError (another machine may have it), a name that is no device a UserError."""
    import torch

    name = str(name)
    allowed = "auto, cpu, cuda, cuda:N, mps"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise MachineError("device=mps is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise MachineError(f"device={name} but CUDA is not available on this machine "
                               "(no silent fallback); use device=cpu or device=auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise MachineError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    raise UserError(f"device={name!r} is not allowed; choose one of: {allowed}")


def loss_params(cfg) -> dict:
    """The keyword arguments of the loss function: the node less its name (a user's loss: loss.params)."""
    node = OmegaConf.to_container(cfg.loss)
    if "fn" in node:
        return dict(node.get("params") or {})
    return {k: v for k, v in node.items() if k != "name"}


def metric_direction(metric) -> bool:
    from bench.metric_facts import HIGHER_IS_BETTER

    check_choice("dataset.metric", metric, HIGHER_IS_BETTER)
    return HIGHER_IS_BETTER[metric]


# ---------------------------------------------------------------------------------------------
# every value on its own, before any pairing: a single run checks them first (the torch-free ones
# before torch is imported, so that a mistyped command is refused in well under a second), and a
# sweep checks every job's config with them before any job starts (bench.sweep): a value no run can
# take is a user error (exit 2), while a pairing that makes no sense is recorded `invalid`

DEVICE = Rule(lambda v: str(v) in ("auto", "cpu", "mps", "cuda") or (str(v).startswith("cuda:") and str(v)[5:].isdigit()),
              "one of: auto, cpu, cuda, cuda:N, mps")


def check_values(cfg: DictConfig) -> DictConfig:
    """Every key's value on its own (no pairing): first the checks that need no torch, then the
    records' (datasets, models, losses, optimizers import torch). Returns the config with loss=auto
    resolved."""
    check_keys(cfg)
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else cfg.seeds
    check_value("seeds", seeds, SEEDS)
    for key, allowed in TRAINER.items():
        check_value(f"trainer.{key}", cfg.trainer[key], allowed)
    for key in ("force", "progress"):
        check_value(key, cfg[key], RUN[key])
    for key, allowed in PACK.items():
        if "pack" in cfg and key in cfg.pack:
            check_value(f"pack.{key}", cfg.pack[key], allowed)
    check_value("device", cfg.device, DEVICE)
    check_metric(cfg.dataset)
    check_value("group", cfg.group, GROUP)
    check_value("results_dir", cfg.results_dir, RESULTS_DIR)
    check_writable("results_dir", cfg.results_dir, cfg.group)
    # the records (torch from here on)
    from bench.losses import check_loss_params

    cfg = resolve_auto(cfg)
    check_dataset(cfg.dataset)
    check_model(cfg.model)
    check_optimizer(cfg.optimizer)
    if "fn" in cfg.loss:  # a user's own loss: it imports (a sweep stops here); validate's probe checks its params
        from bench.custom_loss import register

        register(cfg.loss)
    elif cfg.loss.name != "auto":
        check_loss_params(cfg.loss.name, loss_params(cfg))
    return cfg


def check_metric(node) -> None:
    """dataset.task, dataset.metric and dataset.target agree: a metric the task has (a curve with a
    better direction), a target that is a value that metric can take. A task the dataset fixes is
    read from its YAML (conf/dataset/<name>.yaml), so this needs no torch; unset (???) keys are
    left to check_dataset, which says they are required."""
    from bench.metric_facts import BOUNDS, TASKS, curve_metrics

    if any(OmegaConf.is_missing(node, key) for key in ("task", "metric", "target")) or "name" not in node:
        return
    option = Path(CONF_DIR) / "dataset" / f"{node.name}.yaml"
    fixed = OmegaConf.load(option).get("task") if option.is_file() else None
    task = node.task
    check_choice("dataset.task", task, [fixed] if fixed and fixed != "???" else TASKS)
    metric, allowed = node.metric, curve_metrics(task)
    if metric not in allowed:
        raise UserError(f"dataset.metric={metric!r} is not a metric of dataset={node.name} (task {task}); "
                        f"choose one of: {', '.join(allowed)}")
    low, high = BOUNDS[metric]
    check_value("dataset.target", node.target, Interval(float, low, high, what=(
        f"a value of {metric} on the validation curve: a number "
        + (f"in [{low:g}, {high:g}]" if low is not None and high is not None
           else f">= {low:g}" if low is not None else f"<= {high:g}"))))
