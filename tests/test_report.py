"""The report (bench.report): its numbers against independent pandas/scipy code over store.load()
frames, its page in a real headless Chromium, and its build from a real small sweep.

The results tree here is written by hand in the documented layout (results/README.md) so every
number is known; expectations are recomputed from `store.load()` with plain numpy/scipy, never
with the report's helpers.
"""
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bench import stats as bstats
from bench.report.__main__ import main as report_main
from bench.report.page import build
from bench.store import load

# ---------------------------------------------------------------------------------------------
# a results tree written by hand: (group, dataset, task, metric, higher, target) -> configs

NEVER = None  # epochs_to_target of a seed that never reached the target
TREE = {
    ("g1", "toy", "multiclass", "accuracy", True, 0.8): {
        ("softmax", "cce"): ([0.90, 0.92, 0.91, 0.93, 0.89], [3, 4, 3, 5, 4]),
        ("sigmoid", "bce"): ([0.88, 0.90, 0.87, 0.91, 0.89], [5, 6, 5, 7, 6]),
        # seed 3 diverged (no test value, never reached), seed 2 never reached the target
        ("sigmoid", "mse"): ([0.70, 0.74, 0.72, None, 0.69], [9, 11, NEVER, NEVER, 10]),
        ("linear", "bce"): "loss=bce needs probabilities; use activation=sigmoid or softmax, not linear",
    },
    ("g1", "reg", "regression", "rmse", False, 0.5): {
        ("linear", "mse"): ([0.40, 0.42, 0.41, 0.43, 0.39], [2, 3, 2, 3, 2]),
        ("linear", "mae"): ([0.45, 0.47, 0.44, 0.46, 0.48], [4, 5, 4, 6, 5]),
        ("linear", "huber"): ([0.41, 0.40, 0.42, 0.44, 0.40], [2, 3, 3, 3, 2]),
    },
    ("g2", "bin", "binary", "accuracy", True, 0.85): {
        ("sigmoid", "bce"): ([0.95, 0.96, 0.94], [2, 2, 3]),
        ("sigmoid", "mse"): ([0.93, 0.95, 0.94], [4, 5, 4]),
        ("softmax", "cce"): ([1.0, 0.99, 0.93], [3, 3, 4]),  # its t interval reaches past 1: clipped
    },
}
EPOCHS = 8


def _history(task, metric, finals, epochs_to_target, diverged):
    """Curves that rise (or fall) to each seed's final value; NaN after a divergence."""
    rows = []
    for seed, (final, hit) in enumerate(zip(finals, epochs_to_target)):
        tau = (hit or EPOCHS) / 2.5
        for epoch in range(EPOCHS + 1):
            level = 1 - math.exp(-epoch / tau)
            for split in ("train", "val"):
                row = {"seed": seed, "epoch": epoch, "step": 10 * epoch, "train_seconds": 0.1 * epoch,
                       "split": split, "loss": 1 - level, "out_grad": math.exp(-epoch / tau)}
                end = final if final is not None else 0.5
                if task == "regression":
                    row.update(rmse=1.5 - (1.5 - end) * level, mae=1.2 - (1.2 - end) * level)
                else:
                    row.update(accuracy=0.25 + (end - 0.25) * level, binary_accuracy=0.75 + 0.2 * level)
                if seed in diverged and epoch >= 5:
                    row.update({k: math.nan for k in ("loss", "out_grad", "accuracy", "binary_accuracy")})
                rows.append(row)
    return pd.DataFrame(rows)


