"""Answers first: per sweep preset, its question (from conf/sweep/<group>.yaml) and the comparison the
question implies, in two or three sentences with effect sizes and 95 % intervals over seeds.

    question(group)                              the preset file's "# Question:" comment, or None
    answers(runs, table, sig, history, anchor, fixed)  [{"group", "question", "sentences": [(text, href)]}]

One answer function per kind of preset (ANSWERS, keyed by group name); any other group gets
`best_vs_canonical`. Every comparison is made at one knob value (`setting`), never pooled over it,
and a diverged seed counts as a loss (`tables.counted_values`). `anchor(group, section)` gives the
href of the section that holds a sentence's evidence. A group that tunes its learning rate is
answered at each configuration's chosen lr, and `fixed_order` then says how the order at the fixed
lr (`tuned.fixed_lr`: the optimizer's default) differs.
"""
import math
from pathlib import Path

import pandas as pd

import numpy as np

from bench import stats
from bench.report.calibration import answer as calibration_answer
from bench.report import forecast
from bench.report.findings import label_noise_answer
from bench.report.tables import counted_values, fmt, fmt_apart, fmt_ci, seed_times

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


def binary_vs_categorical(runs, table, history):
    """One sentence over the binary datasets (sigmoid+BCE against softmax+CCE on the test metric, paired
    by seed), one over the multiclass ones (sigmoid+BCE's binary_accuracy against its accuracy at the
    final val epoch, paired by seed): the two halves of the preset's question."""
    binary, multiclass, calibrated = [], [], []
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
            element, categorical = fmt_apart(last["binary_accuracy"].mean(), last["accuracy"].mean())
            multiclass.append((diff, f"{element} vs {categorical} on {dataset} ({int(d['n_classes'].max())} classes; "
                                     f"{_signed(diff['diff'], 'higher', 'lower')}, 95 % CI "
                                     f"{fmt_ci(diff['lo'], diff['hi'], 3)})"))
        elif len(_at(d, "softmax", "cce")):
            s = d.assign(value=counted_values(d))
            diff = stats.paired_difference(*_pair(_at(s, "sigmoid", "bce"), _at(s, "softmax", "cce")))
            binary.append((diff, f"{diff['diff']:+.3g} on {dataset} (95 % CI "
                                 f"{fmt_ci(diff['lo'], diff['hi'], 3)}, {diff['n']} paired seeds)"))
            for column in ("test_log_loss", "test_ece"):  # the calibration the question asks about
                if column in d and d[column].notna().any():
                    x, y = _pair(_at(d, "sigmoid", "bce"), _at(d, "softmax", "cce"), column)
                    cal = stats.paired_difference(x, y)
                    calibrated.append((cal, f"{column[5:]} {fmt(np.nanmean(x), 3, pad=True)} vs "
                                            f"{fmt(np.nanmean(y), 3, pad=True)} on {dataset} ({cal['diff']:+.3g}, 95 % CI "
                                            f"{fmt_ci(cal['lo'], cal['hi'], 3)})"))
    out = []
    if binary:
        metric = runs.loc[runs["task"] == "binary", "metric"].iloc[0]
        out.append((f"On binary data, one sigmoid unit + BCE against two softmax units + CCE (difference in test "
                    f"{metric}, paired by seed): {_listing([t for _, t in binary])}; "
                    f"{_verdicts([d for d, _ in binary])}.", "significance"))
    if calibrated:
        out.append((f"Their calibration on binary data (test log_loss and top-label ECE, sigmoid+BCE vs softmax+CCE, "
                    f"paired by seed, not adjusted): {_listing([t for _, t in calibrated])}; "
                    f"{sum(d['lo'] > 0 or d['hi'] < 0 for d, _ in calibrated)} of {len(calibrated)} intervals "
                    "exclude 0.", "significance"))
    if multiclass:
        out.append(("On multiclass data, sigmoid+BCE's element-wise binary_accuracy against its categorical "
                    f"accuracy (val, final epoch) reads {_listing([t for _, t in multiclass])}; "
                    f"{_verdicts([d for d, _ in multiclass])}: element-wise accuracy over one-hot outputs, the "
                    "number Keras reports as 'accuracy' for this loss, is not the classification accuracy.",
                    "pitfall"))
    return out


def _verdicts(diffs) -> str:
    """`_verdict` of one paired difference, or how many of several intervals exclude 0."""
    if len(diffs) == 1:
        return _verdict(diffs[0])
    away = sum(not math.isnan(d["lo"]) and (d["lo"] > 0 or d["hi"] < 0) for d in diffs)
    return ("no interval excludes 0: not distinguishable" if away == 0 else "every interval excludes 0"
            if away == len(diffs) else f"the interval excludes 0 on {away} of {len(diffs)} datasets")


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
        if len(canon) and canon["rank"].iloc[0] == best["rank"]:  # a tie for first: name the canonical pairing
            best = canon.iloc[0]
        higher = bool(best["higher_is_better"])
        tied = int((t["rank"] == best["rank"]).sum()) - 1
        head = (f"{where}, the best test {best['metric']} is {best['config']}'s, "
                f"{fmt(best['mean'], pad=True)} (95 % CI {fmt_ci(best['lo'], best['hi'])}"
                + (f"; tied with {tied} other{'s' if tied > 1 else ''})" if tied else ")"))
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


