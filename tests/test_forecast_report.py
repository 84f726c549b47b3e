"""The demand answer and the "What each loss forecasts" section, from a real small sweep of the demand
preset: every number in the answer recomputed from `store.load()` with plain numpy/scipy."""
import math
import re

import numpy as np
import pytest
from scipy import stats as st

from bench.store import load

LOSSES = "mse,mae,mape,pinball90"


@pytest.fixture(scope="module")
def demand_results(tmp_path_factory, worker_id):
    """The demand preset narrowed: 4 losses on their own output, 3 seeds, 4 epochs at one learning rate;
    trained once for the test session."""
    from conftest import built_once

    return built_once(tmp_path_factory, worker_id, "demand-results", train) / "results"


def train(root):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench.run", "-m", "sweep=demand", "dataset=demand", f"loss={LOSSES}",
                           "activation=auto",
                           "seeds=[0,1,2]", "trainer.epochs=4", "optimizer.lr=0.003", "dataset.n_samples=3000",
                           f"dataset.cache_dir={root / 'cache'}", f"results_dir={root / 'results'}", "progress=false"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


def geometric(values):
    """(geometric mean, t interval of the logs exponentiated), by hand with scipy."""
    logs = np.log(np.asarray(values, dtype=float))
    half = st.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
    return math.exp(logs.mean()), math.exp(logs.mean() - half), math.exp(logs.mean() + half)


def test_the_demand_answer_states_each_forecast_against_its_exact_optimum(demand_results):
    from bench.report import answers, tables, tuned

    runs, history = load(demand_results)
    every = tables.prepare(runs, demand_results)
    chosen = every[every["chosen"]]
    said = answers.answers(chosen, tables.ranking(chosen), tables.significance(chosen), history, lambda g, s: s,
                           tuned.fixed_view(every))
    (demand,) = said
    text = [t for t, _ in demand["sentences"]]
    what = next(t for t in text if "against the exact optimum it elicits" in t)
    # the optimum against the mean at s = 0.5: e^{-1.5 s^2}, e^{-s^2/2}, 1, e^{s z_0.9 - s^2/2}; lowest first
    ladder = [("mape", "the β-median (β = −1)", math.exp(-0.375)), ("mae", "the median", math.exp(-0.125)),
              ("mse", "the mean", 1.0), ("pinball(0.9)", "the 0.9-quantile", math.exp(0.5 * st.norm.ppf(0.9) - 0.125))]
    at = [what.index(f"{loss}'s optimum is {optimum}") for loss, optimum, _ in ladder]
    assert at == sorted(at), what
    for loss, optimum, expected in ladder:
        rows = chosen[chosen["loss"] == loss]
        ratio, lo, hi = geometric(rows["test_forecast_vs_optimum"])
        assert f"linear+{loss} {ratio:#.3g}× ({lo:#.3g}–{hi:#.3g})" in what, (loss, what)
        assert rows["test_optimum_vs_mean"].to_numpy() == pytest.approx(expected, rel=1e-9)
        if loss != "mse":
            assert f"{loss}'s optimum is {optimum}, {expected:#.3g}× the mean: linear+{loss}" in what
    # the coverage of the 0.9 quantile, with the exact quantile's coverage of the same rows
    coverage = next(t for t in text if t.startswith("Coverage of the quantiles"))
    rows = chosen[chosen["loss"] == "pinball(0.9)"]
    assert f"covers {rows['test_coverage_0.9'].mean():#.3g} of the test targets at level 0.9" in coverage
    assert f"the exact 0.9-quantile covers {rows['test_coverage_optimum_0.9'].mean():#.3g}" in coverage
    # best per metric: the lowest mean test value, by pandas
    best = next(t for t in text if t.startswith(("Each metric is won", "The best per metric")))
    for metric in ("rmse", "mae", "mape", "wape", "mase"):
        means = chosen.groupby("config")[f"test_{metric}"].mean()
        assert f"{metric.upper()} {means.idxmin()} (" in best, (metric, best)
    assert text[-1].startswith("What to train on:") and "pinball loss at 0.9" in text[-1]


def test_the_forecast_section_and_figure_are_on_the_page(demand_results, tmp_path):
    from bench.report.page import build

    index = build(demand_results, tmp_path / "report", workers=1)
    html = index.read_text()
    assert "What each loss forecasts" in html and "loss × metric" in html
    assert (tmp_path / "report" / "demand-forecast.png").is_file()
    assert re.search(r"linear\+pinball\(0\.9\)</td><td[^>]*>the 0\.9-quantile</td>", html)
