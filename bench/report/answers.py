"""Answers first: per sweep preset, its question (from conf/sweep/<group>.yaml), a one-sentence
verdict, the head-to-head table behind it and the sentences that detail it, every comparison made by
the one inference procedure (`bench.stats`, through `tables.versus` and `tables.significance`).

    question(group)    the preset file's question: its "# Question:" comment up to the first '?'
    context(group)     the rest of that comment (the set-up), up to a "Measured" line
    answers(runs, table, sig, history, anchor, fixed, speed)
        [{"group", "question", "context", "verdict", "head_to_head", "sentences": [(text, href)]}],
        one per group in story order (ORDER, then the rest by name)

`verdict`: one sentence (about 30 words) that answers the question with its key number, interval
and caveat. `head_to_head`: a DataFrame with one row per dataset or setting (HEAD_TO_HEAD columns):
`where` ("outliers · dataset.contamination=0.1"), the `quantity` compared (its `metric` and
`higher_is_better`, None for one without a better direction), the `reference` the question names
(usually the task's canonical pairing) against the `alternative` (labels without the setting), both
means `ref_mean` and `alt_mean` (times to target: medians), the `estimate` on its `scale`
(alternative - reference, or alternative / reference for "ratio") with its Holm-consistent interval
`lo`-`hi` at `level` and `bound` (a capped time ratio: "at least", ...), the same as the sentences word
them (`amount`, `interval`), the pairs `n`, `p_holm`, `verdict` (better | worse | tie | n/a; higher |
lower without a better direction), `family` in words and `note` (why a tie or n/a). `sentences`: the details, each with the href of the section that holds its evidence.

One answer function per kind of preset (ANSWERS, keyed by group name); any other group gets
`best_vs_canonical`. Every comparison is made at one knob value (`setting`), never pooled over it; a
diverged seed counts as a loss (`tables.counted_values`); speed is read at the members whose learning
rate reaches the target fastest (`speed`), quality at the quality-chosen ones (`runs`). A group that
tunes its learning rate says so, and `fixed_order` then says how the order at the fixed lr differs.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.metric_facts import CANONICAL
from bench.report import calibration as calibration_report
from bench.report import claims, forecast
from bench.report.findings import gap_finding, label_noise_answer
from bench.report.tables import (SIGNIFICANCE, bare, budgets, counted_values, fmt, fmt_apart, fmt_ci,
                                 place_words, versus)

SWEEPS = Path(__file__).resolve().parents[2] / "conf" / "sweep"
ORDER = ("saturation", "binary_vs_categorical", "classification", "regression", "outliers", "demand")
HEAD_TO_HEAD = ["dataset", "setting", "where", "quantity", "metric", "higher_is_better", "reference", "alternative",
                "ref_mean", "alt_mean", "scale", "estimate", "lo", "hi", "level", "bound", "amount", "interval", "n",
                "p_holm", "verdict", "family", "note"]


def _comment(group, folder) -> str | None:
    """The comment of conf/sweep/<group>.yaml from `# Question:` to the line before a `# Measured`
    line or the first line that is not a comment, joined."""
    path = Path(folder) / f"{group}.yaml"
    if not path.is_file():
        return None
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith("# Question:"):
            inside = True
            line = line[len("# Question:"):]
        elif not (inside and line.startswith("#")) or line.lstrip("# ").startswith("Measured"):
            if inside:
                break
            continue
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or None


def question(group, folder=SWEEPS) -> str | None:
    """The preset's question: its `# Question:` comment up to and including the first '?' (measured
    numbers never belong here)."""
    text = _comment(group, folder)
    return None if text is None else text[:text.index("?") + 1] if "?" in text else text


def context(group, folder=SWEEPS) -> str | None:
    """The rest of the preset's question comment: how the preset sets the question up."""
    text, asked = _comment(group, folder), question(group, folder)
    rest = text[len(asked):].strip() if text and asked else ""
    return rest or None


# ---------------------------------------------------------------------------------------------
# what an answer is computed from, and what it says

@dataclass
class Inputs:
    """The frames of one group an answer reads."""
    runs: pd.DataFrame  # the quality-chosen members (tables.prepare)
    table: pd.DataFrame  # tables.ranking
    sig: pd.DataFrame  # tables.significance (empty: no canonical pairing to compare with)
    history: pd.DataFrame  # the chosen members' history
    speed: pd.DataFrame  # the members at the learning rate that reaches the target fastest
    budget: pd.Series  # epochs trained per run_id


