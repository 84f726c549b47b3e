"""Dataset registry: one `Dataset` record per name (loader, task, parameter rules, caching) and
`load_dataset`, which returns a run's `Data`: the rows of its sample(s) and every replicate's own split.

A replicate is (split, initialisation, batch order): the member trained with seed s draws its
train / val / test split from (split_seed, s) (stratified for classification), a generated dataset
(moons, circles, friedman1, outliers, demand) draws its own sample from (its generator seed, s), its
features are standardised on its own training rows and its regression targets scaled by its own
training rows, so two configurations trained with the same seed saw the same data, and another seed
is another sample of the data. `dataset.resample=false` gives every seed the one split of
`split_seed` (and the one sample of the generator's seed). Each loader (bench.loaders) declares its
own parameters as keyword arguments (the keys of `conf/dataset/<name>.yaml` beyond the common ones)
and its record what they accept; `bench.config.check_dataset` checks a config against them before
anything loads. Samples are cached (in memory for the process; on disk where a generator is slow).
Label noise (`label_noise`, `label_noise_kind`: classification only) replaces training labels of each
replicate's own training rows (`add_label_noise`): validation and test labels stay clean.

    from bench.datasets import load_dataset
    data = load_dataset({"name": "moons", "task": "binary", "split_seed": 0, "val_fraction": 0.2,
                         "test_fraction": 0.2, "n_samples": 1000, "noise": 0.2, "seed": 0}, seeds=[0, 1])
    data.replicate(0).x_train.shape  # torch.Size([600, 2])
"""
import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench import loaders
from bench.errors import Interval
from bench.loaders import (Replicate, Sample, SplitRule, breast_cancer, cifar10, circles, csv, demand,  # noqa: F401
                           diabetes, digits, fashion_mnist, friedman1, mnist, mnist1d, moons, outliers, wine)

# keys every dataset config has; the rest are the loader's own parameters
COMMON_KEYS = ("name", "task", "metric", "target", "split_seed", "val_fraction", "test_fraction",
               "resample", "cache_dir", "label_noise", "label_noise_kind")
# keys that do not change a sample (left out of its cache key): the split's and the run's
NOT_SAMPLE_KEYS = ("metric", "target", "cache_dir", "split_seed", "val_fraction", "test_fraction", "resample",
                   "label_noise", "label_noise_kind")
DEFAULT_CACHE = Path("~/.cache/lossbench/datasets")


# ----------------------------------------------------------------------------------------------
# registry, validation, caching

@dataclass(frozen=True)
class Dataset:
    """One dataset: its loader and what a config may say about it (checked by bench.config before
    anything loads). `DATASETS[name](split, **params)` calls the loader."""

    name: str
    loader: Callable  # (split, **params) -> Data; params: the keys of conf/dataset/<name>.yaml beyond COMMON_KEYS
    task: str | None  # fixed by the data; None: the user's choice (csv)
    params: dict = field(default_factory=dict)  # loader parameter -> what it accepts (an Interval or choices)
    disk_cached: bool = False  # slow to generate: worth a disk cache (files on disk are read again instead)
    generated: bool = False  # drawn from a known population (a `seed` parameter): each replicate draws its own sample
    images: bool = False  # inputs are [C, H, W] images (what model=cnn needs)
    rules: tuple = ()  # rules across keys: (test(cfg) -> bool, the key it names, what is allowed: {key} from cfg)
    flips: dict | None = None  # label_noise_kind=asymmetric: class -> the class it is mislabelled as
    # (classes not listed keep their label); None: every class c -> c + 1 (mod C), the next class

    def __call__(self, **params) -> Sample:
        return self.loader(**params)


SAMPLES, NOISE = Interval(int, 0, None, closed="neither"), Interval(float, 0, None)
POSITIVE, SHARE = Interval(float, 0, None, closed="neither"), Interval(float, 0, 1, closed="left")
# asymmetric noise, the confusable classes (Patrini et al., CVPR 2017, for the digits and CIFAR-10):
DIGIT_FLIPS = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}  # 7 -> 1, 2 -> 7, 5 <-> 6, 3 -> 8
FASHION_FLIPS = {0: 6, 2: 4, 5: 7}  # T-shirt -> shirt, pullover -> coat, sandal -> sneaker
CIFAR_FLIPS = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}  # truck -> automobile, bird -> airplane, cat <-> dog, deer -> horse
BINARY_FLIPS = {1: 0}  # one direction only: the positive class read as negative (a missed case)
IMAGES = {"download": [True, False],
          "n_samples": Interval(int, 30, None, or_none=True,
                                what="null (all) or at least 30 (3 per class, so every split holds every class)")}
