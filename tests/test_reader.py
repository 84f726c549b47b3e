"""The reader's test: the report of a tree shaped like `make sweep`'s six presets (tests/preset_tree.py),
opened in headless Chromium at 1400 px, read as a practitioner reads it, and its figures read back
from the PNG files.

The report of commit 3910892 (every section unfolded, the answers in prose at the top) drew this tree
as a page 56,218 px tall at 1400 px, with 47 figures and 39 tables, its first figure at 5,043 px
(`python tests/preset_tree.py DIR`, then that commit's `python -m bench.report DIR`, measured with the
probe below); this page, its details folded, must be at most a third of that. What the page claims
is checked against `store.load()` with plain pandas, and each figure's colours against its own pixels.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.store import load
from preset_tree import write_presets

BEFORE = 56_218  # px: the page of this tree before the reader's layout (see the docstring)
SCREENS = 4_000  # px: every verdict and its figure within about three screens
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STORY = ["saturation", "binary_vs_categorical", "classification", "regression", "outliers", "demand"]

# written into a copy of the page: where things are once it is laid out at 1400 px, details folded
PROBE = """<script>
window.addEventListener('load', function () {
  function bottom(e) { var r = e.getBoundingClientRect(); return r.bottom + window.scrollY; }
  var cards = [].map.call(document.querySelectorAll('section.preset'), function (s) {
    var v = s.querySelector('.verdict'), f = s.querySelector('.card-figure img');
    return {id: s.id, verdict: v ? v.textContent.trim() : '', verdict_bottom: v ? bottom(v) : -1,
            figure_bottom: f ? bottom(f) : -1, figure_width: f ? f.naturalWidth : 0};
  });
  var p = document.createElement('pre'); p.id = '__probe';
  p.textContent = JSON.stringify({height: document.documentElement.scrollHeight, width: window.innerWidth,
    cards: cards, folded: [].every.call(document.querySelectorAll('details'), function (d) { return !d.open; }),
    broken: [].filter.call(document.images, function (i) { return !i.naturalWidth; }).map(function (i) {
      return i.getAttribute('src'); })});
  document.body.appendChild(p); });
