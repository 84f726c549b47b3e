"""The report compares losses within a setting (a knob value), never pooled over it; one
epochs-to-target for bench.results, ranking.csv and the page; diverged seeds rank last; epoch-0
targets; every figure title fits. Expectations are written by hand from the tree below."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bench import stats as bstats

# contamination -> loss -> (test rmse per seed, epochs_to_target per seed; None = never reached)
# Pooled over the two levels huber has the lower mean (0.325 vs 0.65) and mse the best single value
# (0.20): both pooled views pick one winner; per level, mse wins clean data and huber wins at 0.3.
TREE = {
    0.0: {"mse": ([0.20, 0.21, 0.19, 0.20], [2, 3, 2, 2]), "huber": ([0.25, 0.26, 0.24, 0.25], [3, 4, 3, 3])},
    0.3: {"mse": ([1.10, 1.05, 1.15, 1.10], [None, None, 9, None]), "huber": ([0.40, 0.41, 0.39, 0.40], [4, 5, 4, 0])},
}


def write_tree(root: Path) -> Path:
    for level, losses in TREE.items():
        for loss, (values, hits) in losses.items():
            rid = f"c{level}-{loss}"
            path = root / "outliers" / rid
            path.mkdir(parents=True)
            (path / "config.yaml").write_text(f"dataset: {{name: outliers, contamination: {level}}}\n"
                                              f"loss: {{name: {loss}}}\n")
            per_seed = [{"seed": s, "status": "done", "test": {"rmse": v, "bias_pct": 0.0}, "best_val": v,
                         "epochs_to_target": e, "steps_to_target": None if e is None else 10 * e,
                         "seconds_to_target": None if e is None else 0.1 * e, "auc": 1.0, "train_seconds": 1.0}
                        for s, (v, e) in enumerate(zip(values, hits))]
            summary = {"run_id": rid, "group": "outliers", "dataset": "outliers", "task": "regression",
                       "model": "mlp", "activation": "linear", "loss": loss, "optimizer": "sgd", "lr": 0.1,
                       "metric": "rmse", "higher_is_better": False, "target": 0.5, "status": "done",
                       "reason": None, "per_seed": per_seed}
            (path / "summary.json").write_text(json.dumps(summary))
            # a trained run's history (store.load leaves a run without one out): each seed's val curve
            # falls to its test value by the last epoch
            pd.DataFrame([{"seed": s, "epoch": epoch, "step": 10 * epoch, "train_seconds": 0.1 * epoch,
                           "split": "val", "loss": 1.0, "rmse": v + (2 - epoch) * 0.1, "out_grad": 0.1}
                          for s, v in enumerate(values) for epoch in range(3)]).to_parquet(
                path / "history.parquet", index=False)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id):
    from bench.report.page import build
    from conftest import built_once

    def make(folder):
        build(write_tree(folder), folder / "report", workers=1)

    root = built_once(tmp_path_factory, worker_id, "knobs-results", make)
    return root, root / "report"


@pytest.mark.slow
def test_losses_are_compared_at_each_contamination_never_pooled(built):
    root, out = built
    table = pd.read_csv(out / "ranking.csv")
    winners = table[table["rank"] == 1].set_index("setting")["loss"].to_dict()
    assert winners == {"dataset.contamination=0.0": "mse", "dataset.contamination=0.3": "huber"}
    # pooled, the winner would be the same at both levels: the test tree really discriminates
    pooled = {loss: np.mean([v for lvl in TREE.values() for v in lvl[loss][0]]) for loss in ("mse", "huber")}
    assert min(pooled, key=pooled.get) == "huber" and min(
        (v, loss) for lvl in TREE.values() for loss, (vs, _) in lvl.items() for v in vs)[1] == "mse"
    # significance: one family per level, each against mse at the same level
    sig = pd.read_csv(out / "significance.csv")
    assert sorted(sig["setting"]) == ["dataset.contamination=0.0", "dataset.contamination=0.3"]
    for _, row in sig.iterrows():
        level = float(row["setting"].split("=")[1])
        x, y = np.array(TREE[level]["huber"][0]), np.array(TREE[level]["mse"][0])
        assert row["reference"] == f"linear+mse [{row['setting']}]"
        # rmse is compared as a ratio: the geometric mean of the paired ratios, t on the log ratios
        assert row["scale"] == "ratio" and row["estimate"] == pytest.approx(np.exp(np.mean(np.log(x / y))))
        assert row["p"] == pytest.approx(st.ttest_rel(np.log(x), np.log(y)).pvalue)
    # the answer: at 0.3, huber's rmse is that ratio of mse's; at 0.0 mse is best
    text = (out / "findings.txt").read_text()
    x, y = np.array(TREE[0.3]["huber"][0]), np.array(TREE[0.3]["mse"][0])
    ratio = np.exp(np.mean(np.log(x / y)))
    assert f"At dataset.contamination=0.3, huber's test rmse is {ratio:.3g}× mse's (95 % CI" in text
    assert re.search(r"At dataset\.contamination=0\.0, huber's test rmse is [\d.]+× mse's .*"
                     r"the best mean is linear\+mse", text)
    assert text.startswith("[outliers] Question: when does Huber (or MAE) beat MSE?")
    # every label says its level: findings titles, table titles, heatmap panels (one per level)
    html = (out / "index.html").read_text()
    assert "outliers at dataset.contamination=0.3 — test rmse" in html
    assert "best over the other settings" not in html


def test_the_three_epochs_to_target_readers_agree(built, capsys):
    from bench import results

    root, out = built
    table = pd.read_csv(out / "ranking.csv")
    html = (out / "index.html").read_text()
    assert results.main([str(root)]) == 0
    printed = capsys.readouterr().out
    for level, losses in TREE.items():
        for loss, (_, hits) in losses.items():
            expected = float(np.median([np.inf if h is None else h for h in hits]))  # by hand
            config = f"linear+{loss} [dataset.contamination={level}]"
            assert table.set_index("config").at[config, "epochs_median"] == expected
            shown = "never" if math.isinf(expected) else f"{expected:g}"
            line = next(ln for ln in printed.splitlines() if config in ln)
            assert line.split()[-2] == shown, line  # "... epochs reached"
            ranking = html[html.index('<section id="outliers-ranking">'):]
            row = re.search(re.escape(config) + r"</td>(.*?)</tr>", ranking, re.S).group(1)
            cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
            assert cells[2] == shown, cells  # value, seeds, epochs, ...


def test_diverged_seeds_rank_last_and_count_as_losses():
    from bench.report.tables import ranking, significance

    rows = []
    for config, values, status in [("a", [0.90, 0.91, 0.92], ["done"] * 3),  # best mean, but a seed diverged
                                   ("b", [0.80, 0.81, 0.82], ["done"] * 3),
                                   ("c", [0.95, 0.96, None], ["done", "done", "diverged"])]:
        for seed, (v, s) in enumerate(zip(values, status)):
            rows.append({"group": "g", "dataset": "d", "config": f"softmax+{config}", "task": "multiclass",
                         "activation": "softmax", "loss": config, "extra": "", "setting": "", "metric": "accuracy",
                         "higher_is_better": True, "target": 0.5, "status": "done", "reason": None, "seed": seed,
                         "seed_status": s, "value": np.nan if v is None else v, "trained": True,
                         "epochs_to_target": 1.0, "seconds_to_target": 0.1, "best_val": v, "auc": 1.0})
    runs = pd.DataFrame(rows)
    ranks = ranking(runs).set_index("loss")["rank"].to_dict()
    assert ranks == {"a": 1, "b": 2, "c": 3}
    # vs softmax+cce: no canonical here; make "a" the canonical by renaming it cce
    runs.loc[runs["loss"] == "a", ["loss", "config"]] = ["cce", "softmax+cce"]
    sig = significance(runs).set_index("config")
    # c's diverged seed 2 takes the worst accuracy on the dataset (0.80): diffs 0.05, 0.05, -0.12
    x, y = np.array([0.95, 0.96, 0.80]), np.array([0.90, 0.91, 0.92])
    assert sig.at["softmax+c", "n"] == 3 and sig.at["softmax+c", "estimate"] == pytest.approx((x - y).mean())


def test_epoch_zero_targets_in_ratios_and_profiles():
    from bench.report.tables import profile_frame

    # a target met at epoch 0 counts as 1 epoch: the ratio against it is a lower bound ("at least")
    c = bstats.compare_times([3, 4, 5, 4, 3], [0, 0, 1, 0, 0], np.inf, np.inf)
    logs = np.log([3, 4, 5, 4, 3])
    assert c["estimate"] == pytest.approx(np.exp(logs.mean())) and c["bound"] == "at least"
    assert (c["lo"], c["hi"]) == pytest.approx(np.exp(st.t.interval(0.95, 4, loc=logs.mean(), scale=st.sem(logs))))
    assert bstats.compare_times([6, 6, 6], [2, 2, 2], 10, 10)["estimate"] == pytest.approx(3.0)  # ordinary ratios
    table = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "config": ["x", "y", "x", "y"],
                          "epochs_median": [0.0, 3.0, 2.0, np.inf]})
    p = profile_frame(table, "epochs_median")
    assert p.loc["a", "x"] == 1.0 and p.loc["a", "y"] == 3.0 and p.loc["b", "x"] == 1.0 and np.isinf(p.loc["b", "y"])


@pytest.mark.slow
def test_every_figure_title_fits_inside_its_figure(tmp_path, monkeypatch):
    """Build a report whose figures have long titles and narrow panels; every title (figure and axes)
    lies inside its figure when saved."""
    from bench.report import figures
    from bench.report.figures import (anatomy, curves, forest, heatmaps, knobs, pitfall, profiles, scores,
                                      sensitivity, speed)
    from bench.report.page import build

    seen = []

    def checking_save(fig, out, name):
        figures.fit_titles(fig)
        seen.append((name, figures.clipped(fig)))
        return real(fig, out, name)

    real = figures.save
    for module in (anatomy, curves, forest, heatmaps, knobs, pitfall, profiles, scores, sensitivity, speed):
        monkeypatch.setattr(module, "save", checking_save)
    root = write_tree(tmp_path / "results")
    build(root, tmp_path / "report", workers=1)
    assert any(name.endswith("knobs.png") for name, _ in seen)
    assert [(name, bad) for name, bad in seen if bad] == []
    # a deliberately long title on a narrow figure is wrapped to fit
    import matplotlib

    matplotlib.use("Agg")
    fig, _, _ = figures.grid(1, 1, panel=(1.0, 1.0), left=0.3, right=0.3, title="x" * 30 + " " + "y" * 60)
    assert figures.clipped(fig)
    figures.fit_titles(fig)
    assert figures.clipped(fig) == []