@dataclass
class Said:
    verdict: str = ""
    rows: list = field(default_factory=list)  # head-to-head rows (HEAD_TO_HEAD)
    sentences: list = field(default_factory=list)  # [(text, section)]


def _row(c, dataset, setting, quantity, reference, alternative, family, metric, higher_is_better, detail="") -> dict:
    """One head-to-head row from an adjusted comparison (labels without their setting; `amount` and
    `interval`: the estimate and its interval as the sentences word them)."""
    return {"dataset": dataset, "setting": setting, "where": " · ".join(x for x in (dataset, setting, detail) if x),
            "quantity": quantity, "metric": metric, "higher_is_better": higher_is_better,
            "reference": bare(reference, setting), "alternative": bare(alternative, setting),
            "ref_mean": c.get("reference_value", math.nan), "alt_mean": c.get("value", math.nan),
            "bound": c.get("bound", "exact"), "amount": claims.amount(c), "interval": claims.interval(c),
            "family": family,
            **{k: c[k] for k in ("scale", "estimate", "lo", "hi", "level", "p_holm", "verdict", "n", "note")}}


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


def _settings(r):
    """(setting, rows) of one dataset, a diverged seed counted as the worst value at that setting (as
    in tables.significance)."""
    for setting, s in r.groupby("setting", sort=True):
        yield setting, s.assign(value=counted_values(s))


def _where(dataset, setting, datasets):
    place = f"at {setting}" if setting else ""
    if datasets > 1 or not place:
        place = f"on {dataset}" + (f", {place}" if place else "")
    return place


def _cap(text) -> str:
    """The first letter upper case, the rest as it is (str.capitalize lowers it)."""
    return text[:1].upper() + text[1:]


def _listing(places) -> str:
    return ", ".join(places[:-1]) + " and " + places[-1] if len(places) > 1 else places[0]


def _places(places) -> str:
    """Places listed, one knob named once: 'dataset.contamination=0.0, 0.1 and 0.3'."""
    keys = {p.split("=")[0] for p in places}
    if len(keys) == 1 and all(p.count("=") == 1 and " " not in p for p in places):
        key = keys.pop()
        return f"{key}={_listing([p.split('=')[1] for p in places])}"
    return _listing(places)


def _tally(rows, where="on", words=claims.VERDICT_WORDS, prefix="") -> str:
    """'better on a and b (+0.03 on b, 99.5 % CI ...); not distinguishable on c' over head-to-head rows,
    by verdict, the key row's (`_key`) estimate and interval beside its group (prefix: words before
    its estimate, e.g. the alternative's name)."""
    key, parts = _key(rows), []
    for verdict, said in words.items():
        mine = [r for r in rows if r["verdict"] == verdict]
        if not mine:
            continue
        text = f"{said} {where} {_places([r['place'] for r in mine])}"
        if key is not None and any(r is key for r in mine):
            at = f" {where} {key['place']}" if len(mine) > 1 else ""
            text += f" ({prefix}{claims.amount(key)}{at}, {claims.interval(key)})"
        parts.append(text)
    return "; ".join(parts)


def _key(rows):
    """The row a verdict quotes: the largest effect among the better/worse ones, else the one
    closest to significance."""
    decided = [r for r in rows if r["verdict"] in ("better", "worse", "higher", "lower")]
    if decided:
        return max(decided, key=lambda r: abs(math.log(r["estimate"]) if r["scale"] == "ratio" else r["estimate"]))
    tested = [r for r in rows if not math.isnan(r["p_holm"])]
    return min(tested, key=lambda r: r["p_holm"]) if tested else None


# ---------------------------------------------------------------------------------------------
# one answer per kind of preset

