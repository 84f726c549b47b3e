"""The calibration answer's numbers (bench.report.calibration) against scipy's paired t-test and Holm's
procedure by hand, the leave-one-out NLL rise by hand, the reliability bins pooled by hand; and the preset
run small from the CLI to the page."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from bench.report import calibration as report
from bench.report.figures.reliability import pooled
from bench.report.tables import prepare

ECE = {"cce": [0.20, 0.25, 0.22, 0.30, 0.24], "categorical_focal": [0.05, 0.07, 0.04, 0.09, 0.06],
       "flsd53": [0.21, 0.22, 0.25, 0.27, 0.26]}


def runs_frame():
    rows = []
    for loss, eces in ECE.items():
        for seed, e in enumerate(eces):
            rows.append({"group": "calibration", "run_id": loss, "status": "done", "dataset": "mnist1d",
                         "task": "multiclass", "activation": "softmax", "loss": loss, "metric": "accuracy",
                         "higher_is_better": True, "seed": seed, "seed_status": "done",
                         "test_accuracy": 0.6 + 0.01 * seed, "test_ece": e, "test_log_loss": 1 + e,
                         "test_ece_scaled": e / 4, "test_log_loss_scaled": 1 + e / 2, "temperature": 1 + 10 * e})
    return prepare(pd.DataFrame(rows))


def test_comparisons_are_scipy_paired_t_with_holm_over_the_dataset():
    c = report.comparisons(runs_frame())
    assert len(c) == 2 * 4  # two losses against cce, four figures each
    row = c[(c["config"] == "softmax+categorical_focal") & (c["figure"] == "ECE")].iloc[0]
    test = ttest_rel(ECE["categorical_focal"], ECE["cce"])
    assert row["estimate"] == pytest.approx(np.mean(ECE["categorical_focal"]) - np.mean(ECE["cce"]))
    assert row["p"] == pytest.approx(test.pvalue)
    # NLL is a ratio: the t-test of the log values
    nll = c[(c["config"] == "softmax+categorical_focal") & (c["figure"] == "NLL")].iloc[0]
    logs = np.log(1 + np.array(ECE["categorical_focal"])), np.log(1 + np.array(ECE["cce"]))
    assert nll["scale"] == "ratio" and nll["p"] == pytest.approx(ttest_rel(*logs).pvalue)
    # Holm by hand: the i-th smallest of m p-values times (m - i), running maximum, capped at 1
    p = c["p"].to_numpy()
    order = np.argsort(p, kind="stable")
    by_hand = np.minimum(1, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    np.testing.assert_allclose(c["p_holm"].to_numpy()[order], by_hand)
    # the interval at the level Holm tested the comparison at: 1 - 0.05 / (m - i) while every smaller p was
    # rejected at its own step, that step's level for the rest
    levels, step, still = np.empty(len(p)), 0.05, True
    for i, j in enumerate(order):
        if still:
            step = 0.05 / (len(p) - i)
            still = p[j] < step
        levels[j] = 1 - step
    k = c.index.get_loc(row.name)
    ci = test.confidence_interval(levels[k])
    assert row["level"] == pytest.approx(levels[k]) and (row["lo"], row["hi"]) == pytest.approx((ci.low, ci.high))
    assert row["acc_diff"] == pytest.approx(0.0)  # the same accuracies: equal


def test_nll_rise_reads_each_replicate_from_the_others_lowest_epoch():
    rows = []
    curves = {0: [2.0, 1.0, 1.2, 1.5], 1: [2.0, 1.1, 1.0, 1.6], 2: [2.0, 0.9, 1.3, 1.45], 3: [2.0, 1.0, 1.1, 1.5]}
    for seed, values in curves.items():
        for epoch, v in enumerate(values):
            rows.append({"run_id": "r", "split": "val", "seed": seed, "epoch": 2 * epoch, "log_loss": v,
                         "accuracy": 0.5 + 0.1 * epoch + 0.01 * seed * (epoch == 3)})
    rise = report.nll_rise(pd.DataFrame(rows), {"r"})
    assert rise["epoch"] == 2 and rise["last"] == 6  # mean curve: 2.0, 1.0, 1.15, 1.5
    # without seed 1 the others' mean is lowest at epoch 2 too; each seed: last - its value at epoch 2
    diffs = [1.5 - 1.0, 1.6 - 1.1, 1.45 - 0.9, 1.5 - 1.0]
    assert rise["nll"]["estimate"] == pytest.approx(np.mean(diffs))
    assert rise["accuracy"]["estimate"] == pytest.approx(0.2 + 0.01 * np.mean([0, 1, 2, 3]))


def test_the_answer_names_the_numbers_and_the_published_results():
    said = report.answer(runs_frame(), pd.DataFrame(), pd.DataFrame())
    text = " ".join(s for s, _ in said)
    assert "softmax+categorical_focal 6.2 %" in text and "test ECE of softmax+cce 24.2 %" in text
    assert "Mukhoti et al." in text and "reproduces: softmax+cce 24.2 %, focal γ = 3 6.2 %" in text
    assert "Guo et al." in text


def test_reliability_bins_of_the_replicates_pool_by_rank():
    base = {"dataset": "d", "config": "softmax+cce", "loss": "cce", "trained": True}
    bins = [{"count": [2, 2], "confidence": [0.5, 0.9], "accuracy": [0.5, 1.0]},
            {"count": [1, 3], "confidence": [0.6, 0.8], "accuracy": [1.0, None]}]
    runs = pd.DataFrame([{**base, "reliability": {"before": b, "after": b}} for b in bins])
    frame = pooled(runs)
    before = frame[frame["when"] == "before"].set_index("bin")
    assert before["count"].tolist() == [3, 5]
    assert before.at[0, "confidence"] == pytest.approx((2 * 0.5 + 0.6) / 3)
    assert before.at[0, "accuracy"] == pytest.approx((2 * 0.5 + 1.0) / 3)
    assert before.at[1, "accuracy"] == pytest.approx((2 * 1.0 + 0) / 5)  # (a None mean counts as 0 right)


def test_the_report_module_stays_torch_free_with_the_same_search_range():
    from bench import calibration

    assert report.TEMPERATURE_RANGE == calibration.TEMPERATURE_RANGE


@pytest.mark.slow
def test_the_preset_runs_small_and_the_page_has_its_answer_and_section(tmp_path, cli):
    results = tmp_path / "results"
    done = cli("-m", "sweep=calibration", "dataset=wine", "trainer.epochs=4", "seeds=[0,1,2]", "optimizer.lr=[0.1,0.3]",
               f"results_dir={results}", "+calibration_loss=cce,smoothing_0.1,focal_gamma_3", "progress=false")
    assert done.returncode == 0, done.stderr
    gamma = cli("-m", "loss=categorical_focal", "loss.gamma=1,2", "dataset=wine", "trainer.epochs=2", "seeds=[0]",
                f"results_dir={results}", "group=gamma", "progress=false")
    assert gamma.returncode == 0, gamma.stderr
    built = cli(str(results), module="bench.report")
    assert built.returncode == 0, built.stderr
    page = (results / "report" / "index.html").read_text()
    assert "calibration-reliability.png" in page and "test calibration (mean and 95 % CI" in page
    assert "softmax+cce(label_smoothing=0.1)" in page and "softmax+categorical_focal(gamma=1)" in page
    text = (results / "report" / "findings.txt").read_text()
    assert "[calibration] Answer: On wine (" in text and "test ECE of softmax+cce" in text
    from bench.store import load

    runs, _ = load(results)
    cal = runs[runs["group"] == "calibration"]
    assert cal["temperature"].notna().all() and (cal["temperature"] > 0).all()
    assert all(math.isfinite(v) for v in cal["test_ece_scaled"])
