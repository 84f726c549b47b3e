"""Answers first: per sweep preset, its question (from conf/sweep/<group>.yaml) and the comparison the
question implies, in two or three sentences with effect sizes and 95 % intervals over seeds.

    question(group)                              the preset file's "# Question:" comment, or None
    answers(runs, table, sig, history, anchor)   [{"group", "question", "sentences": [(text, href)]}]

One answer function per kind of preset (ANSWERS, keyed by group name); any other group gets
`best_vs_canonical`. Every comparison is made at one knob value (`setting`), never pooled over it,
and a diverged seed counts as a loss (`tables.counted_values`). `anchor(group, section)` gives the
href of the section that holds a sentence's evidence.
"""
import math
from pathlib import Path

import pandas as pd

import numpy as np

from bench import stats
from bench.report.findings import label_noise_answer
from bench.report.tables import counted_values, fmt, fmt_ci, seed_times

SWEEPS = Path(__file__).resolve().parents[2] / "conf" / "sweep"


def question(group, folder=SWEEPS) -> str | None:
    """The comment lines of conf/sweep/<group>.yaml from the one starting `# Question:` to the last
    comment line that follows it, joined; None when there is no such file or line."""
    path = Path(folder) / f"{group}.yaml"
    if not path.is_file():
        return None
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# Question:"):
            inside = True
            line = line[len("# Question:"):]
        elif not (inside and line.startswith("#")):
            if inside:
                break
            continue
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or None


# ---------------------------------------------------------------------------------------------
# helpers: values of one configuration per seed, within one (dataset, setting)

def _at(r, activation=None, loss=None):
    rows = r[r["trained"]]
    if activation is not None:
        rows = rows[rows["activation"] == activation]
    if loss is not None:
        rows = rows[rows["loss"] == loss]
    return rows


def _by_seed(rows, column="value") -> pd.Series:
    return rows.dropna(subset=["seed"]).groupby("seed")[column].first()


def _pair(a, b, column="value"):
    """Two per-seed series aligned on the seeds both have: (x, y) arrays."""
    both = pd.concat([_by_seed(a, column), _by_seed(b, column)], axis=1, join="inner")
    return both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)


def _ratio_words(ratio, lo, hi, smaller, larger, than):
    """'2.9× lower than mse's (95 % CI 2.1–3.8×)': a ratio x/y > 1 as `larger`, below 1 inverted."""
    if not math.isfinite(ratio) or ratio <= 0:
        return f"not comparable with {than}"
    if ratio >= 1:
        return f"{fmt(ratio, 3)}× {larger} than {than} (95 % CI {fmt_ci(lo, hi, 3, pad=False)}×)"
    return f"{fmt(1 / ratio, 3)}× {smaller} than {than} (95 % CI {fmt_ci(1 / hi, 1 / lo, 3, pad=False)}×)"


def _signed(diff, more, less, digits=3):
    """'0.104 lower' from a signed difference."""
    return f"{fmt(abs(diff), digits, pad=True)} {more if diff >= 0 else less}"


def _verdict(diff):
    """Whether a paired difference's interval excludes 0."""
    if math.isnan(diff["lo"]):
        return "too few seeds for an interval"
    return "the interval excludes 0" if diff["lo"] > 0 or diff["hi"] < 0 else \
        "the interval includes 0: not distinguishable"


def _settings(r):
    """(setting, rows) of one dataset, a diverged seed counted as the dataset's worst value (as in
    tables.significance)."""
    yield from r.assign(value=counted_values(r)).groupby("setting", sort=True)


def _where(dataset, setting, datasets):
    place = f"at {setting}" if setting else ""
    if datasets > 1 or not place:
        place = f"on {dataset}" + (f", {place}" if place else "")
    return place


# ---------------------------------------------------------------------------------------------
# one answer per kind of preset: [(sentence, section)]

