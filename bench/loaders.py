"""How each dataset is built: one loader per dataset (raw arrays from scikit-learn, a generator, files
on disk, or the user's table), and the split and standardisation every replicate applies to them.

A loader is `loader(**params) -> Sample` (raw rows, no split): its keyword parameters are the keys of
`conf/dataset/<name>.yaml` beyond the common ones (bench.datasets holds the registry that names them,
what they accept, the caching, and builds each replicate's split). A replicate's features are
standardised on its own training rows; its regression targets are seen divided by its `target_scale`
(the median absolute training target), never shifted, so zeros and signs survive for MAPE / MSLE /
Poisson; metrics multiply back. Heavy imports (torchvision, mnist1d, pandas) happen inside the loaders
that need them.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bench.errors import UserError


@dataclass(repr=False)
class Sample:
    """What a loader returns: the raw rows of one sample of a dataset, before any split.

    x: [N, F] float64 features, or [N, C, H, W] float32 images scaled to [0, 1]; y: [N] int64 class
    indices or [N, T] float64 regression targets in their own units. The targets a split trains on may
    differ from the clean ones (`train_targets(train rows) -> targets`: the outliers generator
    contaminates the training rows once it knows them). Images may be subsampled per replicate
    (`subsample`: rows kept, stratified, before the split)."""

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    x: np.ndarray
    y: np.ndarray
    feature_names: list
    n_classes: int = 0  # 2 for binary, C for multiclass, 0 for regression
    class_names: object = None  # the original label of each class index (error messages), or None
    images: bool = False
    train_targets: object = None  # callable(train rows [n]) -> their training targets; None: y[train]
    subsample: int | None = None  # images: rows to keep (stratified) before splitting; None = all
    # generated regression data: the law each row's target was drawn from, {"family": its name in
    # bench.optimum, parameter: float64 [N] per row, in the target's own units}; None: not known
    conditional: dict | None = None

    def __repr__(self) -> str:
        return f"Sample({self.name!r}, {self.task}, rows={len(self.y)}, x={tuple(self.x.shape[1:])})"


@dataclass(repr=False)
class Replicate:
    """One replicate's split of a sample, standardised on its own training rows: the tensors a single
    member trains and is tested on (`bench.datasets.Data.replicate`), on CPU."""

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    n_classes: int  # 2 for binary, C for multiclass, 0 for regression
    x_train: Tensor  # float32 [N, F] (tabular) or [N, C, H, W] (images)
    y_train: Tensor  # int64 [N] class indices, or float32 [N, T] regression targets / target_scale
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    target_scale: float  # original regression target = stored target * target_scale; 1.0 otherwise
    feature_names: list  # tabular: one per column; images: one per channel

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        sizes = "/".join(str(len(t)) for t in (self.y_train, self.y_val, self.y_test))
        return (f"Replicate({self.name!r}, {self.task}, n_classes={self.n_classes}, input_shape={self.input_shape}, "
                f"train/val/test={sizes}, target_scale={self.target_scale:.4g})")


@dataclass
class SplitRule:
    """How to split: the common config keys, with the seed of this replicate's split."""

    task: str
    seed: int
    val_fraction: float
    test_fraction: float


# ----------------------------------------------------------------------------------------------
# split and standardise


def split_indices(rule: SplitRule, n: int, labels=None, class_names=None):
    """(train, val, test) index arrays; stratified on `labels` (int [n]) when given.

    Sizes follow scikit-learn's rounding: test = ceil(test_fraction * n), then val =
    ceil(val_fraction / (1 - test_fraction) * rest). Too few rows is a UserError.
    """
    from sklearn.model_selection import train_test_split

    n_test = math.ceil(rule.test_fraction * n)
    n_val = math.ceil(rule.val_fraction / (1 - rule.test_fraction) * (n - n_test))
    n_train = n - n_test - n_val
    # a training split of one row has no spread to standardise with; stratified splits need
    # every class in every split
    need = 2 if labels is None else max(2, len(np.unique(labels)))
    if min(n_train, n_val, n_test) < need:
        raise UserError(f"{n} rows are too few for val_fraction={rule.val_fraction} and "
                        f"test_fraction={rule.test_fraction}: train/val/test would get "
                        f"{n_train}/{n_val}/{n_test} rows, each needs at least {need}")
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        names = classes if class_names is None else np.asarray(class_names)[classes]
        rare = [f"{c!r} ({k} rows)" for c, k in zip(names.tolist(), counts) if k < 3]
        if rare:
            raise UserError(f"too few rows to stratify train/val/test for class {', '.join(rare)}; "
                            "every class needs at least 3 rows")
    index = np.arange(n)
    rest, test = train_test_split(index, test_size=n_test, random_state=rule.seed, stratify=labels)
    train, val = train_test_split(rest, test_size=n_val, random_state=rule.seed,
                                  stratify=None if labels is None else labels[rest])
    return train, val, test