DATASETS = {d.name: d for d in [
    Dataset("breast_cancer", breast_cancer, "binary", flips={0: 1}),  # malignant -> benign
    Dataset("moons", moons, "binary", {"n_samples": SAMPLES, "noise": NOISE}, generated=True, flips=BINARY_FLIPS),
    Dataset("circles", circles, "binary", {"n_samples": SAMPLES, "noise": NOISE,
                                            "factor": Interval(float, 0, 1, closed="neither")}, generated=True,
            flips=BINARY_FLIPS),
    Dataset("digits", digits, "multiclass", flips=DIGIT_FLIPS),
    Dataset("wine", wine, "multiclass"),  # cultivar c -> c + 1
    # generated, but a published dataset (the package's seed 42): resampled by its split, like real data
    Dataset("mnist1d", mnist1d, "multiclass",
            {"n_samples": Interval(int, 10, None, what="an integer >= 10 (one per class)")}, disk_cached=True,
            flips=DIGIT_FLIPS),
    Dataset("mnist", mnist, "multiclass", IMAGES, images=True, flips=DIGIT_FLIPS),
    Dataset("fashion_mnist", fashion_mnist, "multiclass", IMAGES, images=True, flips=FASHION_FLIPS),
    Dataset("cifar10", cifar10, "multiclass", IMAGES, images=True, flips=CIFAR_FLIPS),
    Dataset("diabetes", diabetes, "regression"),
    Dataset("friedman1", friedman1, "regression",
            {"n_samples": SAMPLES, "n_features": Interval(int, 5, None), "noise": NOISE}, generated=True),
    Dataset("outliers", outliers, "regression",
            {"n_samples": SAMPLES, "n_features": SAMPLES, "noise": NOISE, "contamination": SHARE,
             "outlier_scale": POSITIVE, "outlier_df": POSITIVE}, generated=True),
    Dataset("demand", demand, "regression",
            {"n_samples": SAMPLES, "n_items": SAMPLES, "min_level": POSITIVE, "max_level": POSITIVE,
             "seasonality": SHARE, "noise": NOISE, "distribution": ["poisson", "lognormal"]}, generated=True,
            rules=((lambda c: c["max_level"] >= c["min_level"], "max_level", ">= min_level={min_level}"),)),
    Dataset("csv", csv, None),
]}
_MEMORY: dict[str, Sample] = {}  # cache key -> Sample, for this process, oldest first
MEMORY_ENTRIES = 16  # a long sweep in one process keeps only the most recent samples (a replicate's each)


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def derived_seed(*parts: int) -> int:
    """A seed for scikit-learn / numpy drawn from several integers (a base seed, a replicate's seed, a
    purpose): distinct parts give unrelated streams (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


SPLIT_STREAM, SAMPLE_STREAM, NOISE_STREAM = 0x5EED, 0x5A3E, 0x1ABE1  # one per purpose


# ----------------------------------------------------------------------------------------------
# a run's data: every replicate's rows and split


@dataclass(repr=False)
class Data:
    """A run's data, on one device: each replicate's rows, split and scales, for a batched ensemble.

    Replicate r is the one of seed `seeds[r]` (a fixed split, `resample=false`: one replicate that every
    seed shares, `seeds == (None,)`). Its rows are x[r] (its sample, standardised on its own training
    rows) for tabular data; images keep one raw copy x[0] that every replicate shares, standardised
    per channel with the replicate's own mean[r] / std[r] as rows are gathered (`gather`). train / val /
    test index the replicate's rows; the sizes are the same for every replicate.
    """

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    n_classes: int  # 2 for binary, C for multiclass, 0 for regression
    feature_names: list  # tabular: one per column; images: one per channel
    seeds: tuple  # [R] the replicates' seeds
    x: Tensor  # float32 [R, B, F] standardised per replicate, or images [1, B, C, H, W] raw in [0, 1]
    mean: Tensor | None  # images: [R, 1, C, 1, 1] each replicate's channel means; None for tabular
    std: Tensor | None
    y: Tensor  # [R, B] int64 class indices, or float32 [R, B, T] regression targets / target_scale[r]
    y_train: Tensor  # [R, n_train] / [R, n_train, T]: the training targets (label noise, contamination)
    train: Tensor  # [R, n_train] int64: the replicate's training rows
    val: Tensor  # [R, n_val]
    test: Tensor  # [R, n_test]
    target_scale: Tensor  # float64 [R]: original regression target = stored target x target_scale[r]; 1 else
    resample: bool
    label_noise: list = field(default_factory=list)  # per replicate: {share, kind, flipped, applied}
    # generated regression data: the law of every row's target, {"family": its name in bench.optimum,
    # parameter: float64 [R, B] per replicate and row, on the CPU, in the target's own units}; else None
    conditional: dict | None = None

    @property
    def images(self) -> bool:
        return self.mean is not None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x.shape[2:])

    @property
    def sizes(self) -> dict:
        """Rows per replicate in each split: the summary's `split_sizes`."""
        return {"train": self.train.shape[1], "val": self.val.shape[1], "test": self.test.shape[1]}

    def replicate_of(self, seeds) -> Tensor:
        """[K] each member's replicate index from its seed (every member 0 for a fixed split)."""
        if not self.resample:
            return torch.zeros(len(seeds), dtype=torch.long, device=self.train.device)
        index = {s: r for r, s in enumerate(self.seeds)}
        return torch.tensor([index[int(s)] for s in seeds], dtype=torch.long, device=self.train.device)

    def gather(self, rep: Tensor, rows: Tensor, out: Tensor | None = None) -> Tensor:
        """Standardised features of each member's rows: rep [K] replicates, rows [K, n] -> [K, n, ...]
        (into `out`, a [K * n, ...] buffer, when given)."""
        k, n = rows.shape
        if self.mean is None:  # tabular: each replicate's rows were standardised once
            flat = self.x.view(-1, *self.x.shape[2:])  # [R * B, F]
            index = (rep[:, None] * self.x.shape[1] + rows).reshape(-1)
            return torch.index_select(flat, 0, index, out=out).view(k, n, *flat.shape[1:])
        raw = torch.index_select(self.x[0], 0, rows.reshape(-1), out=out).view(k, n, *self.x.shape[2:])
        return raw.sub_(self.mean[rep]).div_(self.std[rep])  # in place: the gathered rows are a fresh copy

    def targets(self, rep: Tensor, rows: Tensor) -> Tensor:
        """Each member's stored targets of its rows (clean: val or test): rep [K], rows [K, n] ->
        [K, n] / [K, n, T]."""
        return self.y[rep[:, None], rows]

    def replicate(self, r: int = 0) -> Replicate:
        """Replicate r's split as CPU tensors (what one member with its seed trains and is tested on)."""
        rep = torch.tensor([r], device=self.train.device)
        parts = {}
        for split in ("train", "val", "test"):
            rows = getattr(self, split)[r:r + 1]
            parts[f"x_{split}"] = self.gather(rep, rows)[0].cpu()
            parts[f"y_{split}"] = (self.y_train[r] if split == "train" else self.targets(rep, rows)[0]).cpu()
        return Replicate(self.name, self.task, self.n_classes, target_scale=float(self.target_scale[r]),
                         feature_names=self.feature_names, **parts)

    def to(self, device, dtype) -> "Data":
        """Every tensor on `device`; features, scales and regression targets in `dtype`."""
        moved = {}
        for name in ("x", "mean", "std", "y", "y_train", "train", "val", "test"):
            t = getattr(self, name)
            if t is not None:
                moved[name] = t.to(device, dtype if t.is_floating_point() else t.dtype)
        return dataclasses.replace(self, **moved)

    def __repr__(self) -> str:
        sizes = "/".join(str(v) for v in self.sizes.values())
        return (f"Data({self.name!r}, {self.task}, n_classes={self.n_classes}, input_shape={self.input_shape}, "
                f"replicates={len(self.seeds)}, train/val/test={sizes} each)")