</script>"""


@pytest.fixture(scope="module")
def page(tmp_path_factory, worker_id):
    """(results folder, report folder, html) of the preset tree, built once for the test session."""
    from bench.report.page import build
    from conftest import built_once

    def make(folder):
        build(write_presets(folder / "results"), folder / "results" / "report", workers=2)

    root = built_once(tmp_path_factory, worker_id, "reader-presets", make) / "results"
    index = root / "report" / "index.html"
    return root, index.parent, index.read_text()


def laid_out(index: Path) -> dict:
    probe = index.with_name(f"_probe-{os.getpid()}.html")  # workers may lay out one shared page at once
    probe.write_text(index.read_text().replace("<head>", "<head>" + PROBE, 1))
    try:
        done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom",
                               probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not run: {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def figures_of(html) -> dict:
    """{number: file} of every figure on the page."""
    return {int(n): src for n, src in re.findall(r'<figure id="fig-(\d+)"[^>]*><img src="([^"]+)"', html)}


def metadata(path: Path) -> dict:
    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text["lossbench"])


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium")
def test_verdicts_and_their_figures_open_the_page_and_the_rest_is_folded(page):
    _, out, html = page
    seen = laid_out(out / "index.html")
    assert seen["width"] == 1400 and seen["folded"] and not seen["broken"]
    assert [c["id"] for c in seen["cards"]] == [s.replace("_", "-") for s in STORY]  # story order
    for card in seen["cards"]:
        assert len(card["verdict"].split()) >= 8, card  # a sentence, not a label
        assert 0 < card["verdict_bottom"] <= SCREENS and 0 < card["figure_bottom"] <= SCREENS, card
    assert seen["height"] <= BEFORE / 3, seen["height"]
    print(f"\npage height with details folded: {seen['height']:.0f} px (before: {BEFORE} px); "
          f"last verdict figure ends at {max(c['figure_bottom'] for c in seen['cards']):.0f} px")


@pytest.mark.slow
def test_every_figure_is_referred_to_by_a_sentence_and_no_two_are_identical(page):
    _, out, html = page
    figures = figures_of(html)
    assert len(figures) >= 20
    assert sorted(figures) == list(range(1, len(figures) + 1))  # numbered, none skipped
    text = re.sub(r"<figure\b.*?</figure>", "", html, flags=re.S)  # a figure's own caption does not count
    for number in figures:
        sentences = [re.sub(r"<[^>]+>", "", p) for p in re.findall(r"<p[^>]*>(.*?)</p>", text, re.S)
                     if f'href="#fig-{number}"' in p]
        assert any(len(s.split()) >= 6 and s.strip().endswith(".") for s in sentences), (number, sentences)
    from PIL import Image

    pixels = {}
    for number, src in figures.items():
        with Image.open(out / src) as image:
            pixels.setdefault(image.convert("RGB").tobytes(), []).append(src)
    assert [s for s in pixels.values() if len(s) > 1] == []
    assert len({(out / src).read_bytes() for src in figures.values()}) == len(figures)


@pytest.mark.slow
def test_one_colour_per_loss_and_one_dash_per_activation_in_every_figure_and_one_scale_per_metric(page):
    from PIL import Image

    _, out, html = page
    colours, dashes, losses_of_colour = {}, {}, {}
    for src in figures_of(html).values():
        drawn = metadata(out / src)
        assert drawn["untagged"] == [], (src, drawn["untagged"])  # every colour on the page means a loss
        for loss, cs in drawn["losses"].items():
            colours.setdefault(loss, set()).update(cs)
            for c in cs:
                losses_of_colour.setdefault(c, set()).add(loss)
        for activation, ds in drawn["activations"].items():
            dashes.setdefault(activation, set()).update(ds)
        # the colours the metadata names are in the image's pixels (lines are drawn opaque)
        with Image.open(out / src) as image:
            rgb = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
        for loss, cs in drawn["losses"].items():
            for c in cs:
                target = np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)])
                assert (np.abs(rgb - target).max(axis=1) <= 12).any(), (src, loss, c)
        # heatmaps: every panel of a metric on one scale, centred, and one colour bar per metric
        if drawn["scales"]:
            by_metric = {}
            for scale in drawn["scales"]:
                by_metric.setdefault(scale["gid"], set()).add((scale["vmin"], scale["vmax"], scale["cmap"]))
            assert all(len(v) == 1 for v in by_metric.values()), (src, by_metric)
            assert all(lo == pytest.approx(-hi) for (lo, hi, _), in by_metric.values()), by_metric
            assert drawn["colorbars"] == len(by_metric), src
    assert colours and all(len(c) == 1 for c in colours.values()), colours
    assert all(len(v) == 1 for v in losses_of_colour.values()), losses_of_colour
    drawn_colours = sorted(next(iter(c)) for c in colours.values())
    assert all(rgb_distance(a, b) >= NEARLY_ALIKE for i, a in enumerate(drawn_colours)
               for b in drawn_colours[i + 1:]), drawn_colours
    assert all(len(d) == 1 for d in dashes.values()), dashes
    assert len({next(iter(d)) for d in dashes.values()}) == len(dashes)  # no two activations share a dash
    assert {"linear", "sigmoid", "softmax", "softplus"} <= set(dashes)
    assert {"mse", "bce", "cce", "mae", "huber", "mape", "log_cosh"} <= set(colours)


def rgb_distance(a: str, b: str) -> float:
    """Euclidean distance of two '#rrggbb' colours in 0-255 RGB."""
    return float(np.linalg.norm([int(a[i:i + 2], 16) - int(b[i:i + 2], 16) for i in (1, 3, 5)]))


NEARLY_ALIKE = 50  # below this two lines of one figure read as one colour (#1f77b4 and #1f78b4 are 1 apart)


def test_no_two_loss_colours_are_nearly_alike():
    from bench.losses import LOSSES
    from bench.report.figures import style

    # every built-in loss at its defaults has a colour of its own (never a hashed one of EXTRA)
    defaults = [loss.label({}) for loss in LOSSES.values()]
    assert [label for label in defaults if label not in style.LOSS_COLOURS] == []
    palette = [*style.LOSS_COLOURS.values(), *style.EXTRA]
    close = [(a, b, round(rgb_distance(a, b))) for i, a in enumerate(palette) for b in palette[i + 1:]
             if rgb_distance(a, b) < NEARLY_ALIKE]
    assert close == []
    # a label of no entry (a custom loss) lands on EXTRA, so it too is far from every listed loss
    assert style.colour("my_loss(alpha=3)") in style.EXTRA


@pytest.mark.slow
def test_figures_compare_within_a_setting_and_appear_only_where_they_apply(page):
    _, out, html = page
    names = set(figures_of(html).values())
    # the saturation pitfall has one panel per offset (never the mean of three settings)
    panels = metadata(out / "saturation-pitfall.png")["panels"]
    assert sorted(panels) == [f"digits · model.out_bias_offset={v}" for v in ("0.0", "4.0", "8.0")]
    # the knob presets draw their metric against the knob, one line per loss
    assert {"saturation-knobs.png", "outliers-knobs.png"} <= names
    assert set(metadata(out / "outliers-knobs.png")["losses"]) == {"mse", "mae", "huber", "log_cosh"}
    # no saturation panel for outputs that cannot saturate; no profile under 5 workloads; anatomy once
    assert not {f"{g}-saturation.png" for g in ("regression", "outliers", "demand")} & names
    assert not [n for n in names if n.endswith("-profile.png")]
    assert [n for n in names if "anatomy" in n] == ["anatomy.png"]
    # the curves overlay the losses a question compares: BCE and CCE in one panel
    drawn = metadata(out / "binary-vs-categorical-curves.png")
    assert set(drawn["losses"]) == {"bce", "cce"} and len(drawn["panels"]) == 4


@pytest.mark.slow
def test_setup_box_and_loss_by_metric_matrix_say_what_the_results_hold(page):
    root, out, html = page
    setup = html[html.index('<section id="setup">'):]
    for fact in ("MLP 64-64, relu", "10 × 32", "5: each its own split, initialisation and batch order", "fixed at 1",
                 "tuned over 3 values, 0.01–1", "tuned over 3 values, 0.001–0.01", "breast_cancer 114",
                 "digits 359",
                 "outliers 400", "dataset.contamination 0.0, 0.1, 0.3", "model.out_bias_offset 0.0, 4.0, 8.0"):
        assert fact in setup, fact
    # the matrix: per dataset every metric of its task, the best mean of each column in bold, as pandas says
    runs, _ = load(root)
    chosen = runs[runs["chosen"] & (runs["group"] == "regression") & (runs["dataset"] == "diabetes")]
    columns = ["test_rmse", "test_mae", "test_mape", "test_bias", "test_bias_pct"]
    means = chosen.groupby(["activation", "loss"])[columns].mean()
    section = html[html.index('id="regression-scores"'):]
    section = section[:section.index("</table>")]
    header = re.findall(r"<th>(.*?)</th>", section)
    assert header == ["configuration", "RMSE (target units)", "MAE (target units)", "MAPE (%)",
                      "bias (target units)", "bias (% of mean target)"]
    rows = {re.sub(r"<[^>]+>", "", r[0]): r for r in
            (re.findall(r"<td[^>]*>(.*?)</td>", tr) for tr in re.findall(r"<tr class=\"\">(.*?)</tr>", section, re.S))}
    bold = {}
    for tr in re.findall(r"<tr class=\"\">(.*?)</tr>", section, re.S):
        classes = re.findall(r"<td class=\"([^\"]*)\"", tr)
        bold[re.findall(r"<td[^>]*>(.*?)</td>", tr)[0]] = [i for i, c in enumerate(classes) if "best" in c]
    assert len(rows) == len(means)
    for k, column in enumerate(columns, start=1):
        best = means[column].abs().idxmin() if column.startswith("test_bias") else means[column].idxmin()
        assert [c for c, cols in bold.items() if k in cols] == ["+".join(best)], column
        for (activation, loss), value in means[column].items():
            assert rows[f"{activation}+{loss}"][k].startswith(f"{value:#.3g}".rstrip(".")), (column, activation, loss)


@pytest.mark.slow
def test_bias_is_in_target_units_and_a_share_only_for_positive_targets(page):
    """The outliers targets are centred on 0: a bias in % of their mean explodes (-55 % for an MSE fit
    with R^2 0.95); the page shows the bias in units there, and the share where targets are positive."""
    root, _, html = page

    def header(section):
        part = html[html.index(f'id="{section}"'):]
        return re.findall(r"<th>(.*?)</th>", part[:part.index("</table>")])

    assert "bias (target units)" in header("outliers-scores") and "bias (% of mean target)" not in header(
        "outliers-scores")
    assert {"bias (target units)", "bias (% of mean target)"} <= set(header("demand-scores"))
    runs, _ = load(root)
    outliers = runs[runs["chosen"] & (runs["group"] == "outliers")]
    assert outliers["test_bias_pct"].isna().all() and outliers["test_bias"].abs().max() < 0.05
    assert "-55.0" not in html[html.index('id="outliers"'):html.index('id="demand"')]


@pytest.mark.slow
def test_head_to_head_rows_are_paired_tests_within_each_setting_adjusted_in_their_family(page):
    """outliers: each row compares two losses at one contamination, paired by replicate: its estimate is
    the mean paired difference (or, where the row gives a ratio, the geometric mean of the paired
    ratios), and its adjusted p lies between the pair's own paired-t p and Holm's bound for the family
    the table names (k comparisons: at most k p); the verdict follows it (numpy and scipy on store.load())."""
    from scipy import stats as st

    root, _, html = page
    runs, _ = load(root)
    runs = runs[runs["chosen"] & (runs["group"] == "outliers")]
    card = html[html.index('<section class="preset" id="outliers"'):]
    card, note = card[:card.index("</table>")], card[card.index("</table>"):card.index("</details>")]
    rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", card, re.S)]
    family = re.search(r"Famil(?:y|ies): .*?(\d+) comparisons?", note, re.S)
    assert family, note
    k = int(family.group(1))
    levels = {row[0] for row in rows}
    assert levels == {f"dataset.contamination={v}" for v in (0.0, 0.1, 0.3)}
    for where, ref, alt, amount, p_holm, verdict in rows:
        level = float(where.split("=")[1])
        at = runs[runs["dataset.contamination"] == level].pivot_table(index="seed", columns="loss", values="test_rmse")
        x, y = at[alt.split(":")[0].split("+")[1]], at[ref.split(":")[0].split("+")[1]]
        ratio = "×" in amount.split(" (")[0]
        estimate = float(amount.split(" (")[0].replace("×", "").removeprefix("at least ").removeprefix("at most "))
        if ratio:
            assert estimate == pytest.approx(np.exp(np.mean(np.log(x / y))), rel=6e-3)  # printed to 3 digits
            p = st.ttest_rel(np.log(x), np.log(y)).pvalue
        else:
            assert estimate == pytest.approx((x - y).mean(), rel=6e-3)
            p = st.ttest_rel(x, y).pvalue
        adjusted = float(p_holm)  # printed to 2 significant digits
        assert p * 0.95 <= adjusted <= min(1.0, k * p) * 1.05, (where, alt, p, adjusted, k)
        lower = estimate < (1 if ratio else 0)
        assert verdict.split(" (")[0] == (("better" if lower else "worse") if adjusted < 0.05 else "tie"), where


def test_a_heatmap_draws_a_difference_below_one_test_example_white():
    """The tables' tie rule on the heatmap's colours: with 100 test rows per replicate one example is
    0.01 of accuracy, so -0.009 and +0.005 are ties (no colour) and 0.011 is not; RMSE has no such
    unit and keeps every difference."""
    import pandas as pd

    from bench.report.figures.heatmaps import beyond_ties

    panel = pd.DataFrame({"n_test": [100, 100, 100, 100]})
    delta = np.array([0.005, -0.009, 0.011, -0.02])
    assert beyond_ties(delta, panel, "accuracy").tolist() == [0.0, 0.0, 0.011, -0.02]
    assert beyond_ties(delta, panel, "rmse").tolist() == delta.tolist()
    assert beyond_ties(delta, pd.DataFrame({"mean": [1.0]}), "accuracy").tolist() == delta.tolist()  # n_test unknown