def best_vs_canonical(i: Inputs) -> Said:
    """Per dataset and setting: the canonical pairing against the best other configuration, from
    the significance family (every configuration against the canonical one, Holm-adjusted), the
    best being selected from N, and said so."""
    said = Said()
    if i.table.empty:
        return said
    datasets = i.table["dataset"].nunique()
    for (dataset, setting), t in i.table[i.table["n"] > 0].groupby(["dataset", "setting"], sort=True):
        # in the ranking's order: by rank, then by mean within a shared rank
        where, metric, n = _cap(_where(dataset, setting, datasets)), t["metric"].iloc[0], len(t)
        s = i.sig[(i.sig["dataset"] == dataset) & (i.sig["setting"] == setting)]
        best = t.iloc[0]
        shown = f"{fmt(best['mean'], pad=True)} (95 % CI of the mean {fmt_ci(best['lo'], best['hi'])})"
        if s.empty:
            said.sentences.append((f"{where}, the best mean test {metric} of {n} configurations is {best['config']}'s, "
                                   f"{shown}; its task's canonical pairing did not train here, so nothing is compared "
                                   "with it.", "ranking"))
            continue
        reference = s["reference"].iloc[0]
        ref = t[t["config"] == reference].iloc[0]
        other = t[t["config"] != reference]
        if other.empty:
            continue
        alt = other.iloc[0]  # the strongest challenger: the best mean but the reference's
        c = s[s["config"] == alt["config"]].iloc[0].to_dict()
        top = t[t["rank"] == t["rank"].min()]
        tied = len(top) - 1
        ties = f", sharing the top rank with {tied} other{'s' if tied > 1 else ''}" if tied else ""
        if ref["mean"] == best["mean"]:  # the best mean, or equal to it: the canonical pairing is named first
            text = (f"{where}, the canonical {bare(reference, setting)} has the best mean test {metric} of {n} "
                    f"configurations, {fmt(ref['mean'], pad=True)} (95 % CI of the mean "
                    f"{fmt_ci(ref['lo'], ref['hi'])}){ties}; the best other, {bare(alt['config'], setting)} "
                    f"({fmt(alt['mean'], pad=True)}): {claims.amount(c)} ({claims.evidence(c)}); "
                    f"{claims.verdict(c, bare(alt['config'], setting), 'it')}.")
        else:
            shared = ", which shares its rank" if reference in set(top["config"]) else ""
            text = (f"{where}, the best mean test {metric} of {n} configurations is {bare(alt['config'], setting)}'s, "
                    f"{shown}: the best of {n}, selected after the fact, so it is judged with all "
                    f"{c['family_size']} comparisons against the canonical {bare(reference, setting)} "
                    f"({fmt(ref['mean'], pad=True)}{shared}): {claims.amount(c)} ({claims.evidence(c)}); "
                    f"{claims.verdict(c, bare(alt['config'], setting), 'the canonical pairing')}.")
        edge = {"at least": "top", "at most": "bottom"}
        untuned = [f"{bare(r['config'], setting)}'s chosen learning rate is at the {edge[r['lr_bound']]} of its grid "
                   f"as trained (its optimum {r['lr_bound']} that rate: not called tuned)"
                   for r in (alt, ref) if r.get("lr_bound")]
        said.sentences.append((text + (f" Caveat: {'; '.join(untuned)}." if untuned else ""), "significance"))
        row = _row(c, dataset, setting, f"test {metric}", reference, alt["config"], c["family"], metric,
                   bool(alt["higher_is_better"]))
        said.rows.append(row | {"place": _where(dataset, setting, 2).removeprefix("on "), "best_of": n})
    if said.rows:
        most = max(r["best_of"] for r in said.rows)
        key = _key(said.rows)
        said.verdict = (f"Against the canonical pairing, the best other configuration (best of up to {most}; "
                        f"Holm-adjusted within each dataset and setting) is "
                        f"{_tally(said.rows, prefix=bare(key['alternative'], key['setting']) + ', ' if key else '')}.")
    return said


def outliers(i: Inputs) -> Said:
    """Huber and MAE against MSE at each contamination level: the paired ratio of test values, from
    the significance family (MSE is regression's canonical pairing)."""
    said = Said()
    datasets = i.runs["dataset"].nunique()
    for (dataset, setting), s in i.sig.groupby(["dataset", "setting"], sort=True):
        reference = s["reference"].iloc[0]
        if not reference.split(" [")[0].endswith("+mse"):
            continue
        metric, parts = s["metric"].iloc[0], []
        for loss in ("huber", "mae"):
            mine = s[s["config"].map(lambda c: bare(c, setting).split("+")[-1] == loss)]
            if mine.empty:
                continue
            c = mine.iloc[0].to_dict()
            parts.append(f"{loss}'s test {metric} is {claims.amount(c)} mse's ({claims.evidence(c)}): "
                         + claims.VERDICT_WORDS[c["verdict"]])
            said.rows.append(_row(c, dataset, setting, f"test {metric}", reference, c["config"], c["family"], metric,
                                  bool(c["higher_is_better"]))
                             | {"place": setting or dataset, "loss": loss})
        t = i.table[(i.table["dataset"] == dataset) & (i.table["setting"] == setting) & (i.table["rank"] == 1)]
        best = (f"; the best mean is {_listing([bare(c, setting) for c in t['config']])}'s "
                f"({fmt(t['mean'].iloc[0], pad=True)})" if len(t) else "")
        if parts:
            said.sentences.append((f"{_cap(_where(dataset, setting, datasets))}, " + "; ".join(parts) + best
                                   + ".", "significance"))
    verdicts = []
    for loss in ("huber", "mae"):
        rows = [r for r in said.rows if r["loss"] == loss]
        if rows:
            verdicts.append(f"{loss} is {_tally(rows, 'at')}")
    if verdicts:
        said.verdict = (f"Against mse on test {i.sig['metric'].iloc[0]} (a ratio; Holm-adjusted within each setting), "
                        + "; ".join(verdicts) + ".")
    return said