def load_dataset(cfg, seeds=(0,)) -> Data:
    """The `dataset` config node (DictConfig or dict) -> the Data of members trained with `seeds`, on CPU.

    The config is trusted: bench.config.check_dataset has checked every key (a run's plan does it before
    anything loads). Each replicate (distinct seed) gets its own split from (split_seed, seed) and, for a
    generated dataset, its own sample from (the generator's seed, seed); with `resample=false` every seed
    shares the split of split_seed and the one sample. Samples come from the process's cache, the disk
    cache (slow generators, under `cache_dir` or ~/.cache/lossbench/datasets), or the loader.
    """
    cfg = _plain(cfg)
    record = DATASETS[cfg["name"]]
    resample = bool(cfg.get("resample", True))
    replicates = tuple(dict.fromkeys(int(s) for s in seeds)) if resample else (None,)
    share, kind = cfg.get("label_noise") or 0.0, cfg.get("label_noise_kind") or "symmetric"
    parts, shared = [], None
    for seed in replicates:
        if record.generated and resample:
            sample = _sample(cfg, derived_seed(cfg["seed"], seed, SAMPLE_STREAM))
        else:
            shared = shared or _sample(cfg, cfg.get("seed"))
            sample = shared
        rule_seed = cfg["split_seed"] if seed is None else derived_seed(cfg["split_seed"], seed, SPLIT_STREAM)
        rule = SplitRule(cfg["task"], rule_seed, cfg["val_fraction"], cfg["test_fraction"])
        noise_seed = [cfg["split_seed"]] if seed is None else [cfg["split_seed"], seed]
        parts.append(_replicate_part(sample, rule, share, kind, noise_seed, record.flips))
    return _stack(cfg["name"], parts, replicates, resample, images=parts[0]["mean"] is not None)