def write_tree(root: Path) -> Path:
    """Write TREE in the documented layout: config.yaml, history.parquet, summary.json (last)."""
    for (group, dataset, task, metric, higher, target), configs in TREE.items():
        for (activation, loss), spec in configs.items():
            rid = f"{dataset}-{activation}-{loss}"
            path = root / group / rid
            path.mkdir(parents=True)
            (path / "config.yaml").write_text(f"dataset: {{name: {dataset}}}\nloss: {{name: {loss}}}\n")
            facts = {"run_id": rid, "group": group, "dataset": dataset, "task": task, "model": "mlp",
                     "activation": activation, "loss": loss, "optimizer": "sgd", "lr": 0.1, "metric": metric,
                     "higher_is_better": higher, "target": target, "epochs": EPOCHS, "steps_per_epoch": 10,
                     "seconds": 1.0, "environment": {"torch": "x", "device": "cpu"}}
            if isinstance(spec, str):
                summary = {**facts, "status": "invalid", "reason": spec, "per_seed": []}
            else:
                finals, hits = spec
                diverged = {s for s, v in enumerate(finals) if v is None}
                per_seed = [{"seed": s, "status": "diverged" if s in diverged else "done",
                             "diverged_step": 50 if s in diverged else None,
                             "test": {} if v is None else {metric: v},
                             "best_val": v, "epochs_to_target": e, "steps_to_target": None if e is None else 10 * e,
                             "seconds_to_target": None if e is None else 0.1 * e, "auc": 0.5,
                             "train_seconds": 0.8} for s, (v, e) in enumerate(zip(finals, hits))]
                _history(task, metric, finals, hits, diverged).to_parquet(path / "history.parquet", index=False)
                summary = {**facts, "status": "diverged" if diverged else "done",
                           "reason": f"{len(diverged)} of {len(finals)} seeds diverged" if diverged else None,
                           "per_seed": per_seed}
            (path / "summary.json").write_text(json.dumps(summary))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id):
    """(results_dir, report_dir) with the report of TREE, built once for the test session."""
    from conftest import built_once

    def make(folder):
        build(write_tree(folder / "results"), folder / "results" / "report")

    root = built_once(tmp_path_factory, worker_id, "report-results", make) / "results"
    return root, root / "report"


# ---------------------------------------------------------------------------------------------
# independent expectations from store.load() frames

def pad4(x):
    """The report's 4-significant-digit style with trailing zeros kept."""
    text = f"{x:#.4g}"
    return text[:-1] if text.endswith(".") else text


def expected_rows(root):
    runs, _ = load(root)
    trained = runs[runs["status"].isin(["done", "diverged"])]
    rows = {}
    for (group, dataset, activation, loss), r in trained.groupby(["group", "dataset", "activation", "loss"]):
        metric = r["metric"].iloc[0]
        v = pd.to_numeric(r[f"test_{metric}"], errors="coerce").dropna().to_numpy(float)
        half = st.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
        epochs = pd.to_numeric(r["epochs_to_target"], errors="coerce").fillna(np.inf).to_numpy(float)
        # the interval, clipped to what the metric can take (accuracy at most 1, rmse at least 0)
        low, high = {"accuracy": (0, 1), "rmse": (0, math.inf)}.get(metric, (-math.inf, math.inf))
        rows[(group, dataset, f"{activation}+{loss}")] = {
            "mean": v.mean(), "lo": max(low, v.mean() - half), "hi": min(high, v.mean() + half), "n": len(v),
            "epochs_median": float(np.median(epochs)), "reached": int(np.isfinite(epochs).sum()),
            "diverged": int((r["seed_status"] == "diverged").sum()), "seeds": len(r),
            "higher": bool(r["higher_is_better"].iloc[0]), "metric": metric, "epochs": epochs,
            "values": dict(zip(r["seed"].astype(int), pd.to_numeric(r[f"test_{metric}"], errors="coerce")))}
    return rows


@pytest.mark.slow
def test_ranking_matches_store_frames(built):
    root, out = built
    expected = expected_rows(root)
    table = pd.read_csv(out / "ranking.csv")
    html = (out / "index.html").read_text()
    trained = table[table["seeds"] > 0]
    assert len(trained) == len(expected)
    for _, row in trained.iterrows():
        e = expected[(row["group"], row["dataset"], row["config"])]
        for key in ("mean", "lo", "hi", "epochs_median"):
            assert row[key] == pytest.approx(e[key], rel=1e-9), (row["config"], key)
        for key in ("n", "reached", "diverged", "seeds"):
            assert row[key] == e[key], (row["config"], key)
        assert f"{pad4(e['mean'])} ({pad4(e['lo'])}–{pad4(e['hi'])})" in html
    assert (trained["hi"] == 1).any() and (trained[trained["metric"] == "accuracy"]["hi"] <= 1).all()
    # ranks follow the metric's direction within each dataset
    for (group, dataset), t in trained.groupby(["group", "dataset"]):
        higher = next(e["higher"] for k, e in expected.items() if k[:2] == (group, dataset))
        best = max if higher else min
        top = t.loc[t["rank"] == 1, "config"].item()
        assert top == best((k[2] for k in expected if k[:2] == (group, dataset)),
                           key=lambda c: expected[(group, dataset, c)]["mean"])
    # the invalid pair is listed, unranked, with its reason; the diverged seed is counted
    invalid = table[table["status"] == "invalid"]
    assert invalid["config"].tolist() == ["linear+bce"] and invalid["rank"].isna().all()
    assert "loss=bce needs probabilities" in html and "4 done, 1 of 5 diverged" in html