def sample_rows(sample: Sample, rule: SplitRule):
    """(train, val, test) row indices of `sample` for one replicate: the image subsample first (drawn
    from the rule's seed, stratified), then `split_indices` of the rows kept."""
    labels = sample.y if sample.task != "regression" else None
    keep = np.arange(len(sample.y))
    if sample.subsample is not None and sample.subsample < len(keep):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(keep, train_size=sample.subsample, random_state=rule.seed, stratify=labels)
        keep = np.sort(keep)
    parts = split_indices(rule, len(keep), None if labels is None else labels[keep], sample.class_names)
    return tuple(keep[p] for p in parts)


def standardiser(x_train: np.ndarray, images: bool, names=None):
    """(mean, std) of the training rows, per feature (tabular) or per channel (images), in float64,
    shaped to broadcast against the rows; a constant feature gets std 1 (population std, as
    scikit-learn's StandardScaler). A feature whose mean or std overflows is refused, by its name
    (`names`, one per feature or channel: check_standardisable)."""
    axes = (0, 2, 3) if images else (0,)
    with np.errstate(over="ignore"):  # an overflow is reported by check_standardisable, by name
        mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
        std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    check_standardisable(x_train, mean, std, names, axes)
    return mean, np.where(std > 0, std, 1.0)


def standardise(x: np.ndarray, mean, std, images: bool) -> np.ndarray:
    """Rows standardised as float32: tabular in float64 then rounded; images (large) in float32."""
    if images:
        return ((x - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def check_standardisable(x_train: np.ndarray, mean: np.ndarray, std: np.ndarray, names, axes: tuple) -> None:
    """Refuse the features whose mean or standard deviation is not finite in float64 (values of ~1e300:
    their squares overflow, the std is inf, and every value would be standardised to 0, silently)."""
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)).ravel())
    if not len(bad):
        return
    names = list(names) if names is not None else [f"#{i}" for i in range(mean.size)]
    largest = np.abs(x_train).max(axis=axes).ravel()
    columns = ", ".join(f"{names[i]!r} (values up to {largest[i]:.3g})" for i in bad[:5])
    raise UserError(f"feature {columns} cannot be standardised: its standard deviation overflows float64; "
                    "rescale the column (divide it by a power of ten) first")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_target_units(y: np.ndarray, names) -> None:
    """Refuse regression targets whose metrics overflow: the curves compute them in original units in
    float32 (the data's dtype), and rmse sums N squared errors, so |y| must stay below
    sqrt(float32 max / N) (about 6e17 for 1,000 rows). y: [N, T] float64."""
    limit = np.sqrt(FLOAT32_MAX / len(y))
    largest = np.abs(y).max(axis=0)  # [T]
    bad = np.flatnonzero(~(largest < limit))
    if len(bad):
        names = list(names) if names is not None else [f"#{i}" for i in range(y.shape[1])]
        shift = 10.0 ** np.ceil(np.log10(largest[bad].max() / 1e3)) if np.isfinite(largest[bad]).all() else None
        columns = ", ".join(f"{names[i]!r} (values up to {largest[i]:.3g})" for i in bad[:5])
        raise UserError(f"target {columns} is too large for the metrics: over {len(y)} rows their squared "
                        f"errors overflow float32 above |y| = {limit:.2g}; rescale the column"
                        + (f" (e.g. divide it by {shift:.0e})" if shift else "") + " first")


def target_scale(y_train: np.ndarray) -> float:
    """Median absolute training target (robust to contaminated targets); 1.0 when it is 0."""
    for scale in (np.median(np.abs(y_train)), np.mean(np.abs(y_train))):
        if scale > 0:
            return float(scale)
    return 1.0


def _column(y) -> np.ndarray:
    """Regression targets as float64 [N, T] (one column for a single target)."""
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(len(y), -1)


def _labels(y) -> tuple:
    """Class labels of any kind -> (int indices [N], the sorted labels: index -> label)."""
    classes, index = np.unique(np.asarray(y), return_inverse=True)
    return index.astype(np.int64), classes


# ----------------------------------------------------------------------------------------------
# scikit-learn datasets (bundled or generated: no download)


