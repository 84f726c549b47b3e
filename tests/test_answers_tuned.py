"""The answers and sections of a tuned report on a written results tree: the
fixed-learning-rate order sentence, the grouped grid-edge warning, a one-lr group without a
sensitivity section, pitfall figures that would round alike, binary_vs_categorical as one answer.

Expected numbers come from `bench.store.load()` frames with plain pandas and from the optimizer's
YAML read here, never from the report's own tables."""
import json
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import t as t_dist

from bench.store import load

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.01, 0.1, 1.0]
SEEDS = [0, 1, 2]


def write_run(root, group, dataset, activation, loss, members, task="multiclass", chosen=None, binary=None):
    """members: {lr: ([val per seed], [test accuracy per seed])}; chosen: the val-best lr (given, as
    the trainer records it); binary: (binary_accuracy, accuracy) at the last val epoch for every seed."""
    grid = sorted(members)
    chosen = chosen if chosen is not None else grid[0]
    rid = f"{group}-{dataset}-{activation}-{loss}"
    path = root / group / rid
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"dataset": {"name": dataset}, "loss": {"name": loss},
                                                      "optimizer": {"lr": grid if len(grid) > 1 else grid[0]}}))
    per_seed, history = [], []
    for lr, (vals, tests) in members.items():
        for seed, v, t in zip(SEEDS, vals, tests):
            per_seed.append({"seed": seed, "lr": lr, "chosen": lr == chosen, "status": "done",
                             "test": {"accuracy": t}, "best_val": v, "epochs_to_target": 2,
                             "steps_to_target": 20, "seconds_to_target": 0.2, "auc": 0.5, "train_seconds": 1.0,
                             "diverged_step": None})
            for epoch in range(3):
                row = {"seed": seed, "lr": lr, "epoch": epoch, "step": 10 * epoch, "split": "val",
                       "train_seconds": 0.1 * epoch, "loss": 1.0, "accuracy": v * (epoch + 1) / 3, "out_grad": 0.1}
                if binary:
                    row.update(binary_accuracy=binary[0] if epoch == 2 else 0.5,
                               accuracy=binary[1] if epoch == 2 else 0.3)
                history.append(row)
    pd.DataFrame(history).to_parquet(path / "history.parquet", index=False)
    summary = {"run_id": rid, "group": group, "dataset": dataset, "task": task, "model": "mlp",
               "activation": activation, "loss": loss, "optimizer": "sgd", "lr": grid if len(grid) > 1 else grid[0],
               "metric": "accuracy", "higher_is_better": True, "target": 0.5, "status": "done", "reason": None,
               "n_classes": 3 if task == "multiclass" else 2, "lr_grid": grid, "chosen_lr": chosen,
               "per_seed": per_seed}
    (path / "summary.json").write_text(json.dumps(summary))


def flat(x):
    return ([x - 0.01, x, x + 0.01], [x - 0.01, x, x + 0.01])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("answers")
    # toy_a: tuned, softmax+mse (lr 1, the grid's top) > softmax+cce > linear+mse; at lr 0.1 mse is last
    write_run(root, "classification", "toy_a", "softmax", "cce", {0.01: flat(0.5), 0.1: flat(0.94), 1.0: flat(0.6)},
              chosen=0.1)
    write_run(root, "classification", "toy_a", "softmax", "mse", {0.01: flat(0.1), 0.1: flat(0.32), 1.0: flat(0.97)},
              chosen=1.0)
    write_run(root, "classification", "toy_a", "linear", "mse", {0.01: flat(0.4), 0.1: flat(0.91), 1.0: flat(0.5)},
              chosen=0.1)
    # toy_b: the same order tuned and at lr 0.1 (cce first); mse chooses the top edge too
    write_run(root, "classification", "toy_b", "softmax", "cce", {0.01: flat(0.5), 0.1: flat(0.95), 1.0: flat(0.6)},
              chosen=0.1)
    write_run(root, "classification", "toy_b", "softmax", "mse", {0.01: flat(0.1), 0.1: flat(0.62), 1.0: flat(0.9)},
              chosen=1.0)
    # toy_c: linear+mse and the canonical softmax+cce tie for first, tuned and at lr 0.1
    for activation, loss in (("linear", "mse"), ("softmax", "cce")):
        write_run(root, "classification", "toy_c", activation, loss,
                  {0.01: flat(0.5), 0.1: flat(0.9), 1.0: flat(0.6)}, chosen=0.1)
    # saturation: one fixed lr; sigmoid+bce's two accuracies round alike at 3 digits (1.00 vs 1.00)
    write_run(root, "saturation", "toy_a", "sigmoid", "bce", {1.0: flat(0.9)}, binary=(0.9998, 0.9996))
    write_run(root, "saturation", "toy_a", "sigmoid", "mse", {1.0: flat(0.8)})
    # binary_vs_categorical: two binary and two multiclass datasets
    for dataset, task in (("bin_a", "binary"), ("bin_b", "binary"), ("toy_a", "multiclass"), ("toy_c", "multiclass")):
        write_run(root, "binary_vs_categorical", dataset, "sigmoid", "bce", {0.1: flat(0.9), 1.0: flat(0.92)},
                  task=task, chosen=1.0, binary=(0.96, 0.9) if task == "multiclass" else None)
        write_run(root, "binary_vs_categorical", dataset, "softmax", "cce", {0.1: flat(0.91), 1.0: flat(0.88)},
                  task=task, chosen=0.1)
    return root