def outliers(runs, table, history):
    """Huber and MAE against MSE at each contamination level: ratio of mean test values (paired)."""
    out = []
    datasets = runs["dataset"].nunique()
    for dataset, d in runs.groupby("dataset", sort=True):
        for setting, s in _settings(d):
            mse = _at(s, loss="mse")
            if mse.empty:
                continue
            metric = s["metric"].iloc[0]
            parts = []
            for loss in ("huber", "mae"):
                other = _at(s, loss=loss)
                if other.empty:
                    continue
                x, y = _pair(mse, other)  # MSE / robust: > 1 means the robust loss is lower
                parts.append(f"{loss}'s test {metric} is "
                             + _ratio_words(*stats.mean_ratio_ci(x, y), "higher", "lower", "mse's"))
            t = table[(table["dataset"] == dataset) & (table["setting"] == setting) & (table["rank"] == 1)]
            best = (f"; the best is {t['activation'].iloc[0]}+{t['loss'].iloc[0]} ({fmt(t['mean'].iloc[0], pad=True)})"
                    if len(t) else "")
            if parts:
                out.append((f"{_where(dataset, setting, datasets).capitalize()}, " + " and ".join(parts) + best + ".",
                            "findings"))
    return out


def saturation(runs, table, history):
    """MSE against BCE at each saturation level: the epoch-0 output gradient and epochs to target."""
    out = []
    datasets = runs["dataset"].nunique()
    grads = _epoch0_grads(runs, history)
    for dataset, d in runs.groupby("dataset", sort=True):
        for setting, s in _settings(d):
            mse, bce = _at(s, loss="mse"), _at(s, loss="bce")
            if mse.empty or bce.empty:
                continue
            metric, higher, target = s["metric"].iloc[0], bool(s["higher_is_better"].iloc[0]), s["target"].iloc[0]
            words = []
            g = grads[grads["run_id"].isin(set(mse["run_id"]) | set(bce["run_id"]))] if len(grads) else grads
            if len(g):
                x, y = _pair(g[g["run_id"].isin(set(bce["run_id"]))], g[g["run_id"].isin(set(mse["run_id"]))],
                             "out_grad")
                ratio, lo, hi = stats.mean_ratio_ci(x, y)  # BCE / MSE: > 1 means MSE's is smaller
                if math.isfinite(ratio):
                    words.append("MSE's mean output gradient at epoch 0 is "
                                 + _ratio_words(ratio, lo, hi, "larger", "smaller", "BCE's"))
            bce_times, mse_times = seed_times(bce, "epochs_to_target"), seed_times(mse, "epochs_to_target")
            goal = f"val {metric} {'≥' if higher else '≤'} {fmt(target)}"
            if math.isinf(np.median(bce_times)):
                words.append(f"neither reaches {goal} in its median seed (seeds that do: MSE "
                             f"{int(mse['epochs_to_target'].notna().sum())} of {len(mse)}, BCE "
                             f"{int(bce['epochs_to_target'].notna().sum())} of {len(bce)})")
                ratio = math.nan
            else:
                ratio, lo, hi = stats.ratio_ci(bce_times, mse_times)
            if math.isinf(ratio):
                words.append(f"BCE reaches {goal} in {fmt(np.median(bce_times))} epochs (median seed) while MSE "
                             f"does not in its median seed ({int(mse['epochs_to_target'].notna().sum())} of "
                             f"{len(mse)} seeds do)")
            elif math.isfinite(ratio):
                words.append(f"MSE needs {fmt(ratio, 3)}× the epochs BCE needs to reach {goal} "
                             f"(95 % CI {fmt_ci(lo, hi, 3, pad=False)}×)")
            if words:
                out.append((f"{_where(dataset, setting, datasets).capitalize()}, " + " and ".join(words) + ".", "speed"))
    return out