def test_findings_match_store_frames(built):
    root, out = built
    expected = expected_rows(root)
    text = (out / "findings.txt").read_text()
    for group, dataset in [("g1", "toy"), ("g1", "reg"), ("g2", "bin")]:
        mine = {k[2]: e for k, e in expected.items() if k[:2] == (group, dataset)}
        higher = next(iter(mine.values()))["higher"]
        best = (max if higher else min)(mine, key=lambda c: mine[c]["mean"])
        b = mine[best]
        assert (f"[{group}] {dataset}: Best final test {b['metric']} ({'higher' if higher else 'lower'} is better): "
                f"{best} at {pad4(b['mean'])} (95 % CI {pad4(b['lo'])}–{pad4(b['hi'])}, {b['n']} seeds).") in text
        fastest = min(mine, key=lambda c: mine[c]["epochs_median"])
        assert f"{fastest} reaches val {b['metric']}" in text
        assert (f"first: in {mine[fastest]['epochs_median']:g} epochs (median over {mine[fastest]['seeds']} seeds; "
                f"the fastest of {len(mine)}, selected after the fact)") in text
    # toy: the slowest that gets there, sigmoid+mse (median 11 of [9, 10, 11, never, never]), against the
    # canonical softmax+cce: never counts at the 8 epochs trained, so the ratio is a lower bound
    fast, slow, bce = (expected[("g1", "toy", c)] for c in ("softmax+cce", "sigmoid+mse", "sigmoid+bce"))
    logs = {name: np.log(np.where(np.isinf(e["epochs"]), EPOCHS, e["epochs"]) / fast["epochs"])
            for name, e in (("mse", slow), ("bce", bce))}
    ps = {name: st.ttest_1samp(v, 0).pvalue for name, v in logs.items()}
    level = 1 - 0.05 / (1 if ps["mse"] > ps["bce"] else 2)  # Holm's step for sigmoid+mse (both rejected here)
    assert max(ps.values()) < 0.05 and min(ps.values()) < 0.025
    v = logs["mse"]
    lo, hi = np.exp(st.t.interval(level, len(v) - 1, loc=v.mean(), scale=st.sem(v)))
    holm = min(1.0, max(ps["mse"] * (1 if ps["mse"] > ps["bce"] else 2), min(ps.values()) * 2))
    assert (f"The slowest that gets there in its median seed, sigmoid+mse, takes 11: at least {np.exp(v.mean()):.3g}× "
            f"the canonical's epochs ({100 * level:.3g} % CI of the capped ratio {lo:#.3g}–{hi:#.3g}×; Holm-adjusted "
            f"p = {holm:.2g} over 2 comparisons, 5 paired replicates): slower.") in text, text
    # divergence and the invalid pair are stated
    assert "1 of 15 trained seeds diverged (loss NaN/inf): sigmoid+mse (1 of 5)" in text
    assert "1 configuration invalid, not trained (the reasons are in the ranking table): linear+bce." in text


