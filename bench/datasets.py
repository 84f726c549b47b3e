"""Dataset registry: one `Dataset` record per name (loader, task, parameter rules, caching) and
`load_dataset`, which returns a `Data` (CPU tensors split three ways + task facts) from a config node.

Each loader (bench.loaders) declares its own parameters as keyword arguments (the keys of
`conf/dataset/<name>.yaml` beyond the common ones) and its record what they accept;
`bench.config.check_dataset` checks a config against them before anything loads. `load_dataset`
splits the raw arrays train / val / test from `split_seed` (stratified for classification),
standardises features on the training split only, and caches the result (in memory for the
process, on disk for generated data). Label noise (`label_noise`, `label_noise_kind`: classification
only) is applied after the cache, to the training labels only (`add_label_noise`): validation and test
labels stay clean, so the curves and the test metric measure how well the clean labelling is learnt.

    from bench.datasets import load_dataset
    data = load_dataset({"name": "moons", "task": "binary", "split_seed": 0, "val_fraction": 0.2,
                         "test_fraction": 0.2, "n_samples": 1000, "noise": 0.2, "seed": 0})
    data.x_train.shape  # torch.Size([600, 2])
"""
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from bench import loaders
from bench.errors import Interval
from bench.loaders import (Data, Split, breast_cancer, cifar10, circles, csv, demand, diabetes, digits,  # noqa: F401
                           fashion_mnist, friedman1, mnist, mnist1d, moons, outliers, wine)

# keys every dataset config has; the rest are the loader's own parameters
COMMON_KEYS = ("name", "task", "metric", "target", "split_seed", "val_fraction", "test_fraction",
               "cache_dir", "label_noise", "label_noise_kind")
NOISE_KEYS = ("label_noise", "label_noise_kind")  # applied after the cache: not part of its key
# keys that do not change the data (left out of the cache key)
NOT_DATA_KEYS = ("metric", "target", "cache_dir")
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
    disk_cached: bool = False  # generated: worth a disk cache (files on disk are read again instead)
    images: bool = False  # inputs are [C, H, W] images (what model=cnn needs)
    rules: tuple = ()  # rules across keys: (test(cfg) -> bool, the key it names, what is allowed: {key} from cfg)
    flips: dict | None = None  # label_noise_kind=asymmetric: class -> the class it is mislabelled as
    # (classes not listed keep their label); None: every class c -> c + 1 (mod C), the next class

    def __call__(self, split: Split, *args, **params) -> Data:
        return self.loader(split, *args, **params)


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
    Dataset("breast_cancer", breast_cancer, "binary", disk_cached=True, flips={0: 1}),  # malignant -> benign
    Dataset("moons", moons, "binary", {"n_samples": SAMPLES, "noise": NOISE}, disk_cached=True, flips=BINARY_FLIPS),
    Dataset("circles", circles, "binary", {"n_samples": SAMPLES, "noise": NOISE,
                                            "factor": Interval(float, 0, 1, closed="neither")}, disk_cached=True,
            flips=BINARY_FLIPS),
    Dataset("digits", digits, "multiclass", disk_cached=True, flips=DIGIT_FLIPS),
    Dataset("wine", wine, "multiclass", disk_cached=True),  # cultivar c -> c + 1
    Dataset("mnist1d", mnist1d, "multiclass",
            {"n_samples": Interval(int, 10, None, what="an integer >= 10 (one per class)")}, disk_cached=True,
            flips=DIGIT_FLIPS),
    Dataset("mnist", mnist, "multiclass", IMAGES, images=True, flips=DIGIT_FLIPS),
    Dataset("fashion_mnist", fashion_mnist, "multiclass", IMAGES, images=True, flips=FASHION_FLIPS),
    Dataset("cifar10", cifar10, "multiclass", IMAGES, images=True, flips=CIFAR_FLIPS),
    Dataset("diabetes", diabetes, "regression", disk_cached=True),
    Dataset("friedman1", friedman1, "regression",
            {"n_samples": SAMPLES, "n_features": Interval(int, 5, None), "noise": NOISE}, disk_cached=True),
    Dataset("outliers", outliers, "regression",
            {"n_samples": SAMPLES, "n_features": SAMPLES, "noise": NOISE, "contamination": SHARE,
             "outlier_scale": POSITIVE, "outlier_df": POSITIVE}, disk_cached=True),
    Dataset("demand", demand, "regression",
            {"n_samples": SAMPLES, "n_items": SAMPLES, "min_level": POSITIVE, "max_level": POSITIVE,
             "seasonality": SHARE, "noise": NOISE, "distribution": ["poisson", "lognormal"]}, disk_cached=True,
            rules=((lambda c: c["max_level"] >= c["min_level"], "max_level", ">= min_level={min_level}"),)),
    Dataset("csv", csv, None),
]}
_MEMORY: dict[str, Data] = {}  # cache key -> Data, for this process, oldest first
MEMORY_ENTRIES = 8  # a long sweep in one process keeps only the most recent datasets


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _cache_key(cfg: dict) -> str:
    """Hash of what determines the data: the config (less NOT_DATA_KEYS), this code, library versions."""
    from importlib.metadata import version

    facts = {k: v for k, v in cfg.items() if k not in NOT_DATA_KEYS + NOISE_KEYS}
    if cfg.get("name") == "csv" and cfg.get("path"):  # the file's identity, so an edited file is reread
        file = Path(os.path.expanduser(str(cfg["path"])))
        if file.is_file():
            stat = file.stat()
            facts["_file"] = [str(file.resolve()), stat.st_size, stat.st_mtime_ns]
    facts["_code"] = hashlib.sha256(Path(__file__).read_bytes() + Path(loaders.__file__).read_bytes()).hexdigest()
    facts["_versions"] = [np.__version__, torch.__version__, version("scikit-learn"), version("mnist1d")]
    text = json.dumps(facts, sort_keys=True, default=str)
    return f"{cfg.get('name')}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _read_disk(path: Path):
    try:
        stored = torch.load(path, weights_only=True)
        return Data(**stored)
    except Exception:  # unreadable or from another layout: rebuild (and overwrite)
        return None