def breast_cancer() -> Sample:
    """Wisconsin diagnostic breast cancer: 569 x 30, binary (malignant 0 / benign 1)."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return Sample("breast_cancer", "binary", d.data, d.target, list(d.feature_names), 2)


def digits() -> Sample:
    """8x8 handwritten digits: 1797 x 64 pixel intensities (0-16), 10 classes."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return Sample("digits", "multiclass", d.data, d.target, list(d.feature_names), 10)


def wine() -> Sample:
    """Wine recognition: 178 x 13 chemical measurements, 3 cultivars."""
    from sklearn.datasets import load_wine

    d = load_wine()
    return Sample("wine", "multiclass", d.data, d.target, list(d.feature_names), 3)


def diabetes() -> Sample:
    """Diabetes progression: 442 x 10 (unscaled), target = disease progression after one year."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    return Sample("diabetes", "regression", d.data, _column(d.target), list(d.feature_names))


def moons(n_samples: int, noise: float, seed: int) -> Sample:
    """Two interleaving half circles (sklearn make_moons), binary."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return Sample("moons", "binary", x, y, ["x0", "x1"], 2)


def circles(n_samples: int, noise: float, factor: float, seed: int) -> Sample:
    """A small circle inside a large one (sklearn make_circles), binary."""
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return Sample("circles", "binary", x, y, ["x0", "x1"], 2)


def friedman1(n_samples: int, n_features: int, noise: float, seed: int) -> Sample:
    """Friedman #1: y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + noise; x ~ U[0, 1]."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n_samples, n_features=n_features, noise=noise, random_state=seed)
    return Sample("friedman1", "regression", x, _column(y), [f"x{i}" for i in range(n_features)])


# ----------------------------------------------------------------------------------------------
# generated for one loss question each


def outliers(n_samples: int, n_features: int, noise: float, contamination: float,
             outlier_scale: float, outlier_df: float, seed: int) -> Sample:
    """Clean model y = x.w + sin(2 x0) + noise; a fraction of TRAINING targets get large errors.

    x ~ N(0, I), w ~ N(0, 1/n_features); the errors are outlier_scale * Student-t(outlier_df)
    (heavy-tailed, symmetric), drawn once the split is known, for the training rows only (the
    sample's `train_targets`). Validation and test targets stay clean: the question is which loss
    recovers the clean function (Huber / MAE should beat MSE).
    """
    def draw():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n_samples, n_features))
        w = rng.standard_normal(n_features) / math.sqrt(n_features)
        return rng, x, x @ w + np.sin(2 * x[:, 0]) + noise * rng.standard_normal(n_samples)

    def contaminated(train):  # the training rows, in split order -> their targets [n, 1]
        rng, _, y = draw()  # the generator's stream where the clean sample left it
        hit = train[rng.random(len(train)) < contamination]
        y[hit] += outlier_scale * rng.standard_t(outlier_df, len(hit))
        return _column(y[train])

    _, x, y = draw()
    return Sample("outliers", "regression", x, _column(y), [f"x{i}" for i in range(n_features)],
                  train_targets=contaminated)


WEEKLY = np.array([0.8, 0.9, 0.9, 1.0, 1.1, 1.4, 1.2])  # demand multiplier per day of week (mean 1.04)


def demand(n_samples: int, n_items: int, min_level: float, max_level: float,
           seasonality: float, noise: float, distribution: str, seed: int) -> Sample:
    """Daily sales of items on very different scales: positive, multiplicative seasonality.

    Item i sells level_i (log-uniform in [min_level, max_level] units/day) x (1 + seasonality
    sin(2 pi day/365)) x WEEKLY[day % 7] x a mean-one log-normal shock exp(noise z - noise^2/2);
    distribution=poisson: the sale is a zero-truncated Poisson count of that rate (targets are >= 1);
    lognormal: the sale is the rate itself, an amount whose law given the features is log-normal,
    LN(log m - noise^2/2, noise^2) with m the rate without its shock (so its mean is m). Features: item
    one-hot, sin/cos of the day of year, day-of-week one-hot: they determine m, so each row's law is
    known and stored (`Sample.conditional`). MAPE's optimum under noise is below the mean (it
    under-forecasts); MSE's is the mean.
    """
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(math.log(min_level), math.log(max_level), n_items))
    item = rng.integers(0, n_items, n_samples)
    day = rng.integers(0, 2 * 365, n_samples)
    angle = 2 * math.pi * day / 365
    shock = np.exp(noise * rng.standard_normal(n_samples) - noise**2 / 2)
    typical = level[item] * (1 + seasonality * np.sin(angle)) * WEEKLY[day % 7]  # m, the mean rate given x
    rate = typical * shock
    # each row's law: the log of its (mean-one shocked) rate is N(mu, noise^2)
    law = {"mu": np.log(typical) - noise**2 / 2, "sigma": np.full(n_samples, float(noise))}
    if distribution == "lognormal":
        y, law["family"] = rate, "lognormal"
    else:
        y, law["family"] = rng.poisson(rate), "poisson_lognormal"
        while (zero := y == 0).any():  # zero-truncated: redraw the zeros (rare: rates are >= ~5)
            y[zero] = rng.poisson(rate[zero])
    x = np.concatenate([np.eye(n_items)[item], np.stack([np.sin(angle), np.cos(angle)], 1),
                        np.eye(7)[day % 7]], axis=1)
    names = [f"item{i}" for i in range(n_items)] + ["sin_year", "cos_year"] + [f"weekday{d}" for d in range(7)]
    return Sample("demand", "regression", x, _column(y), names, conditional=law)


def mnist1d(n_samples: int, seed: int) -> Sample:
    """MNIST-1D (Greydanus 2020): 40-step 1-D signals of 10 digit templates, made offline.

    Uses the package's generator `mnist1d.data.make_dataset` with its default templates and
    transforms (never its download path); the package's own train/test cut is pooled and re-split.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = n_samples, seed
    state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset seeds the global generators; leave them as we found them
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
        random.setstate(py_state)
    x = np.concatenate([d["x"], d["x_test"]])
    y = np.concatenate([d["y"], d["y_test"]])
    return Sample("mnist1d", "multiclass", x, y.astype(np.int64), [f"t{i}" for i in range(x.shape[1])], 10)