def _epoch0_grads(runs, history) -> pd.DataFrame:
    """Per (run_id, seed): the training out_grad at epoch 0 (chosen members only when tuned)."""
    if history.empty or "out_grad" not in history:
        return pd.DataFrame(columns=["run_id", "seed", "out_grad"])
    h = history[(history["split"] == "train") & (history["epoch"] == history.groupby("run_id")["epoch"].transform("min"))]
    if "lr" in h and "lr" in runs and not runs["chosen"].all():
        chosen = runs[runs["chosen"]][["run_id", "seed", "lr"]].astype({"seed": float, "lr": float})
        h = h.astype({"seed": float, "lr": float}).merge(chosen, on=["run_id", "seed", "lr"])
    return h[["run_id", "seed", "out_grad"]]


def saturation(i: Inputs) -> Said:
    """MSE against BCE at each saturation level: epochs to target (speed members, never reached =
    capped at the budget) and the epoch-0 output gradient, one family of two per setting."""
    said = Said()
    datasets = i.runs["dataset"].nunique()
    grads = _epoch0_grads(i.runs, i.history)
    for dataset, d in i.speed.groupby("dataset", sort=True):
        for setting, s in d.groupby("setting", sort=True):
            mse, bce = _at(s, loss="mse"), _at(s, loss="bce")
            if mse.empty or bce.empty:
                continue
            metric, higher, target = s["metric"].iloc[0], bool(s["higher_is_better"].iloc[0]), s["target"].iloc[0]
            goal = f"val {metric} {'≥' if higher else '≤'} {fmt(target)}"
            mine = s[s["run_id"].isin(set(mse["run_id"]) | set(bce["run_id"]))]
            r = mine.assign(budget=mine["run_id"].map(i.budget).astype(float))
            (time,) = versus(r, bce["config"].iloc[0], "epochs_to_target", higher_is_better=False, budget="budget",
                             alternatives=[mse["config"].iloc[0]])
            family = [time | {"higher_is_better": False}]
            q = i.runs[i.runs["run_id"].isin(set(mse["run_id"]) | set(bce["run_id"]))]
            g = grads[grads["run_id"].isin(set(q["run_id"]))] if len(grads) else grads
            if len(g):
                x, y = _pair(g[g["run_id"].isin(set(mse["run_id"]))], g[g["run_id"].isin(set(bce["run_id"]))], "out_grad")
                family.append(stats.compare(x, y, "ratio") | {"higher_is_better": None})
            family = stats.adjust(family)
            time, words = family[0], []
            budget = fmt(float(np.nanmax(r["budget"]))) if r["budget"].notna().any() else "?"
            if len(family) > 1:
                grad = family[1]
                words.append(f"MSE's mean output gradient at epoch 0 is {claims.amount(grad)} BCE's "
                             f"({claims.evidence(grad)}): {claims.VERDICT_WORDS[grad['verdict']]}")
            if time["verdict"] == "n/a":
                words.append(f"neither reaches {goal} within {budget} epochs in any replicate"
                             if time["note"].startswith("neither") else f"no speed comparison ({time['note']})")
            else:
                never = (f"; MSE never reached it in {time['never_x']} of {time['n']} replicates, counted at the "
                         f"{budget}-epoch budget" if time["never_x"] else "")
                never += (f"; BCE never reached it in {time['never_y']} of {time['n']}" if time["never_y"] else "")
                words.append(f"MSE needs {claims.amount(time)} as many epochs as BCE to reach {goal} "
                             f"({claims.evidence(time)}{never}): " + claims.SPEED_WORDS[time["verdict"]])
            quantities = "epochs to target" + (" and epoch-0 output gradient" if len(family) > 1 else "")
            family_text = (f"{len(family)} comparison{'s' if len(family) > 1 else ''} of mse with bce "
                           f"{place_words(dataset, setting)} ({quantities})" + (", Holm-adjusted" if len(family) > 1 else ""))
            said.rows.append(_row(time, dataset, setting, f"epochs to {goal}", bce["config"].iloc[0],
                                  mse["config"].iloc[0], family_text, "epochs_to_target", False)
                             | {"place": setting or dataset, "gradient": family[1] if len(family) > 1 else None})
            said.sentences.append((f"{_cap(_where(dataset, setting, datasets))}, " + "; ".join(words) + ".",
                                   "speed"))
    if said.rows:
        grads = [r["gradient"] for r in said.rows if r["gradient"] is not None]
        grad = min(grads, key=lambda c: c["estimate"]) if grads else None
        where = next(r["place"] for r in said.rows if r["gradient"] is grad) if grad else ""
        said.verdict = (f"MSE against BCE in epochs to the target is {_tally(said.rows, 'at', claims.SPEED_WORDS)}"
                        + (f"; its epoch-0 output gradient is {claims.amount(grad)} BCE's at {where} "
                           f"({claims.interval(grad)})" if grad else "") + ".")
    return said