def test_significance_matches_scipy(built):
    root, out = built
    expected = expected_rows(root)
    sig = pd.read_csv(out / "significance.csv")
    canonical = {"toy": "softmax+cce", "reg": "linear+mse", "bin": "sigmoid+bce"}
    for (group, dataset), s in sig.groupby(["group", "dataset"]):
        ref = expected[(group, dataset, canonical[dataset])]
        # a diverged seed counts as a loss: the worst test value any seed reached on the dataset
        mine = [e for k, e in expected.items() if k[:2] == (group, dataset)]
        finite = [v for e in mine for v in e["values"].values() if np.isfinite(v)]
        worst = max(finite) if not ref["higher"] else min(finite)
        ratio = ref["metric"] == "rmse"  # a positive error is compared as a ratio, on the log scale
        ps, estimates = [], []
        for config in s["config"]:
            e = expected[(group, dataset, config)]
            values = {k: (worst if not np.isfinite(v) else v) for k, v in e["values"].items()}
            seeds = [k for k in values if np.isfinite(values[k]) and np.isfinite(ref["values"][k])]
            x = np.array([values[k] for k in seeds])
            y = np.array([ref["values"][k] for k in seeds])
            if ratio:
                x, y = np.log(x), np.log(y)
            ps.append(st.ttest_rel(x, y).pvalue)
            estimates.append(np.exp((x - y).mean()) if ratio else (x - y).mean())
        order = np.argsort(ps)  # Holm by hand
        holm = np.empty(len(ps))
        running = 0.0
        for i, j in enumerate(order):
            running = max(running, min(1.0, (len(ps) - i) * ps[j]))
            holm[j] = running
        assert s["reference"].eq(canonical[dataset]).all()
        assert s["scale"].eq("ratio" if ratio else "difference").all()
        np.testing.assert_allclose(s["estimate"], estimates, rtol=1e-9)
        np.testing.assert_allclose(s["p"], ps, rtol=1e-6)
        np.testing.assert_allclose(s["p_holm"], holm, rtol=1e-6)
        higher = ref["higher"]
        up = [e > 1 if ratio else e > 0 for e in estimates]
        verdicts = ["tie" if p >= 0.05 else ("better" if u == higher else "worse") for p, u in zip(holm, up)]
        assert s["verdict"].tolist() == verdicts
    # sigmoid+mse is clearly worse than softmax+cce on toy, stated in words
    assert "sigmoid+mse is worse than softmax+cce" in (out / "index.html").read_text()
    assert sig.set_index(["dataset", "config"]).loc[("toy", "sigmoid+mse"), "verdict"] == "worse"


def test_sections_only_where_they_apply(built):
    _, out = built
    html = (out / "index.html").read_text()
    # g2 has no sigmoid+BCE on multiclass data (no pitfall section); neither group has the 5 problems a
    # performance profile needs (the ranking's epochs-to-target column says it)
    g2 = html[html.index('<section class="preset" id="g2"'):]
    assert 'id="g2-pitfall"' not in g2 and "g2-pitfall.png" not in html and "g1-pitfall.png" in html
    assert "-profile.png" not in html and "performance profile" not in html
    assert 'class="empty"' not in html  # no section is left saying it has nothing to show
    for section in re.findall(r'<section id="([^"]+)">(.*?)</section>', html, re.S):
        assert re.search(r"<(img|table|li)\b|class=\"answer\"", section[1]), f"section {section[0]} shows nothing"
    assert "1 dataset," in html and "1 datasets" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from the network