def _epoch0_grads(runs, history) -> pd.DataFrame:
    """Per (run_id, seed): the training out_grad at epoch 0 (chosen members only when tuned)."""
    if history.empty or "out_grad" not in history:
        return pd.DataFrame(columns=["run_id", "seed", "out_grad"])
    h = history[(history["split"] == "train") & (history["epoch"] == history.groupby("run_id")["epoch"].transform("min"))]
    if "lr" in h and "lr" in runs and not runs["chosen"].all():
        chosen = runs[runs["chosen"]][["run_id", "seed", "lr"]].astype({"seed": float, "lr": float})
        h = h.astype({"seed": float, "lr": float}).merge(chosen, on=["run_id", "seed", "lr"])
    return h[["run_id", "seed", "out_grad"]]


def demand(runs, table, history):
    """MAPE's forecast bias against MSE's, per output activation: a paired difference in points."""
    out = []
    if "test_bias" not in runs:
        return best_vs_canonical(runs, table, history)
    for (dataset, activation), d in runs.groupby(["dataset", "activation"], sort=True):
        for setting, s in _settings(d):
            mape, mse = _at(s, loss="mape"), _at(s, loss="mse")
            if mape.empty or mse.empty:
                continue
            x, y = _pair(mape, mse, "test_bias")
            diff = stats.paired_difference(x, y)
            where = f"On {dataset} with a {activation} output" + (f" at {setting}" if setting else "")
            out.append((f"{where}, MAPE's forecasts are biased by {x.mean():+.1f} % of the mean target against "
                        f"MSE's {y.mean():+.1f} %: {abs(diff['diff']):.1f} points "
                        f"{'lower' if diff['diff'] < 0 else 'higher'} (95 % CI {diff['lo']:+.1f} to {diff['hi']:+.1f}, "
                        f"{diff['n']} paired seeds; {_verdict(diff)})"
                        + (", the under-forecast the question expects." if diff["hi"] < 0 else "."), "ranking"))
    from bench.report.findings import gap_finding

    ranked = table[table["rank"] == 1]
    gap = [(text, "findings") for _, best in ranked.iterrows() for text in gap_finding(best)]
    return out[:2] + (gap or best_vs_canonical(runs, table, history))[:1]


def binary_vs_categorical(runs, table, history):
    """Multiclass: sigmoid+BCE's binary_accuracy against its accuracy (final val epoch, paired by seed);
    binary: sigmoid+BCE against softmax+CCE on test accuracy."""
    out = []
    for dataset, d in runs.groupby("dataset", sort=True):
        bce = _at(d, "sigmoid", "bce")
        if bce.empty:
            continue
        if d["task"].iloc[0] == "multiclass":
            if history.empty or "binary_accuracy" not in history:
                continue
            h = history[history["run_id"].isin(set(bce["run_id"])) & (history["split"] == "val")]
            last = h[h["epoch"] == h["epoch"].max()].groupby("seed")[["binary_accuracy", "accuracy"]].mean()
            diff = stats.paired_difference(last["binary_accuracy"].to_numpy(), last["accuracy"].to_numpy())
            out.append((f"On {dataset} ({int(d['n_classes'].max())} classes), sigmoid+BCE's element-wise "
                        f"binary_accuracy reads {fmt(last['binary_accuracy'].mean(), 3, pad=True)} where its "
                        f"categorical accuracy is {fmt(last['accuracy'].mean(), 3, pad=True)} (val, final epoch): "
                        f"{_signed(diff['diff'], 'higher', 'lower')} (95 % CI {fmt_ci(diff['lo'], diff['hi'], 3)}; "
                        f"{_verdict(diff)}): element-wise accuracy over one-hot outputs, the number Keras "
                        "reports as 'accuracy' for this loss, is not the classification accuracy.", "pitfall"))
        else:
            cce = _at(d, "softmax", "cce")
            if cce.empty:
                continue
            s = d.assign(value=counted_values(d))
            x, y = _pair(_at(s, "sigmoid", "bce"), _at(s, "softmax", "cce"))
            diff = stats.paired_difference(x, y)
            out.append((f"On {dataset} (binary), one sigmoid unit + BCE scores "
                        f"{_signed(diff['diff'], 'higher', 'lower')} test {d['metric'].iloc[0]} than two softmax "
                        f"units + CCE (95 % CI of the difference {fmt_ci(diff['lo'], diff['hi'], 3)}, {diff['n']} "
                        f"paired seeds; {_verdict(diff)}).", "significance"))
    return out