# ----------------------------------------------------------------------------------------------
# torchvision image datasets (downloaded on request; their files are the cache)

VISION = {  # name -> (torchvision class, folder under root holding the files, channel names)
    "mnist": ("MNIST", "MNIST/raw", ["gray"]),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", ["gray"]),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ["red", "green", "blue"]),
}


def _vision(name: str, root: str, download: bool, n_samples) -> Sample:
    """torchvision's train and test sets pooled; `n_samples` rows of them are kept per replicate
    (a stratified subsample drawn with the split)."""
    import torchvision

    cls_name, folder, channels = VISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    root = os.path.expanduser(str(root))
    where = os.path.join(root, folder)
    xs, ys = [], []
    for train in (True, False):
        try:
            d = cls(root, train=train, download=download)
        except RuntimeError as error:  # torchvision: not found / corrupted, or a failed download
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            how = (f"the download failed ({lines[-1][:160] if lines else type(error).__name__}); "
                   "fetch the files by hand into that folder" if download
                   else "rerun with dataset.download=true to fetch them, or copy them there")
            raise UserError(f"dataset {name}: files not found or incomplete under {where} "
                            f"(dataset.root={root}); {how}") from None
        except OSError as error:  # no network, permissions
            raise UserError(f"dataset {name}: could not get the files into {where} "
                            f"({' '.join(str(error).split())[:200]}); fetch them by hand or check dataset.root") from None
        data = np.asarray(d.data)
        xs.append(data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2))  # [N, C, H, W]
        ys.append(np.asarray(d.targets))
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int64)
    return Sample(name, "multiclass", x.astype(np.float32) / 255, y, channels, 10, images=True, subsample=n_samples)


def mnist(root: str, download: bool, n_samples) -> Sample:
    """MNIST handwritten digits, 28x28 gray, 70 000 images (train + test pooled), 10 classes."""
    return _vision("mnist", root, download, n_samples)


def fashion_mnist(root: str, download: bool, n_samples) -> Sample:
    """Fashion-MNIST clothing images, 28x28 gray, 70 000 images, 10 classes."""
    return _vision("fashion_mnist", root, download, n_samples)


def cifar10(root: str, download: bool, n_samples) -> Sample:
    """CIFAR-10 colour images, 32x32x3, 60 000 images, 10 classes."""
    return _vision("cifar10", root, download, n_samples)


# ----------------------------------------------------------------------------------------------
# the user's own table


def names(columns) -> str:
    """Column names for a message, comma-separated; a name a reader could misread (blanks at either end,
    empty, holding a comma) is quoted: the column ' y' is not the column y."""
    return ", ".join(repr(c) if c != c.strip() or not c or "," in c else c for c in map(str, columns))