def demand(i: Inputs) -> Said:
    """The demand preset (bench.report.forecast): what each loss forecasts against the exact optimum it
    elicits, and per metric the best configuration (selected) against the best on the other side of
    theory, one family per (dataset, setting) over the metrics; the head to head is that table."""
    said = Said(sentences=forecast.answer(i.runs, i.table, i.history))
    _, verdicts = forecast.metric_table(i.runs) if said.sentences else (None, pd.DataFrame())
    for _, v in verdicts[verdicts["versus"].notna()].iterrows() if len(verdicts) else ():
        said.rows.append(_row(v.to_dict() | {"value": v["best_value"], "reference_value": v["versus_value"]},
                              v["dataset"], v["setting"], f"test {v['metric']}", v["versus"], v["best"], v["family"],
                              v["metric"], False) | {"place": v["metric"]})
    if said.rows:
        theory = verdicts.groupby("metric")["as_theory"].all()
        said.verdict = (f"The best loss per metric elicits that metric's functional on {int(theory.sum())} of "
                        f"{len(theory)} metrics; against the best configuration on the other side of theory (a "
                        f"selection, Holm over the metrics) it is {_tally(said.rows)}.")
    return said


def binary_vs_categorical(i: Inputs) -> Said:
    """Binary datasets: two softmax units + CCE against one sigmoid unit + BCE on the test metric (the
    significance family); multiclass ones: sigmoid+BCE's binary_accuracy against its accuracy at the
    final val epoch, paired by seed (a family of one per dataset and setting)."""
    said = Said()
    binary, multiclass, calibrated = [], [], []
    for dataset, d in i.runs.groupby("dataset", sort=True):
        for setting, s in d.groupby("setting", sort=True):
            bce = _at(s, "sigmoid", "bce")
            if bce.empty:
                continue
            place = f"{dataset} at {setting}" if setting else dataset
            if s["task"].iloc[0] == "multiclass":
                if i.history.empty or "binary_accuracy" not in i.history:
                    continue
                h = i.history[i.history["run_id"].isin(set(bce["run_id"])) & (i.history["split"] == "val")]
                last = h[h["epoch"] == h["epoch"].max()].groupby("seed")[["binary_accuracy", "accuracy"]].mean()
                (c,) = stats.adjust([stats.compare(last["binary_accuracy"], last["accuracy"])], higher_is_better=None)
                element, categorical = fmt_apart(last["binary_accuracy"].mean(), last["accuracy"].mean())
                multiclass.append(f"{element} vs {categorical} on {place} ({int(s['n_classes'].max())} classes; "
                                  f"{claims.amount(c)}, {claims.evidence(c)})")
                said.rows.append(_row(c | {"value": last["binary_accuracy"].mean(),
                                           "reference_value": last["accuracy"].mean()},
                                      dataset, setting, "val binary_accuracy vs accuracy of sigmoid+bce, final epoch",
                                      "sigmoid+bce accuracy", "sigmoid+bce binary_accuracy",
                                      f"1 comparison {place_words(dataset, setting)}", "binary_accuracy", None)
                                 | {"place": place, "half": "multiclass"})
                continue
            row = i.sig[(i.sig["dataset"] == dataset) & (i.sig["setting"] == setting)
                        & i.sig["config"].map(lambda c: bare(c, setting) == "softmax+cce")]
            if row.empty:
                continue
            c = row.iloc[0].to_dict()
            binary.append(f"{claims.amount(c)} on {place} ({claims.evidence(c)})")
            said.rows.append(_row(c, dataset, setting, f"test {c['metric']}", c["reference"], c["config"], c["family"],
                                  c["metric"], bool(c["higher_is_better"]))
                             | {"place": place, "half": "binary"})
            calibrated += _calibration(s, place)
    if binary:
        rows = [r for r in said.rows if r["half"] == "binary"]
        metric = i.runs.loc[i.runs["task"] == "binary", "metric"].iloc[0]
        said.sentences.append((f"On binary data, two softmax units + CCE against one sigmoid unit + BCE (difference in "
                               f"test {metric}, paired by replicate): {_listing(binary)}; {_tally(rows)}.",
                               "significance"))
    if calibrated:
        said.sentences.append(("Their calibration on binary data (test log_loss as a ratio and top-label ECE as a "
                               "difference, softmax+CCE against sigmoid+BCE, paired by replicate, Holm over the two of "
                               f"each dataset; lower is better): {_listing(calibrated)}.", "significance"))
    if multiclass:
        rows = [r for r in said.rows if r["half"] == "multiclass"]
        said.sentences.append(("On multiclass data, sigmoid+BCE's element-wise binary_accuracy against its categorical "
                               f"accuracy (val, final epoch) reads {_listing(multiclass)}; {_tally(rows)}: element-wise "
                               "accuracy over one-hot outputs, the number Keras reports as 'accuracy' for this loss, is "
                               "not the classification accuracy.", "pitfall"))
    parts = []
    for half, words in (("binary", "on binary data softmax+CCE against sigmoid+BCE is"),
                        ("multiclass", "on multiclass data sigmoid+BCE's binary_accuracy against its accuracy is")):
        rows = [r for r in said.rows if r["half"] == half]
        if rows:
            parts.append(f"{words} {_tally(rows)}")
    if parts:
        said.verdict = _cap("; ".join(parts)) + "."
    return said