def _replicate_part(sample: Sample, rule: SplitRule, share, kind, noise_seed, flips) -> dict:
    """One replicate's split, standardiser, target scale and training targets, as numpy arrays."""
    train, val, test = loaders.sample_rows(sample, rule)
    mean, std = loaders.standardiser(sample.x[train], sample.images, sample.feature_names)
    y_train = sample.y[train] if sample.train_targets is None else sample.train_targets(train)
    noise = {}
    if share:
        y_train, noise = add_label_noise(y_train, share, kind, noise_seed, sample.n_classes, flips)
    scale = loaders.target_scale(y_train) if sample.task == "regression" else 1.0
    return {"sample": sample, "train": train, "val": val, "test": test, "mean": mean if sample.images else None,
            "std": std, "y_train": y_train, "scale": scale, "noise": noise,
            "x": None if sample.images else loaders.standardise(sample.x, mean, std, False)}


def _stack(name, parts, replicates, resample, images) -> Data:
    """Every replicate's arrays stacked on a leading replicate axis (images share one raw copy)."""
    first = parts[0]["sample"]
    regression = first.task == "regression"

    def targets(y, scale):
        return torch.from_numpy((y / scale).astype(np.float32)) if regression else torch.from_numpy(y.astype(np.int64))

    def stack(key):
        return torch.stack([torch.from_numpy(np.asarray(p[key], dtype=np.int64)) for p in parts])

    if images:
        x = torch.from_numpy(np.ascontiguousarray(first.x, dtype=np.float32))[None]  # [1, B, C, H, W]
        mean = torch.stack([torch.from_numpy(p["mean"].astype(np.float32)) for p in parts])  # [R, 1, C, 1, 1]
        std = torch.stack([torch.from_numpy(p["std"].astype(np.float32)) for p in parts])
    else:
        x, mean, std = torch.stack([torch.from_numpy(p["x"]) for p in parts]), None, None  # [R, B, F]
    return Data(name=name, task=first.task, n_classes=first.n_classes, feature_names=[str(f) for f in first.feature_names],
                seeds=replicates, x=x, mean=mean, std=std,
                y=torch.stack([targets(p["sample"].y, p["scale"]) for p in parts]),
                y_train=torch.stack([targets(p["y_train"], p["scale"]) for p in parts]),
                train=stack("train"), val=stack("val"), test=stack("test"),
                target_scale=torch.tensor([p["scale"] for p in parts], dtype=torch.float64),
                resample=resample, label_noise=[p["noise"] for p in parts], conditional=_laws(parts))


def _laws(parts) -> dict | None:
    """Every replicate's per-row laws stacked on a leading replicate axis (Data.conditional), or None."""
    laws = [p["sample"].conditional for p in parts]
    if laws[0] is None:
        return None
    return {"family": laws[0]["family"], **{k: torch.stack([torch.from_numpy(np.asarray(law[k], dtype=np.float64))
                                                            for law in laws]) for k in laws[0] if k != "family"}}


# ----------------------------------------------------------------------------------------------
# samples and their caches