def csv(task: str, path: str, target_column, features=None) -> Sample:
    """A CSV or Parquet file: `target_column` (a list: several regression targets) from `features`.

    Classification labels may be of any type (sorted unique values -> class indices); features
    must be numeric (bool counts as numeric) with no missing values.
    """
    import pandas as pd

    if not path:
        raise UserError("dataset.path is not set; give the CSV or Parquet file, e.g. dataset.path=data/my.csv")
    file = Path(os.path.expanduser(str(path)))
    if file.is_dir():
        raise UserError(f"dataset.path={str(path)!r} is a directory, not a file; give the .csv or .parquet file in it")
    if not file.is_file():
        raise UserError(f"dataset.path={str(path)!r}: file not found (from {os.getcwd()}); "
                        "give a .csv or .parquet file")
    try:
        frame = pd.read_parquet(file) if file.suffix.lower() in (".parquet", ".pq") else pd.read_csv(file)
    except Exception as error:  # a malformed file: say which and why, on one line
        raise UserError(f"dataset.path={str(path)!r} could not be read: {' '.join(str(error).split())[:200]}") from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if frame.empty:
        raise UserError(f"dataset.path={str(path)!r} has no data rows (columns: {names(columns) or 'none'}); "
                        "give a file with one example per row")
    target = target_column
    if target is None or target == "" or target == []:
        raise UserError(f"dataset.target_column is not set; choose the column to predict from: {names(columns)}")
    targets = [str(t) for t in target] if isinstance(target, (list, tuple)) else [str(target)]
    absent = [t for t in targets if t not in columns]
    if absent:
        raise UserError(f"dataset.target_column={names(absent)} is not a column of {file.name}; "
                        f"columns are: {names(columns)}")
    if task != "regression" and len(targets) > 1:
        raise UserError(f"dataset.target_column={targets} is not allowed for task={task}; "
                        "classification takes one target column")
    if features is None:
        features = [c for c in columns if c not in targets]
    else:
        features = [str(f) for f in features]
        absent = [f for f in features if f not in columns]
        if absent:
            raise UserError(f"dataset.features: {names(absent)} not columns of {file.name}; "
                            f"columns are: {names(columns)}")
        overlap = [f for f in features if f in targets]
        if overlap:
            raise UserError(f"dataset.features includes the target {names(overlap)}; leave it out")
    if not features:
        raise UserError(f"dataset.features: {file.name} has no feature columns besides the target")
    used = frame[features + targets]
    non_numeric = [c for c in features if not (pd.api.types.is_numeric_dtype(used[c])
                                              or pd.api.types.is_bool_dtype(used[c]))]
    if non_numeric:
        raise UserError(f"non-numeric feature columns in {file.name}: {names(non_numeric)}; encode them "
                        "as numbers or leave them out with dataset.features=[...]")
    missing = used.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        counts = ", ".join(f"{names([c])} ({k} missing)" for c, k in missing.items())
        raise UserError(f"missing values in {file.name}: {counts}; fill or drop those rows first")
    x = used[features].to_numpy(dtype=np.float64)
    bad = [c for c, ok in zip(features, np.isfinite(x).all(axis=0)) if not ok]
    if bad:
        raise UserError(f"infinite values in {file.name}: {names(bad)}; replace them first")
    if task == "regression":
        bad = [t for t in targets if not pd.api.types.is_numeric_dtype(used[t])]
        if bad:
            raise UserError(f"dataset.target_column={names(bad)} is not numeric; task=regression needs numbers "
                            "(use task=binary or multiclass for labels)")
        y = used[targets].to_numpy(dtype=np.float64)  # [N, T]
        check_target_units(y, targets)
        return Sample("csv", task, x, y, features)
    labels = used[targets[0]]
    if pd.api.types.is_float_dtype(labels) and not (labels == labels.round()).all():
        example = next(v for v in labels if v != round(v))
        raise UserError(f"dataset.target_column={targets[0]!r} holds non-integer numbers (e.g. {example:g}) but "
                        f"task={task} needs class labels; use dataset.task=regression for numbers")
    y, classes = _labels(labels)
    n_classes = len(classes)
    if n_classes < 2:
        only = labels.iloc[0].item() if hasattr(labels.iloc[0], "item") else labels.iloc[0]
        raise UserError(f"dataset.target_column={targets[0]!r} has a single class ({only!r}) in "
                        f"{file.name}; classification needs at least 2")
    if task == "binary" and n_classes > 2:
        raise UserError(f"dataset.target_column={targets[0]!r} has {n_classes} classes but task=binary; "
                        "use dataset.task=multiclass")
    return Sample("csv", task, x, y, features, n_classes, class_names=classes)