def _calibration(s, place) -> list:
    """Softmax+CCE against sigmoid+BCE on test log_loss and ECE (one family of the two, lower is
    better), in words: ['log_loss 0.112 vs 0.109 on moons (1.03×, 97.5 % CI ...: not distinguishable)']."""
    cce, bce = _at(s, "softmax", "cce"), _at(s, "sigmoid", "bce")
    columns = [c for c in ("test_log_loss", "test_ece") if c in s and s[c].notna().any()]
    pairs = [_pair(cce, bce, column) for column in columns]
    family = stats.adjust([stats.compare(x, y, stats.scale_of(column[5:])) for column, (x, y) in zip(columns, pairs)],
                          higher_is_better=False)
    return [f"{column[5:]} {fmt(np.nanmean(x), 3, pad=True)} vs {fmt(np.nanmean(y), 3, pad=True)} on {place} "
            f"({claims.amount(c)}, {claims.interval(c)}: {claims.VERDICT_WORDS[c['verdict']]})"
            for column, (x, y), c in zip(columns, pairs, family)]


def calibration(i: Inputs) -> Said:
    """The calibration preset (`bench.report.calibration`): every loss against CCE on test ECE and NLL,
    before and after temperature scaling, one family per dataset; the head to head is CCE against the
    other loss of the lowest mean test ECE, from that family."""
    said = Said(sentences=calibration_report.answer(i.runs, i.table, i.history))
    found = calibration_report.comparisons(i.runs) if said.sentences else pd.DataFrame()
    for dataset, c in found.groupby("dataset", sort=True) if len(found) else ():
        best = c[c["figure"] == "ECE"].sort_values("mean").iloc[0].to_dict()
        family = (f"{len(c)} comparisons with {best['reference']} on {dataset} (test ECE and NLL, before and after "
                  "temperature scaling), Holm-adjusted")
        said.rows.append(_row(best | {"value": best["mean"], "reference_value": best["ref_mean"]}, dataset, "",
                              "test ECE", best["reference"], best["config"], family, "ece", False)
                         | {"place": dataset})
    if said.rows:
        key = _key(said.rows)
        said.verdict = ("Against CCE on test ECE (Holm over each dataset's comparisons), the loss of the lowest mean "
                        f"ECE is {_tally(said.rows, prefix=key['alternative'] + ', ' if key else '')}.")
    return said