def _cache_key(cfg: dict, seed) -> str:
    """Hash of what determines a sample: the config (less the split's and the run's keys), the generator
    seed it is drawn with, this code, library versions."""
    from importlib.metadata import version

    facts = {k: v for k, v in cfg.items() if k not in NOT_SAMPLE_KEYS}
    if "seed" in facts:
        facts["seed"] = seed
    if cfg.get("name") == "csv" and cfg.get("path"):  # the file's identity, so an edited file is reread
        file = Path(os.path.expanduser(str(cfg["path"])))
        if file.is_file():
            stat = file.stat()
            facts["_file"] = [str(file.resolve()), stat.st_size, stat.st_mtime_ns]
    facts["_code"] = hashlib.sha256(Path(__file__).read_bytes() + Path(loaders.__file__).read_bytes()).hexdigest()
    facts["_versions"] = [np.__version__, torch.__version__, version("scikit-learn"), version("mnist1d")]
    text = json.dumps(facts, sort_keys=True, default=str)
    return f"{cfg.get('name')}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


SAMPLE_ARRAYS = ("x", "y")  # a disk-cached sample's arrays (its other fields are plain values)


def _read_disk(path: Path):
    try:
        stored = torch.load(path, weights_only=True)
        arrays = {k: stored.pop(k).numpy() for k in SAMPLE_ARRAYS}
        return Sample(**stored, **arrays)
    except Exception:  # unreadable or from another layout: rebuild (and overwrite)
        return None


def _write_disk(path: Path, sample: Sample) -> None:
    """Write atomically: a reader sees the old file, the new one, or none."""
    from bench import store

    fields = {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    fields.update({k: torch.from_numpy(np.ascontiguousarray(fields[k])) for k in SAMPLE_ARRAYS})
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_atomic(path, lambda tmp: torch.save(fields, tmp))


def _sample(cfg: dict, seed) -> Sample:
    """The dataset's sample drawn with generator seed `seed` (None: a dataset without one): from the
    process's cache, the disk cache (slow generators), or its loader."""
    record = DATASETS[cfg["name"]]
    key = _cache_key(cfg, seed)
    if key in _MEMORY:
        return _MEMORY[key]
    params = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    if "seed" in params:
        params["seed"] = seed
    if "task" in inspect.signature(record.loader).parameters:  # a dataset whose task is the user's (csv)
        params["task"] = cfg["task"]
    path = Path(os.path.expanduser(str(cfg.get("cache_dir") or DEFAULT_CACHE))) / f"{key}.pt"
    sample = _read_disk(path) if record.disk_cached and path.is_file() else None
    if sample is None:
        sample = record(**params)
        if record.disk_cached:
            try:
                _write_disk(path, sample)
            except OSError:  # a read-only home must not stop a run; the memory cache still works
                pass
    while len(_MEMORY) >= MEMORY_ENTRIES:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = sample
    return sample


# ----------------------------------------------------------------------------------------------
# label noise


def add_label_noise(y: np.ndarray, share: float, kind: str, seed: list, n_classes: int, flips: dict | None = None):
    """(a copy of the training labels y [N] with round(share x N) of them replaced, what was done).

    symmetric: the rows are drawn uniformly, each gets a uniformly random *other* class. asymmetric:
    the rows are drawn among the rows whose class has a partner in `flips` (None: every class
    c -> c + 1 mod C), round(share x that many), and each gets its partner, so the applied share of the
    whole split is lower where some classes have none. Deterministic from `seed` (the split seed, and the
    replicate's seed where each replicate has its own split).
    """
    y = np.array(y, dtype=np.int64)  # [N]
    clean = y.copy()
    rng = np.random.default_rng([*seed, NOISE_STREAM])  # its own stream: the split's draws stay as they were
    c = n_classes
    if kind == "symmetric":
        rows = rng.choice(len(y), size=round(share * len(y)), replace=False)
        y[rows] = (y[rows] + rng.integers(1, c, size=len(rows))) % c
    else:
        partner = np.array([(flips or {k: (k + 1) % c for k in range(c)}).get(k, k) for k in range(c)])
        eligible = np.flatnonzero(partner[y] != y)
        rows = rng.choice(eligible, size=round(share * len(eligible)), replace=False)
        y[rows] = partner[y[rows]]
    flipped = int((y != clean).sum())
    return y, {"share": share, "kind": kind, "flipped": flipped, "applied": flipped / len(y)}


def clear_cache() -> None:
    """Forget the in-process cache (the disk cache stays)."""
    _MEMORY.clear()