ANSWERS = {"outliers": outliers, "saturation": saturation, "demand": forecast.answer,
           "binary_vs_categorical": binary_vs_categorical, "classification": best_vs_canonical,
           "regression": best_vs_canonical, "label_noise": label_noise_answer, "calibration": calibration_answer}


def ordinal(n) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    n = int(n)
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def fixed_order(runs, table, fixed) -> list:
    """How the fixed-learning-rate test ranking (`tuned.fixed_view`) differs from the tuned one, for one
    tuned group: a sentence naming the fixed lr, why it is used and where the order differs, then one
    per (dataset, setting) where it does, naming up to three configurations that change place (the
    fixed-lr winner, the tuned winner, the one whose test value tuning changed most), each with its
    place and test value at the fixed lr and tuned (at its chosen lr); one sentence when that is short."""
    if fixed is None or fixed.empty or table.empty:
        return []
    same, moves = [], []
    datasets = table["dataset"].nunique()
    for (dataset, setting), t in table[table["rank"].notna()].groupby(["dataset", "setting"], sort=True):
        f = fixed[(fixed["dataset"] == dataset) & (fixed["setting"] == setting)].set_index("config")
        if f.empty:
            continue
        t = t.set_index("config")
        place = _where(dataset, setting, datasets)
        label = f"{dataset} at {setting}" if setting else dataset
        rank = f["rank"].reindex(t.index)  # at the fixed lr; NaN: no test value there
        changed = rank.ne(t["rank"])
        if not changed.any():
            same.append(label)
            continue
        n, metric = len(t), t["metric"].iloc[0]
        moved = (rank - t["rank"]).abs().fillna(n)[changed]
        gain = (f["mean"].reindex(t.index) - t["mean"]).abs().fillna(np.inf)[changed]  # what tuning changed
        picks = [*rank.index[(rank == 1) & changed][:1],
                 *moved[t.loc[moved.index, "rank"] == 1].sort_values(ascending=False).index[:1],
                 gain.idxmax()]
        chosen = runs[(runs["dataset"] == dataset) & (runs["setting"] == setting)].groupby("config")["lr"].first()
        said = []
        for config in list(dict.fromkeys(picks)):  # in order, once each
            name = config.removesuffix(f" [{setting}]") if setting else config  # the sentence names the setting
            tuned = f"tuned: {ordinal(t.at[config, 'rank'])}, {{}} at lr {fmt(float(chosen[config]), 3)}"
            if math.isnan(rank[config]):
                said.append(f"{name} has no test value ({tuned.format(fmt(t.at[config, 'mean'], 3, pad=True))})")
                continue
            now, then = fmt_apart(f.at[config, "mean"], t.at[config, "mean"])
            said.append(f"{name} {'' if said else 'ranks '}{ordinal(rank[config])}" + ("" if said else f" of {n}")
                        + f" ({'' if said else f'test {metric} '}{now}; {tuned.format(then)})")
        moves.append((label, place, said, f"{int(changed.sum())} of {n} configurations change place"))
    if not same and not moves:
        return []
    lrs = fixed.drop_duplicates(["lr", "lr_why"])
    head = "At the fixed learning rate " + " / ".join(
        f"{fmt(lr, 3)} ({why})" for lr, why in zip(lrs["lr"], lrs["lr_why"]))
    if not moves:
        return [head + ", the test ranking is the same" + (f" on {_listing(same)}" if len(same) > 1 else "") + "."]
    where = f" on {_listing([m[0] for m in moves])}" if same or len(moves) > 1 else ""
    head += f", the test ranking differs{where}" + (f" (the same on {_listing(same)})" if same else "") + ":"
    if sum(len(m[2]) for m in moves) <= 4:  # short enough for one sentence
        return [head + " " + "; ".join((f"{place} " if place and where else "") + ", ".join(said)
                                       for _, place, said, _ in moves) + "."]
    return [head, *(f"{place.capitalize() if place else 'The order'}: " + ", ".join(said) + f" ({count})."
                    for _, place, said, count in moves)]


def _listing(places) -> str:
    return ", ".join(places[:-1]) + " and " + places[-1] if len(places) > 1 else places[0]


def answers(runs, table, sig, history, anchor, fixed=None) -> list:
    """[{"group", "question", "sentences": [(text, href)]}] for every group in `runs` (chosen rows).
    fixed: `tuned.fixed_view` (the tuned groups at one learning rate), or None."""
    out = []
    for group in sorted(runs["group"].unique()):
        r = runs[runs["group"] == group]
        t = table[table["group"] == group]
        h = history[history["run_id"].isin(set(r["run_id"]))] if len(history) else history
        said = ANSWERS.get(group, best_vs_canonical)(r, t, h)
        if not said and group in ANSWERS:  # the preset's comparison is not in these results
            said = best_vs_canonical(r, t, h)
        f = fixed[fixed["group"] == group] if fixed is not None else None
        if f is not None and len(f):  # a tuned group (saturation keeps one lr)
            said = [("At each configuration's validation-chosen learning rate:", "ranking"), *said,
                    *((text, "ranking") for text in fixed_order(r, t, f))]
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