class Inline:
    """A painter that draws nothing of the data: every figure 'exists' as a 1-pixel PNG of its own colour
    (the sections' structure is under test)."""

    def __init__(self, out):
        self.out, self.drawn = out, 0

    def draw(self, fn, *args, **kwargs):
        from PIL import Image

        self.drawn += 1
        name = f"figure-{self.drawn}.png"
        Image.new("RGB", (1, 1), (self.drawn % 256, self.drawn // 256, 0)).save(self.out / name)
        done = Future()
        done.set_result(name)
        return done


@pytest.fixture(scope="module")
def built(tree):
    from bench.report.page import sections

    out = tree / "report"
    out.mkdir()
    _, presets, _ = sections(tree, out, Inline(out))
    return {p["name"]: [text for text, _ in p["answer"]["sentences"]] for p in presets}, presets, out


def test_fixed_lr_is_the_optimizers_default_from_its_yaml():
    from bench.report.tuned import fixed_lr

    for name in ("sgd", "adam", "adamw"):
        default = yaml.safe_load((ROOT / "conf" / "optimizer" / f"{name}.yaml").read_text())["lr"]
        grid = yaml.safe_load((ROOT / "conf" / "optimizer" / f"{name}.yaml").read_text())["lr_grid"]
        assert fixed_lr(name, grid)[0] == default
        assert f"conf/optimizer/{name}.yaml" in fixed_lr(name, grid)[1]
    assert fixed_lr("sgd", [0.02, 1, 3])[0] == 0.02  # 0.1 missing: nearest on a log scale (5x below, not 10x above)
    assert fixed_lr("no_such_optimizer", [1, 2, 3, 4, 5])[0] == 3


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_fixed_order_sentence_from_the_loaded_frames(built, tree):
    said, _, out = built
    runs, _ = load(tree)
    runs = runs[runs["group"] == "classification"]
    runs["config"] = runs["activation"] + "+" + runs["loss"]
    default = yaml.safe_load((ROOT / "conf" / "optimizer" / "sgd.yaml").read_text())["lr"]
    a = runs[runs["dataset"] == "toy_a"]
    fixed = a[np.isclose(a["lr"], default)].groupby("config")["test_accuracy"].mean().sort_values(ascending=False)
    tuned = a[a["chosen"]].groupby("config")["test_accuracy"].mean().sort_values(ascending=False)
    chosen = a[a["chosen"]].groupby("config")["lr"].first()
    assert list(fixed.index) == ["softmax+cce", "linear+mse", "softmax+mse"]  # the fixture does what it says
    assert list(tuned.index) == ["softmax+mse", "softmax+cce", "linear+mse"]

    sentence = [s for s in said["classification"] if s.startswith("At the fixed learning rate")]
    assert len(sentence) == 1, said["classification"]
    text = sentence[0]
    assert text.startswith(f"At the fixed learning rate {default:g} (sgd's default in conf/optimizer/sgd.yaml")
    assert "the test ranking differs on toy_a (the same on toy_b and toy_c)" in text

    def place(order, config):
        return ["1st", "2nd", "3rd"][list(order.index).index(config)]

    cce = (f"softmax+cce ranks {place(fixed, 'softmax+cce')} of 3 (test accuracy {fixed['softmax+cce']:.3f}; tuned: "
           f"{place(tuned, 'softmax+cce')}, {tuned['softmax+cce']:.3f} at lr {chosen['softmax+cce']:g})")
    mse = (f"softmax+mse {place(fixed, 'softmax+mse')} ({fixed['softmax+mse']:.3f}; tuned: "
           f"{place(tuned, 'softmax+mse')}, {tuned['softmax+mse']:.3f} at lr {chosen['softmax+mse']:g})")
    assert f"on toy_a {cce}, {mse}." in text
    # the same sentence in findings.txt, and the fixed ranking's csv at the same lr
    assert f"[classification] Answer: {text}" in (out / "findings.txt").read_text()
    csv = pd.read_csv(out / "ranking-fixed-lr.csv")
    assert set(csv["group"]) == {"classification", "binary_vs_categorical"} and (csv["lr"] == default).all()


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_a_tie_for_first_names_the_canonical_pairing(built, tree):
    said, _, _ = built
    runs, _ = load(tree)
    c = runs[(runs["group"] == "classification") & (runs["dataset"] == "toy_c") & runs["chosen"]]
    means = c.groupby(["activation", "loss"])["test_accuracy"].mean()
    assert means["linear", "mse"] == means["softmax", "cce"]
    cce = c[c["loss"] == "cce"]["test_accuracy"]
    half = t_dist.ppf(0.975, len(cce) - 1) * cce.std() / np.sqrt(len(cce))
    sentence = [s for s in said["classification"] if s.startswith("On toy_c,")]
    # the tie is named, and the challenger's paired difference (0 on every seed) is no difference
    assert sentence == [f"On toy_c, the canonical softmax+cce has the best mean test accuracy of 2 configurations, "
                        f"{cce.mean():.4f} (95 % CI of the mean {cce.mean() - half:.4f}–{cce.mean() + half:.4f}), "
                        "sharing the top rank with 1 other; the best other, linear+mse (0.9000): 0 (95 % CI 0.00–0.00; p = 1, "
                        "3 paired replicates); linear+mse is not distinguishable from it."], said["classification"]


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_grid_edge_warning_once_and_grouped(built, tree):
    _, groups, out = built
    runs, _ = load(tree)
    tuned = runs[(runs["group"] == "classification") & runs["chosen"]].drop_duplicates("run_id")
    edge = tuned[[lr in (min(g), max(g)) for lr, g in zip(tuned["chosen_lr"], tuned["lr_grid"])]]
    assert len(edge) == 2
    lines = [line for line in (out / "findings.txt").read_text().splitlines()
             if line.startswith("[classification]") and "Warning" in line]
    assert lines == [f"[classification] Learning rate at the edge of the grid: Warning: {len(edge)} of "
                     f"{len(tuned)} tuned configurations chose the top of the grid as trained, lr 1 of 0.01 to 1 (the "
                     "optimum is at least that), so the grid was too narrow to call them tuned: on toy_a "
                     "softmax+mse; on toy_b softmax+mse."]
    page = next(g for g in groups if g["name"] == "classification")
    items = [i for s in page["sections"] for b in s["blocks"] if b["kind"] == "list" for i in b["items"]]
    assert sum("Warning" in i for i in items) == 1


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_a_group_with_one_learning_rate_has_no_tuning_sections(built):
    said, groups, out = built
    sections = {g["name"]: [s["id"] for s in g["sections"]] for g in groups}
    assert "classification-tuning" in sections["classification"]
    assert "saturation-tuning" not in sections["saturation"] and "saturation-ranking" in sections["saturation"]
    saturation = next(g for g in groups if g["name"] == "saturation")
    texts = [b.get("text", "") + b.get("title", "") for s in saturation["sections"] for b in s["blocks"]
             if s["id"] != "saturation-answer"]  # (the preset's own words about its question may name its lr)
    assert not any("learning rate" in t.lower() for t in texts), texts
    text = (out / "findings.txt").read_text()
    assert "[saturation] toy_a: Robustness to the learning rate" not in text
    assert not any("learning rate" in s for s in said["saturation"])


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_pitfall_figures_that_round_alike_get_more_digits(built, tree):
    _, _, out = built
    _, history = load(tree)
    h = history[(history["group"] == "saturation") & (history["loss_name"] == "bce") & (history["split"] == "val")]
    last = h[h["epoch"] == h["epoch"].max()][["binary_accuracy", "accuracy"]].mean()
    assert f"{last['binary_accuracy']:.3g}" == f"{last['accuracy']:.3g}"  # they round alike at 3 digits
    text = (out / "findings.txt").read_text()
    assert f"and {last['binary_accuracy']:.4f} vs {last['accuracy']:.4f} at epoch 2" in text
    assert "1.00 vs 1.00" not in text


@pytest.mark.slow  # the report's sections on a written tree: ~10 s with the imports
def test_binary_vs_categorical_reads_as_one_answer(built, tree):
    said, _, _ = built
    runs, history = load(tree)
    runs = runs[(runs["group"] == "binary_vs_categorical") & runs["chosen"]]
    answer = said["binary_vs_categorical"]
    assert answer[0] == "At each configuration's validation-chosen learning rate:"
    binary = [s for s in answer if s.startswith("On binary data")]
    multi = [s for s in answer if s.startswith("On multiclass data")]
    assert len(binary) == 1 and len(multi) == 1  # one sentence per half of the question, not one per dataset
    for dataset in ("bin_a", "bin_b"):
        d = runs[runs["dataset"] == dataset]
        x = d[d["loss"] == "bce"].set_index("seed")["test_accuracy"]
        y = d[d["loss"] == "cce"].set_index("seed")["test_accuracy"]
        assert f"{(y - x).mean():+.3g} on {dataset}" in binary[0]  # softmax+cce against the canonical sigmoid+bce
    h = history[(history["group"] == "binary_vs_categorical") & (history["loss_name"] == "bce")
                & (history["split"] == "val") & (history["task"] == "multiclass")]
    for dataset in ("toy_a", "toy_c"):
        d = h[(h["dataset"] == dataset) & (h["epoch"] == h["epoch"].max())]
        b, c = d["binary_accuracy"].mean(), d["accuracy"].mean()
        assert f"{b:.3f} vs {c:.3f} on {dataset} (3 classes" in multi[0]