def label_noise(i: Inputs) -> Said:
    """The robustness finding per dataset, and per noise level the canonical CCE against the best
    other loss (`best_vs_canonical`'s head to head and verdict)."""
    head = best_vs_canonical(i)
    return Said(head.verdict, head.rows, label_noise_answer(i.runs, i.table, i.history) or head.sentences)


ANSWERS = {"outliers": outliers, "saturation": saturation, "demand": demand,
           "binary_vs_categorical": binary_vs_categorical, "classification": best_vs_canonical,
           "regression": best_vs_canonical, "label_noise": label_noise, "calibration": calibration}


def ordinal(n) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    n = int(n)
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def fixed_order(runs, table, fixed) -> list:
    """How the fixed-learning-rate test ranking (`tuned.fixed_view`) differs from the tuned one, for one
    tuned group: a sentence naming the fixed lr, why it is used and where the order differs, then one
    per (dataset, setting) where it does, naming up to three configurations that change place (the
    fixed-lr winner, the tuned winner, the one whose test value tuning changed most), each with its
    place and test value at the fixed lr and tuned (at its chosen lr); one sentence when that is short.
    Places are the rankings' (ties share a place: less than one test example apart is no order)."""
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
            name = bare(config, setting)  # the sentence names the setting
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
    return [head, *(f"{_cap(place) if place else 'The order'}: " + ", ".join(said) + f" ({count})."
                    for _, place, said, count in moves)]


def story_order(groups) -> list:
    """The groups in the order the page tells them: ORDER first, then the rest by name."""
    return sorted(groups, key=lambda g: (ORDER.index(g) if g in ORDER else len(ORDER), g))


def answers(runs, table, sig, history, anchor, fixed=None, speed=None) -> list:
    """One answer per group in `runs` (chosen rows), in story order: {"group", "question", "context",
    "verdict", "head_to_head" (a DataFrame, HEAD_TO_HEAD columns), "sentences": [(text, href)]}.
    fixed: `tuned.fixed_view` (the tuned groups at one learning rate), or None; speed: the members at
    the learning rate that reaches the target fastest (default: `runs`)."""
    speed = runs if speed is None else speed
    sig = pd.DataFrame(columns=SIGNIFICANCE) if sig is None else sig
    budget = budgets(history)
    out = []
    for group in story_order(runs["group"].unique()):
        r = runs[runs["group"] == group]
        h = history[history["run_id"].isin(set(r["run_id"]))] if len(history) else history
        i = Inputs(runs=r, table=table[table["group"] == group], sig=sig[sig["group"] == group], history=h,
                   speed=speed[speed["group"] == group], budget=budget)
        said = ANSWERS.get(group, best_vs_canonical)(i)
        if not said.sentences and group in ANSWERS:  # the preset's comparison is not in these results
            said = best_vs_canonical(i)
        sentences = said.sentences
        f = fixed[fixed["group"] == group] if fixed is not None else None
        if f is not None and len(f):  # a tuned group (saturation keeps one lr)
            sentences = [("At each configuration's validation-chosen learning rate:", "ranking"), *sentences,
                         *((text, "ranking") for text in fixed_order(r, i.table, f))]
        out.append({"group": group, "question": question(group), "context": context(group),
                    "verdict": said.verdict or "No comparison could be made: no finished runs with a test value.",
                    "head_to_head": pd.DataFrame(said.rows, columns=HEAD_TO_HEAD),
                    "sentences": [(text, anchor(group, section)) for text, section in sentences]
                    or [("No finished runs with a test value.", anchor(group, "ranking"))]})
    return out


def as_text(found) -> str:
    """The answers as findings.txt's opening lines."""
    lines = []
    for a in found:
        lines.append(f"[{a['group']}] Question: {a['question'] or '(no question in conf/sweep)'}")
        lines.append(f"[{a['group']}] Verdict: {a['verdict']}")
        lines += [f"[{a['group']}] Answer: {text}" for text, _ in a["sentences"]]
    return "\n".join(lines) + "\n\n" if lines else ""