def _write_disk(path: Path, data: Data) -> None:
    """Write atomically: a reader sees the old file, the new one, or none."""
    from bench import store

    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_atomic(path, lambda tmp: torch.save({f.name: getattr(data, f.name) for f in fields(data)}, tmp))


def load_dataset(cfg) -> Data:
    """The `dataset` config node (DictConfig or dict) -> Data on CPU; cached by config.

    The config is trusted: bench.config.check_dataset has checked every key (a run's plan does it
    before anything loads). Returns the process's cached copy, else the disk cache (generated datasets, under
    `cache_dir` or ~/.cache/lossbench/datasets), else builds it and fills the caches.
    """
    cfg = _plain(cfg)
    share, kind = cfg.get("label_noise") or 0.0, cfg.get("label_noise_kind") or "symmetric"
    data = _load_clean(cfg)
    if share == 0:
        return data
    return add_label_noise(data, share, kind, cfg["split_seed"], DATASETS[cfg["name"]].flips)


def _load_clean(cfg: dict) -> Data:
    split = Split(cfg["task"], cfg["split_seed"], cfg["val_fraction"], cfg["test_fraction"])
    params = {k: v for k, v in cfg.items() if k not in COMMON_KEYS}
    key = _cache_key(cfg)
    if key in _MEMORY:
        return _MEMORY[key]
    disk = DATASETS[cfg["name"]].disk_cached
    path = Path(os.path.expanduser(str(cfg.get("cache_dir") or DEFAULT_CACHE))) / f"{key}.pt"
    data = _read_disk(path) if disk and path.is_file() else None
    if data is None:
        data = DATASETS[cfg["name"]](split, **params)
        if disk:
            try:
                _write_disk(path, data)
            except OSError:  # a read-only home must not stop a run; the memory cache still works
                pass
    while len(_MEMORY) >= MEMORY_ENTRIES:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = data
    return data


# ----------------------------------------------------------------------------------------------
# label noise

@dataclass(repr=False)
class NoisyData(Data):
    """Data whose training labels were partly replaced; `label_noise` says how (for the summary)."""

    label_noise: dict = field(default_factory=dict)  # share (asked), kind, flipped (rows), applied (share)


def add_label_noise(data: Data, share: float, kind: str, seed: int, flips: dict | None = None) -> NoisyData:
    """A copy of `data` with round(share x N) training labels replaced (validation and test untouched).

    symmetric: the rows are drawn uniformly, each gets a uniformly random *other* class. asymmetric:
    the rows are drawn among the training rows whose class has a partner in `flips` (None: every class
    c -> c + 1 mod C), round(share x that many), and each gets its partner, so the applied share of the
    whole split is lower where some classes have none. Deterministic from `seed` (the split seed).
    """
    y = data.y_train.clone()  # [N] int64
    rng = np.random.default_rng([seed, 0x1ABE1])  # its own stream: the split's draws stay as they were
    c = data.n_classes
    if kind == "symmetric":
        rows = rng.choice(len(y), size=round(share * len(y)), replace=False)
        y[rows] = (y[rows] + torch.as_tensor(rng.integers(1, c, size=len(rows)))) % c
    else:
        partner = torch.as_tensor([(flips or {k: (k + 1) % c for k in range(c)}).get(k, k) for k in range(c)])
        eligible = np.flatnonzero((partner[y] != y).numpy())
        rows = rng.choice(eligible, size=round(share * len(eligible)), replace=False)
        y[rows] = partner[y[rows]]
    flipped = int((y != data.y_train).sum())
    clean = {f.name: getattr(data, f.name) for f in fields(Data)}
    return NoisyData(**{**clean, "y_train": y}, label_noise={
        "share": share, "kind": kind, "flipped": flipped, "applied": flipped / len(y)})


def clear_cache() -> None:
    """Forget the in-process cache (the disk cache stays)."""
    _MEMORY.clear()
