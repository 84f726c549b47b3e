"""The robustness figure's numbers (bench.report.figures.robustness) on hand-made runs and history:
test at the last epoch, best and last clean validation metric, their gap, and the finding's words."""

import pandas as pd
import pytest

from bench.report import findings
from bench.report.figures import robustness


def fake(noise_levels=(0.0, 0.4), losses=("cce", "gce"), seeds=(0, 1)):
    runs, history = [], []
    for noise in noise_levels:
        for loss in losses:
            rid = f"{loss}-{noise}"
            for seed in seeds:
                # cce at 0.4 peaks at 0.9 (epoch 1), ends at 0.6; everything else ends at its best
                curve = [0.1, 0.9, 0.6] if (loss, noise) == ("cce", 0.4) else [0.1, 0.8, 0.85]
                curve = [v + 0.01 * seed for v in curve]
                runs.append({"group": "g", "run_id": rid, "dataset": "digits", "task": "multiclass", "trained": True,
                             "activation": "softmax", "loss": loss, "metric": "accuracy", "higher_is_better": True,
                             "label_noise": noise, "label_noise_applied": noise, "seed": seed,
                             "best_val": max(curve), "test_accuracy": curve[-1] - 0.02})
                history += [{"run_id": rid, "seed": seed, "split": split, "epoch": e, "accuracy": v}
                            for e, v in enumerate(curve) for split in ("train", "val")]
    return pd.DataFrame(runs), pd.DataFrame(history)


def test_frame_reads_test_best_last_and_gap_per_seed():
    runs, history = fake()
    frame = robustness.robustness_frame(runs, history)
    assert len(frame) == 8
    row = frame[(frame["pair"] == "softmax+cce") & (frame["noise"] == 0.4) & (frame["seed"] == 1)].iloc[0]
    assert row["best"] == pytest.approx(0.91) and row["last"] == pytest.approx(0.61)
    assert row["gap"] == pytest.approx(0.30) and row["test"] == pytest.approx(0.59)
    assert (frame[frame["pair"] == "softmax+gce"]["gap"] == 0).all()


def test_no_noise_axis_gives_an_empty_frame():
    runs, history = fake(noise_levels=(0.2,))
    assert robustness.robustness_frame(runs, history).empty


def test_finding_quotes_the_canonical_gap_and_the_ranking_at_each_end():
    runs, history = fake()
    said = findings.robustness_findings(robustness.summary(robustness.robustness_frame(runs, history)))
    text = said["g"]["digits"]
    assert text.startswith("At 40% symmetric label noise, softmax+cce's clean validation accuracy is 0.905 at its "
                           "best epoch and 0.605 at the last (memorisation gap 0.300")
    # best first at 40 %: gce (0.85 / 0.86 - 0.02 -> mean 0.835) before cce (0.585)
    assert "best first: softmax+gce 0.835" in text and text.index("softmax+gce 0.835") < text.index("softmax+cce 0.585")
    assert "At 0% noise: softmax+cce 0.835" in text


def test_draw_writes_the_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    runs, history = fake()
    name = robustness.draw(robustness.robustness_frame(runs, history), tmp_path, "r.png")
    assert (tmp_path / name).stat().st_size > 10_000


def test_tuned_runs_name_each_chosen_lr_and_the_preset_answers_with_the_finding():
    from bench.report import answers

    runs, history = fake()
    runs["group"] = "label_noise"
    runs["lr"] = runs["loss"].map({"cce": 0.01, "gce": 0.3})
    said = findings.robustness_findings(robustness.summary(robustness.robustness_frame(runs, history)))
    assert "best first: softmax+gce 0.835 (0.771–0.899, lr 0.3); softmax+cce 0.585" in said["label_noise"]["digits"]
    out = answers.answers(runs.assign(setting="", config=runs["activation"] + "+" + runs["loss"]), pd.DataFrame(
        columns=["group"]), None, history, lambda group, key: f"#{group}-{key}")
    assert out[0]["sentences"] == [(f"On digits: {said['label_noise']['digits']}", "#label_noise-robustness")]