def test_stats_helpers_against_scipy():
    x = np.array([0.91, 0.88, 0.93, 0.90, 0.95])
    y = np.array([0.90, 0.85, 0.91, 0.91, 0.90])
    d = bstats.compare(x, y, "difference")
    interval = st.t.interval(0.95, 4, loc=(x - y).mean(), scale=st.sem(x - y))
    assert (d["lo"], d["hi"]) == pytest.approx(interval, rel=1e-9)
    assert d["p"] == pytest.approx(st.ttest_rel(x, y).pvalue, rel=1e-9)
    # the ratio: exp of the t interval of the log ratios, the test of log x = log y
    r = bstats.compare(x, y, "ratio")
    logs = np.log(x / y)
    assert r["estimate"] == pytest.approx(np.exp(logs.mean()))
    assert (r["lo"], r["hi"]) == pytest.approx(np.exp(st.t.interval(0.95, 4, loc=logs.mean(), scale=st.sem(logs))))
    assert r["p"] == pytest.approx(st.ttest_rel(np.log(x), np.log(y)).pvalue, rel=1e-9)
    with pytest.raises(ValueError, match="positive"):
        bstats.compare([1.0, 0.0], [1.0, 2.0], "ratio")
    # the interval equals the t formula (mean ± t quantile × standard error), several arrays
    rng = np.random.default_rng(7)
    for n in (2, 3, 5, 10, 40):
        a, b = rng.normal(0.8, 0.05, n), rng.normal(0.78, 0.05, n)
        diff = a - b
        half = st.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)
        got = bstats.compare(a, b)
        assert (got["estimate"], got["lo"], got["hi"]) == pytest.approx((diff.mean(), diff.mean() - half,
                                                                         diff.mean() + half), rel=1e-9)
        assert got["n"] == n and got["p"] == pytest.approx(2 * st.t.sf(abs(diff.mean()) / (half / st.t.ppf(
            0.975, n - 1)), n - 1), rel=1e-9)
    # pairs with a missing side are dropped; no spread: p is 1 (all equal) or 0 (all shifted)
    gaps = bstats.compare([1.0, np.nan, 3.0, 4.0], [0.5, 2.0, np.inf, 3.0])
    assert gaps["n"] == 2 and gaps["estimate"] == pytest.approx(0.75)
    assert bstats.compare([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
    assert bstats.compare([2.0, 3.0], [1.0, 2.0])["p"] == 0.0
    assert bstats.t_interval([1.0, 2.0, 3.0, np.nan]) == pytest.approx(
        st.t.interval(0.95, 2, loc=2, scale=st.sem([1, 2, 3])))
    assert bstats.holm([0.01, 0.04, 0.03, np.nan]).tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    b = bstats.band(pd.DataFrame({"g": ["a"] * 4 + ["b"], "v": [1.0, 2.0, 3.0, np.nan, 5.0]}), ["g"], "v")
    a, one = b.set_index("g").loc["a"], b.set_index("g").loc["b"]
    assert (a["mean"], a["n"]) == (2.0, 3)
    assert (a["lo"], a["hi"]) == pytest.approx(st.t.interval(0.95, 2, loc=2, scale=st.sem([1, 2, 3])))
    assert one["n"] == 1 and math.isnan(one["lo"])
    # a time never reached counts at the budget: the ratio of capped times is a lower bound
    c = bstats.compare_times([6, 6, np.inf], [2, 2, 2], 10, 10)
    assert c["estimate"] == pytest.approx(np.exp(np.mean(np.log([3, 3, 5])))) and c["bound"] == "at least"
    assert c["never_x"] == 1 and bstats.compare_times([2, 2, 2], [6, 6, np.inf], 10, 10)["bound"] == "at most"
    assert bstats.compare_times([np.inf, 3], [np.inf, 2], 10, 10)["bound"] == "capped"
    assert bstats.compare_times([np.inf, np.inf], [np.inf, np.inf], 10, 10)["note"].startswith("neither reached")
    assert bstats.compare_times([np.inf, 3], [2, 2], np.nan, 10)["note"].endswith("no recorded budget")


def test_cli_errors_and_empty_results(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        report_main([str(tmp_path / "nope")])
    assert stop.value.code == 2 and "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stop:  # the CLI: a folder without runs is the user's mistake
        report_main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "holds no runs" in capsys.readouterr().err
    from bench.report.page import build

    build(tmp_path / "empty", tmp_path / "out")  # the page itself still says so
    html = (tmp_path / "out" / "index.html").read_text()
    assert "No complete runs" in html and "<img" not in html


# ---------------------------------------------------------------------------------------------
# the page in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
# injected into a copy of the page: record errors, then write what the images did into the DOM
PROBE = """<script>
window.__errors = [];
(function () { var e = console.error; console.error = function () {
  __errors.push([].slice.call(arguments).join(' ')); e.apply(console, arguments); }; })();
window.addEventListener('error', function (e) {
  __errors.push(e.message || ('failed to load ' + (e.target.src || e.target.href))); }, true);
window.addEventListener('load', function () {
  var p = document.createElement('pre'); p.id = '__probe';
  p.textContent = JSON.stringify({errors: __errors, height: document.documentElement.scrollHeight,
    images: [].map.call(document.images, function (i) { return {src: i.getAttribute('src'), width: i.naturalWidth}; })});
  document.body.appendChild(p); });
</script>"""


def browse(index: Path, screenshot: Path) -> dict:
    """Open `index` in headless Chromium: {"images", "errors", "height"}; writes a full-page PNG."""
    probe = index.with_name(f"_probe-{os.getpid()}.html")  # workers may open one shared page at once
    probe.write_text(index.read_text().replace("<head>", "<head>" + PROBE, 1))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=10000"]
    try:
        done = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
        found = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
        assert found, f"the probe did not run: {done.stderr[-2000:]}"
        result = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        # console messages of the page itself (the probe logs nothing)
        result["errors"] += [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
        height = min(max(result["height"], 800), 16000)
        subprocess.run([*flags, f"--window-size=1400,{height}", f"--screenshot={screenshot}", index.as_uri()],
                       capture_output=True, timeout=120, check=True)
    finally:
        probe.unlink(missing_ok=True)
    return result


def check_in_browser(index: Path, screenshot: Path) -> None:
    result = browse(index, screenshot)
    print(f"\nscreenshot of {index}: {screenshot}")
    assert result["images"], "the page has no images"
    broken = [i["src"] for i in result["images"] if i["width"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    assert not result["errors"], result["errors"]
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000


@pytest.mark.slow
@needs_chromium
def test_page_in_chromium(built, tmp_path):
    _, out = built
    check_in_browser(out / "index.html", tmp_path / "report.png")


@pytest.mark.slow
@needs_chromium
def test_real_sweep_report_in_chromium(tmp_path, cli_inline, capsys):
    """A real (tiny) sweep through bench.run, then `python -m bench.report`, then the browser (the two
    commands' entries called in this process: the page is what is checked, not their start-up)."""
    results = tmp_path / "results"
    code, _, err = cli_inline(["-m", "dataset=moons", "loss=mse,bce", "activation=sigmoid", "trainer.epochs=3",
                               "seeds=[0,1]", "progress=false", f"results_dir={results}"], exact=True)
    assert code == 0, err[-3000:]
    report_main([str(results)])
    assert "report: " in capsys.readouterr().out
    index = results / "report" / "index.html"
    html = index.read_text()
    assert "moons" in html and "sigmoid+bce" in html and "sigmoid+mse" in html
    check_in_browser(index, tmp_path / "sweep-report.png")


def test_bias_finding_names_the_under_forecasters_with_their_interval():
    import pandas as pd
    from scipy import stats as st

    from bench.report.findings import bias_findings

    bias = {"linear+mape": [-20.0, -18.0, -22.0, -19.0], "linear+mse": [1.0, -2.0, 0.5, -0.5],
            "linear+mae": [-1.0, 3.0, -2.0, 1.0]}
    runs = pd.DataFrame([{"config": c, "test_bias_pct": v} for c, vs in bias.items() for v in vs])
    (text,) = bias_findings(runs)
    # each against 0, Holm over the 3 configurations: mape has the smallest p, tested at 0.05 / 3
    ps = {c: st.ttest_1samp(v, 0).pvalue for c, v in bias.items()}
    assert min(ps, key=ps.get) == "linear+mape" and ps["linear+mape"] < 0.05 / 3
    x = np.array(bias["linear+mape"])
    lo, hi = st.t.interval(1 - 0.05 / 3, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert (f"Holm-adjusted over 3 configurations): under-forecasting: linear+mape {x.mean():+.1f} % "
            f"(98.3 % CI {lo:.3g} to {hi:.3g})") in text, text
    assert "linear+mae" not in text  # not distinguishable from 0
    assert "For comparison, linear+mse" in text
    # nothing biased: nothing said
    assert bias_findings(runs[runs["config"] != "linear+mape"]) == []


def test_terminal_table_is_the_reports_ranking(built, monkeypatch, capsys):
    """`python -m bench.results` prints the rows of tables.ranking, in its order (one definition)."""
    from bench import results
    from bench.report import tables

    root, out = built
    calls = []
    real = tables.ranking
    monkeypatch.setattr(tables, "ranking", lambda runs, *more: calls.append(len(runs)) or real(runs, *more))
    assert results.main([str(root)]) == 0
    assert calls, "bench.results did not rank through bench.report.tables.ranking"
    printed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    ranked = pd.read_csv(out / "ranking.csv")
    assert printed == ranked[ranked["seeds"] > 0]["config"].tolist()
