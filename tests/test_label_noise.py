"""Label noise: exactly the stated share of training labels replaced, only there, reproducibly, and
recorded in the summary; a share outside [0, 1) or noise on regression is a one-line error."""
import numpy as np
import pytest
import torch

from bench.config import check_dataset
from bench.datasets import DATASETS, DIGIT_FLIPS, load_dataset
from bench.errors import UserError

DIGITS = {"name": "digits", "task": "multiclass", "split_seed": 0, "val_fraction": 0.2, "test_fraction": 0.2}


@pytest.mark.parametrize("share", [0.0, 0.2, 0.4, 0.9])
def test_symmetric_noise_flips_exactly_the_share_of_training_labels_only(share):
    clean = load_dataset(DIGITS).replicate()
    noisy_data = load_dataset({**DIGITS, "label_noise": share, "label_noise_kind": "symmetric"})
    noisy = noisy_data.replicate()
    n = len(clean.y_train)
    changed = noisy.y_train != clean.y_train
    assert int(changed.sum()) == round(share * n)  # every chosen row gets another class: none stays
    assert torch.equal(noisy.y_val, clean.y_val) and torch.equal(noisy.y_test, clean.y_test)
    assert torch.equal(noisy.x_train, clean.x_train)
    if share:
        assert noisy_data.label_noise[0]["applied"] == pytest.approx(round(share * n) / n)
        # a uniformly random other class: every wrong class appears, none more than chance allows
        wrong = np.bincount(((noisy.y_train - clean.y_train) % 10)[changed].numpy(), minlength=10)
        assert wrong[0] == 0 and (wrong[1:] > 0).all()


def test_noise_is_deterministic_from_the_split_seed_and_each_replicate_draws_its_own():
    a = load_dataset({**DIGITS, "label_noise": 0.3}).replicate()
    b = load_dataset({**DIGITS, "label_noise": 0.3}).replicate()
    c = load_dataset({**DIGITS, "label_noise": 0.3, "split_seed": 1}).replicate()
    assert torch.equal(a.y_train, b.y_train)
    clean_c = load_dataset({**DIGITS, "split_seed": 1}).replicate()
    assert not torch.equal((a.y_train != load_dataset(DIGITS).replicate().y_train).nonzero(),
                           (c.y_train != clean_c.y_train).nonzero())
    # two replicates: their own training rows, their own flipped rows, the same exact share
    two = load_dataset({**DIGITS, "label_noise": 0.3}, seeds=[0, 1])
    clean_two = load_dataset(DIGITS, seeds=[0, 1])
    flipped = [two.replicate(r).y_train != clean_two.replicate(r).y_train for r in (0, 1)]
    assert int(flipped[0].sum()) == int(flipped[1].sum()) == round(0.3 * len(flipped[0]))
    assert not torch.equal(two.train[0], two.train[1]) and not torch.equal(flipped[0], flipped[1])


def test_asymmetric_noise_follows_the_documented_flips():
    clean = load_dataset(DIGITS).replicate()
    noisy = load_dataset({**DIGITS, "label_noise": 0.4, "label_noise_kind": "asymmetric"}).replicate()
    changed = noisy.y_train != clean.y_train
    pairs = set(zip(clean.y_train[changed].tolist(), noisy.y_train[changed].tolist()))
    assert pairs <= set(DIGIT_FLIPS.items()) and len(pairs) == len(DIGIT_FLIPS)
    eligible = int(np.isin(clean.y_train.numpy(), list(DIGIT_FLIPS)).sum())
    assert int(changed.sum()) == round(0.4 * eligible)
    assert DATASETS["digits"].flips is DIGIT_FLIPS


@pytest.mark.parametrize("cfg, words", [
    ({**DIGITS, "label_noise": 1.0}, "dataset.label_noise=1.0 is not allowed; it must be a share in [0, 1)"),
    ({**DIGITS, "label_noise": -0.1}, "dataset.label_noise=-0.1 is not allowed"),
    ({**DIGITS, "label_noise_kind": "pairs"}, "dataset.label_noise_kind='pairs' is not allowed; choose one of: "
                                              "symmetric, asymmetric"),
    ({"name": "diabetes", "task": "regression", "split_seed": 0, "val_fraction": 0.2, "test_fraction": 0.2,
      "label_noise": 0.2}, "dataset.label_noise=0.2 replaces class labels but dataset=diabetes is a regression task"),
])
def test_bad_noise_settings_are_one_line_errors(cfg, words):
    with pytest.raises(UserError) as error:
        check_dataset(cfg)
    assert str(error.value).startswith(words) and "\n" not in str(error.value)


def test_a_noisy_run_records_the_applied_share(make_config):
    from bench.run import run

    cfg = make_config("dataset.label_noise=0.2", "trainer.epochs=1", "seeds=[0]")
    summary = run(cfg)
    n_train = len(load_dataset(DIGITS).replicate().y_train)
    assert summary["label_noise"] == 0.2
    assert summary["label_noise_applied"] == pytest.approx(round(0.2 * n_train) / n_train)