def best_vs_canonical(runs, table, history):
    """Per dataset and setting: the best configuration against the task's canonical pairing."""
    from bench.losses import CANONICAL

    out = []
    datasets = runs["dataset"].nunique()
    for (dataset, setting), t in table[table["n"] > 0].groupby(["dataset", "setting"], sort=True):
        best = t.sort_values("rank").iloc[0]
        pair = CANONICAL.get(best["task"])
        where = _where(dataset, setting, datasets).capitalize()
        canon = t[(t["activation"] == (pair or ("",))[0]) & (t["loss"] == (pair or ("", ""))[1])]
        higher = bool(best["higher_is_better"])
        head = (f"{where}, the best test {best['metric']} is {best['config']}'s, "
                f"{fmt(best['mean'], pad=True)} (95 % CI {fmt_ci(best['lo'], best['hi'])})")
        if canon.empty or canon["config"].iloc[0] == best["config"]:
            tail = ", the canonical pairing itself" if len(canon) else ""
            out.append((head + tail + ".", "ranking"))
            continue
        r = runs[(runs["dataset"] == dataset) & (runs["setting"] == setting)]
        r = r.assign(value=counted_values(r))
        x, y = _pair(r[r["config"] == best["config"]], r[r["config"] == canon["config"].iloc[0]])
        diff = stats.paired_difference(x, y)
        word = "better" if (diff["diff"] > 0) == higher else "worse"
        out.append((f"{head}: {fmt(abs(diff['diff']), 3, pad=True)} {word} than the canonical "
                    f"{canon['config'].iloc[0]} (95 % CI of the difference {fmt_ci(diff['lo'], diff['hi'], 3)}, "
                    f"{diff['n']} paired seeds; {_verdict(diff)}).", "significance"))
    return out


ANSWERS = {"outliers": outliers, "saturation": saturation, "demand": demand,
           "binary_vs_categorical": binary_vs_categorical, "classification": best_vs_canonical,
           "regression": best_vs_canonical, "label_noise": label_noise_answer}


def answers(runs, table, sig, history, anchor, tuned=False) -> list:
    """[{"group", "question", "sentences": [(text, href)]}] for every group in `runs` (chosen rows)."""
    out = []
    for group in sorted(runs["group"].unique()):
        r = runs[runs["group"] == group]
        t = table[table["group"] == group]
        h = history[history["run_id"].isin(set(r["run_id"]))] if len(history) else history
        said = ANSWERS.get(group, best_vs_canonical)(r, t, h)
        if not said and group in ANSWERS:  # the preset's comparison is not in these results
            said = best_vs_canonical(r, t, h)
        grids = r["lr_grid"] if "lr_grid" in r else []
        if tuned and any(isinstance(grid, (tuple, list)) and len(grid) > 1 for grid in grids):  # (saturation: one lr)
            said = [("At each configuration's validation-chosen learning rate:", "ranking")] + said
        out.append({"group": group, "question": question(group),
                    "sentences": [(text, anchor(group, section)) for text, section in said]
                    or [("No finished runs with a test value.", anchor(group, "ranking"))]})
    return out


def as_text(found) -> str:
    """The answers as findings.txt's opening lines."""
    lines = []
    for a in found:
        lines.append(f"[{a['group']}] Question: {a['question'] or '(no question in conf/sweep)'}")
        lines += [f"[{a['group']}] Answer: {text}" for text, _ in a["sentences"]]
    return "\n".join(lines) + "\n\n" if lines else ""

