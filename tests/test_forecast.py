"""The forecast metrics (bench.forecast) against scikit-learn and hand formulas, and read through a run's
head (a quantile head's levels, its point forecast) by the test summary."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from bench import forecast
from bench.heads import make_head
from bench.metrics import final_metrics


def sample(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3.0, 0.8, n)
    return y, y * rng.lognormal(0.0, 0.3, n)


def test_wape_smape_and_bias_are_the_hand_formulas():
    y, p = sample()
    assert forecast.wape(y, p) == pytest.approx(100 * sum(abs(a - b) for a, b in zip(y, p)) / sum(y), rel=1e-12)
    assert forecast.smape(y, p) == pytest.approx(100 * np.mean([2 * abs(b - a) / (a + b) for a, b in zip(y, p)]),
                                                 rel=1e-12)
    assert forecast.bias(y, p) == pytest.approx(np.mean(p) - np.mean(y), rel=1e-12)
    assert forecast.bias_share(y, p) == pytest.approx(100 * (np.mean(p) / np.mean(y) - 1), rel=1e-12)
    # sMAPE's asymmetry (Hyndman & Koehler 2006): at y = 100 over-forecasting by 50 scores 40 %, under 66.7 %
    assert forecast.smape([100], [150]) == pytest.approx(40) and forecast.smape([100], [50]) == pytest.approx(200 / 3)
    assert forecast.smape([0, 10], [0, 10]) == 0  # 0/0 rows score 0


def test_bias_share_is_undefined_unless_every_target_is_positive():
    # the outliers case: targets of both signs, mean near 0, a share of the mean would explode
    assert forecast.bias_share([-1.0, 1.1], [-1.2, 1.0]) is None and forecast.bias_share([0.0, 2.0], [1, 1]) is None
    assert forecast.bias([-1.0, 1.1], [-1.2, 1.0]) == pytest.approx(-0.15)


def test_mase_is_mae_over_the_training_means_in_sample_mae():
    y, p = sample()
    train = np.random.default_rng(1).lognormal(3.0, 0.8, 300)
    scale = np.mean(np.abs(train - train.mean()))
    assert forecast.naive_scale(train) == pytest.approx([scale], rel=1e-12)
    assert forecast.mase(y, p, forecast.naive_scale(train)) == pytest.approx(skm.mean_absolute_error(y, p) / scale,
                                                                             rel=1e-12)
    # the training mean itself, forecast on the training rows, scores exactly 1
    assert forecast.mase(train, np.full_like(train, train.mean()), forecast.naive_scale(train)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scale is 0"):
        forecast.mase(y, p, forecast.naive_scale(np.full(5, 3.0)))


def test_pinball_coverage_and_crossing_per_level():
    y, _ = sample()
    tau = [0.1, 0.5, 0.9]
    rng = np.random.default_rng(2)
    q = np.stack([np.quantile(y, t) * rng.lognormal(0, 0.8, len(y)) for t in tau], -1)  # [N, L]
    losses = forecast.pinball(y, q, tau)
    for i, t in enumerate(tau):
        assert losses[i] == pytest.approx(skm.mean_pinball_loss(y, q[:, i], alpha=t), rel=1e-12)
        assert forecast.coverage(y, q)[i] == np.mean(y <= q[:, i])
    assert forecast.pinball(y, q[:, 1:2], [0.5])[0] == pytest.approx(skm.mean_absolute_error(y, q[:, 1]) / 2)
    crossed = np.mean((q[:, 1] < q[:, 0]) | (q[:, 2] < q[:, 1]))
    assert 0 < crossed < 1 and forecast.crossing(q) == crossed
    assert forecast.crossing(np.sort(q, -1)) == 0 and forecast.crossing(q[:, :1]) == 0


def test_a_quantile_heads_summary_reads_its_levels_and_its_median_for_the_point_metrics():
    y, _ = sample(100)
    scale = 20.0
    tau = [0.1, 0.5, 0.9]
    head = make_head("regression", 0, 1, "linear", "pinball", {"quantiles": tau})
    z = torch.as_tensor(np.stack([y * f for f in (0.7, 1.05, 1.4)], -1) / scale)  # [N, 3] raw (linear) outputs
    y_stored = torch.as_tensor(y[:, None] / scale)
    final = final_metrics(head, y_stored, z, scale, y_train=y_stored)
    median = y * 1.05
    assert final["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, median)), rel=1e-12)
    assert final["mae"] == pytest.approx(skm.mean_absolute_error(y, median), rel=1e-12)
    for t, factor in zip(tau, (0.7, 1.05, 1.4)):
        assert final[f"pinball_{t:g}"] == pytest.approx(skm.mean_pinball_loss(y, y * factor, alpha=t), rel=1e-12)
        assert final[f"coverage_{t:g}"] == (1.0 if factor > 1 else 0.0)
    assert final["crossing"] == 0.0
    assert "pinball_0.5" not in final_metrics(make_head("regression", 0, 1, "linear", "mae"), y_stored, z[:, :1])


def test_a_run_with_three_levels_records_each_level_against_its_exact_quantile(make_config, tmp_path):
    """One head with levels 0.1, 0.5, 0.9 on log-normal demand (1 seed, 2 epochs): per level its pinball loss,
    coverage and forecast against the exact quantile; the point metrics read the 0.5 level."""
    import contextlib
    import io

    from scipy import stats

    from bench.run import run

    cfg = make_config("dataset=demand", "dataset.distribution=lognormal", "dataset.noise=0.5", "loss=pinball",
                      "loss.quantiles=[0.1,0.5,0.9]", "optimizer=adam", "optimizer.lr=0.01", "seeds=[0]",
                      "trainer.epochs=2", f"dataset.cache_dir={tmp_path / 'cache'}")
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg)
    assert summary["loss"] == "pinball(0.1,0.5,0.9)"
    (test,) = [m["test"] for m in summary["per_seed"]]
    for tau in (0.1, 0.5, 0.9):
        assert 0 <= test[f"coverage_{tau:g}"] <= 1 and test[f"pinball_{tau:g}"] > 0
        # the exact tau-quantile over the conditional mean, e^{s z_tau - s^2/2} at s = 0.5
        assert test[f"optimum_vs_mean_{tau:g}"] == pytest.approx(math.exp(0.5 * stats.norm.ppf(tau) - 0.125), rel=1e-9)
    assert test["forecast_vs_optimum"] == test["forecast_vs_optimum_0.5"] and 0 <= test["crossing"] <= 1
    assert test["coverage_0.1"] < test["coverage_0.9"]
