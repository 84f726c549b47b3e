"""A replicate is (split, initialisation, batch order): each seed draws its own train/val/test split
(a generated dataset its own sample), standardised and scaled on its own training rows; two runs
with the same seed saw the same data, and a member's numbers do not depend on which other members
train beside it. `dataset.resample=false` gives every seed split_seed's one split.

References: scikit-learn's own data and generators, hand computations on the indices, and runs of
one member alone, never the code's own figures."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench import store
from bench.datasets import load_dataset
from bench.run import run
from tests.conftest import CONF


def node(name, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("config", overrides=[f"dataset={name}", *overrides]).dataset


def test_each_seed_draws_its_own_stratified_split_the_one_a_run_of_that_seed_alone_draws():
    data = load_dataset(node("digits"), seeds=[0, 1, 2])
    rows = [set(data.train[r].tolist()) for r in range(3)]
    assert len({len(r) for r in rows}) == 1 and all(a != b for i, a in enumerate(rows) for b in rows[i + 1:])
    for r in range(3):  # a partition of the 1797 rows, stratified
        parts = [data.train[r], data.val[r], data.test[r]]
        assert sorted(torch.cat(parts).tolist()) == list(range(1797))
        labels = data.y[r]
        share = torch.bincount(labels, minlength=10).double() / len(labels)
        for part in parts:
            counts = torch.bincount(labels[part], minlength=10).double()
            assert (counts - share * len(part)).abs().max() <= 2
    alone = load_dataset(node("digits"), seeds=[1])  # what a one-member run with seed 1 draws
    assert torch.equal(alone.train[0], data.train[1]) and torch.equal(alone.test[0], data.test[1])
    fixed = load_dataset(node("digits", "dataset.resample=false"), seeds=[0, 1, 2])
    assert fixed.seeds == (None,) and torch.equal(fixed.replicate_of([0, 1, 2]), torch.zeros(3, dtype=torch.long))
    other = load_dataset(node("digits", "dataset.split_seed=7"), seeds=[1])
    assert not torch.equal(other.train[0], data.train[1])  # split_seed is the base of every replicate's split


def test_each_replicate_is_standardised_and_scaled_on_its_own_training_rows():
    """diabetes against scikit-learn's raw table and a hand computation on each replicate's rows."""
    from sklearn.datasets import load_diabetes

    raw = load_diabetes(scaled=False)
    data = load_dataset(node("diabetes"), seeds=[3, 4])
    for r in range(2):
        train = data.train[r].numpy()
        mean, std = raw.data[train].mean(0), raw.data[train].std(0)
        split = data.replicate(r)
        expected = (raw.data[data.test[r].numpy()] - mean) / std
        np.testing.assert_allclose(split.x_test.numpy(), expected, rtol=1e-5, atol=1e-5)
        scale = np.median(np.abs(raw.target[train]))
        assert split.target_scale == pytest.approx(scale)
        np.testing.assert_allclose(split.y_test.numpy().ravel() * scale, raw.target[data.test[r].numpy()], rtol=1e-6)
    assert data.target_scale[0] != data.target_scale[1]


def test_a_generated_dataset_draws_a_sample_per_seed_and_the_fixed_split_its_own_seeds():
    from sklearn.datasets import make_moons

    fixed = load_dataset(node("moons", "dataset.resample=false"), seeds=[0, 1]).replicate()
    x, _ = make_moons(n_samples=1000, noise=0.2, random_state=0)  # the YAML's generator seed
    raw = torch.cat([fixed.x_train, fixed.x_val, fixed.x_test]).double().numpy()
    z, r = np.sort(raw[:, 0]), np.sort(x[:, 0])  # column 0 is an increasing affine image of sklearn's
    slope, intercept = np.polyfit(z, r, 1)
    np.testing.assert_allclose(slope * z + intercept, r, atol=1e-4)
    per_seed = load_dataset(node("moons"), seeds=[0, 1])
    a, b = per_seed.replicate(0), per_seed.replicate(1)
    assert not np.allclose(np.sort(a.x_train[:, 0].numpy()), np.sort(b.x_train[:, 0].numpy()))  # other points
    again = load_dataset(node("moons"), seeds=[1]).replicate()
    assert torch.equal(again.x_test, b.x_test)  # the same seed, the same sample and split


@pytest.mark.slow
@pytest.mark.parametrize("overrides, lrs", [
    ((), (0.1, 1.0)),  # digits: 10 outputs, 360 test rows
    (("dataset=wine", "trainer.batch_size=20"), (0.1, 1.0)),  # 13 features, 36 rows a split, every batch padded
    (("dataset=demand", "loss=mape", "optimizer=adam", "model.hidden=[16]"), (0.001, 0.01)),  # one output unit
], ids=["digits", "wine", "demand"])
def test_a_members_numbers_are_the_same_at_any_K_and_position(make_config, tmp_path, overrides, lrs):
    """Seed 1 trained among seeds [2, 1, 0] at two learning rates, and alone at each: the same test
    metrics, divergence and curves, bit for bit (train_seconds aside), on its own split; one thread (the
    guarantee's condition: how a matmul splits over threads may depend on K)."""
    together = run(make_config(*overrides, "seeds=[2,1,0]", f"optimizer.lr=[{lrs[0]},{lrs[1]}]",
                               "optimizer.lr_extend=0", "group=together", "trainer.threads=1"))
    for lr in lrs:
        alone = run(make_config(*overrides, "seeds=[1]", f"optimizer.lr={lr}", f"group=alone{lr}", "trainer.threads=1"))
        ours = next(s for s in together["per_seed"] if s["seed"] == 1 and s["lr"] == lr)
        theirs = alone["per_seed"][0]
        for key in ("test", "status", "diverged_step", "epochs_to_target", "best_val", "auc"):
            assert ours[key] == theirs[key], (lr, key)
        mine = pd.read_parquet(store.run_dir(tmp_path / "results", "together", together["run_id"]) / "history.parquet")
        solo = pd.read_parquet(store.run_dir(tmp_path / "results", f"alone{lr}", alone["run_id"]) / "history.parquet")
        mine = mine[(mine.seed == 1) & (mine.lr == lr)].drop(columns="train_seconds").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, solo.drop(columns="train_seconds"), check_exact=True)
    assert together["resample"] is True and sum(together["split_sizes"].values()) == {
        "digits": 1797, "wine": 178, "demand": 4000}[together["dataset"]]
