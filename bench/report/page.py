"""The page: the setup box, then per preset (in story order) its verdict, the one figure that shows it
and its head-to-head table, with everything else about the preset folded in one <details>; the
analytic figures once, in a folded appendix. A static page: no network, no scripts.

A preset's folded part is a list of sections (a title and a function that builds its blocks). A block
is a dict the template renders by `kind`: text | list | table | figure | empty. Figures are handed to
the `Painter` while the page is assembled and resolved to their file names at the end; every figure
comes with a `lead`, the sentence that refers to it ("{figure} shows ..."), and is numbered in page
order. A figure whose file is byte-identical to an earlier one is not shown again: a sentence points
at the first. A section is shown only where it applies: a figure block whose `empty` is None
disappears when there is nothing to draw, and a section left without blocks is not on the page.

To add a section: write `my_section(g: Group) -> [block, ...]` and append
("my-id", "Title", my_section) to SECTIONS (or `SECTIONS.insert` where it belongs).
"""
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench import machine
from bench.errors import UserError
from bench.report import answers, calibration, claims, findings, forecast, headline, scorecard, tables
from bench.report import setup as setup_box
from bench.store import left_out_line
from bench.report import tuned as tuned_view
from bench.report.figures import (anatomy, curves, forest, heatmaps, knobs, pitfall, profiles, robustness, scores,
                                  sensitivity, speed)
from bench.report.tables import fmt, fmt_ci

# the figure that shows each preset's verdict, beside it; others: the first of FALLBACK it has
KEY_FIGURE = {"saturation": "knobs", "binary_vs_categorical": "forest", "classification": "heatmap",
              "regression": "scores", "outliers": "knobs", "demand": "scores", "label_noise": "robustness"}
FALLBACK = ("forest", "knobs", "heatmap", "scores", "curves")


# ---------------------------------------------------------------------------------------------
# blocks and the painter

def _empty(text):
    return {"kind": "empty", "text": text}


def _figure(pending, kind, lead, caption, empty):
    """A figure block whose file is still being drawn: `resolve` turns it into the image or `empty`.
    kind: what it shows (KEY_FIGURE's names); lead: the sentence that refers to it, "{figure}" where
    its number goes."""
    return {"kind": "figure", "pending": pending, "figure": kind, "lead": lead, "caption": caption, "empty": empty}


def resolve(block):
    """The block with its figure drawn; None when there was nothing to draw and the section does not
    apply (`empty` is None)."""
    if block["kind"] != "figure" or "pending" not in block:
        return block
    name = block["pending"].result()
    if name:
        return {k: v for k, v in block.items() if k not in ("pending", "empty")} | {"src": name}
    return _empty(block["empty"]) if block["empty"] else None


def plural(n, word) -> str:
    """'1 dataset', '2 datasets'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class Painter:
    """Draws figures in `workers` forked processes (matplotlib is single-threaded; the figures are
    independent) or inline; `draw` returns an object with .result() -> file name or None."""

    def __init__(self, workers):
        self.pool = None
        if workers > 1 and sys.platform == "linux":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            for _ in range(workers):  # fork now, before torch (anatomy) starts its threads in this process
                self.pool.submit(int)

    def draw(self, fn, *args, **kwargs):
        if self.pool is None:
            from concurrent.futures import Future

            done = Future()
            done.set_result(fn(*args, **kwargs))
            return done
        return self.pool.submit(fn, *args, **kwargs)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


# ---------------------------------------------------------------------------------------------
# the folded sections of one preset

@dataclass
class Group:
    """What the sections of one sweep group are built from (frames already cut to the group)."""
    name: str
    slug: str
    runs: pd.DataFrame
    history: pd.DataFrame
    table: pd.DataFrame
    sig: pd.DataFrame
    found: list  # [(dataset, [sentence, ...])]
    pit: pd.DataFrame
    out: Path
    draw: object  # Painter.draw
    fixed: pd.DataFrame = None  # a group that tunes: its ranking at tuned.fixed_lr (else None: one lr)
    all_runs: pd.DataFrame = None  # tuned runs: every (seed, lr) member (else the same as runs)
    all_history: pd.DataFrame = None  # tuned runs: the history of every member
    answer: dict = field(default_factory=dict)  # answers.answers' entry, completed by headline.complete
    scores: pd.DataFrame = None  # scorecard.scores of the group
    speed_runs: pd.DataFrame = None  # the members speed is read from: at the rate fastest to the target


def question_parts(text) -> tuple:
    """(the question itself, what follows it): the preset's text up to its first '?', then the rest."""
    if not text:
        return "", ""
    cut = text.find("?")
    return (text, "") if cut < 0 else (text[:cut + 1].strip(), text[cut + 1:].strip())


def answer_section(g: Group) -> list:
    """The preset's question in full and its answer's sentences (the details behind the verdict)."""
    rest = g.answer["context"] if "context" in g.answer else question_parts(g.answer.get("question"))[1]
    blocks = [{"kind": "text", "text": f"About this preset: {rest}"}] if rest else []
    said = [text for text, _ in g.answer.get("sentences", [])]
    return blocks + ([{"kind": "list", "items": said}] if said else [])


def scores_section(g: Group) -> list:
    """The loss x metric matrix: one table per dataset and setting, every test metric of the task, the
    best mean of each column in bold; then the same drawn."""
    s = g.scores
    if s is None or s.empty:
        return []
    s = s.assign(best=scorecard.best(s))
    at = " at each configuration's chosen learning rate" if g.fixed is not None else ""
    blocks = [{"kind": "text", "text": f"Mean test value over replicates{at}, with its 95 % interval; bold = the "
               "best mean of the column (a description: the head-to-head and significance tables test)."}]
    for (dataset, setting), d in s.groupby(["dataset", "setting"], sort=True):
        metrics = list(dict.fromkeys(d["metric"]))
        wide = d.set_index(["config", "metric"])
        main = g.table[(g.table["dataset"] == dataset) & (g.table["setting"] == setting)]
        order = [c for c in main.sort_values("rank")["config"] if (c, metrics[0]) in wide.index or
                 any((c, m) in wide.index for m in metrics)]
        rows = []
        for config in order:
            cells = [config.removesuffix(f" [{setting}]") if setting else config]
            bold = []
            for m in metrics:
                if (config, m) not in wide.index:
                    cells.append("n/a")
                    continue
                r = wide.loc[(config, m)]
                cells.append(f"{fmt(r['mean'], 3, pad=True)} ({fmt_ci(r['lo'], r['hi'], 3)})")
                if r["best"]:
                    bold.append(len(cells) - 1)
            rows.append({"cls": "", "cells": cells, "bold": bold})
        where = f"{dataset} at {setting}" if setting else dataset
        blocks.append({"kind": "table", "title": f"{where}: every test metric (loss × metric)",
                       "header": ["configuration", *(d.loc[d["metric"] == m, "label"].iloc[0] for m in metrics)],
                       "rows": rows,
                       "text_cols": [0]})
    # scores.draw gives each place a second panel, the forecast bias, where the runs record one
    bias = (s["metric"] == "bias").any()
    blocks.append(_figure(g.draw(scores.draw, s, g.out, f"{g.slug}-scores.png"), "scores",
                          "{figure} puts each configuration's test metrics against the best of each column: a loss "
                          "that optimises a metric sits at 1× in that metric's column" +
                          ("; its bias panel, the mean forecast bias (0: unbiased)."
                           if bias else "."),
                          "Per dataset, each metric's mean as a multiple of the column's best mean (log scale).", None))
    return blocks


def ranking_tables(table, note="") -> list:
    """One table per (dataset, setting): losses ranked at the same knob value (every other test metric
    is in the loss x metric matrix)."""
    blocks = []
    for (dataset, setting), t in table.groupby(["dataset", "setting"], sort=True):
        first = t.iloc[0]
        direction = "higher" if first["higher_is_better"] else "lower"
        goal = f"{'≥' if first['higher_is_better'] else '≤'} {fmt(first['target'])}"
        header = ["rank", "configuration", f"test {first['metric']}: mean (95 % CI)", "replicates with value",
                  f"epochs to val {goal} (median)", "seconds to target (median)", "replicates reaching target",
                  "status"]
        rows = []
        for _, r in t.iterrows():
            if r["seeds"] == 0:
                why = r["reason"] or r["status"]
                rows.append({"cls": "na", "cells": ["—", r["config"], "n/a", "—", "n/a", "n/a", "—",
                                                    f"{r['status']}: {why}"]})
                continue
            status = f"{r['done']} done" + (f", {r['diverged']} of {r['seeds']} diverged" if r["diverged"] else "")
            rows.append({"cls": "diverged" if r["diverged"] else "", "cells": [
                fmt(r["rank"]) if r["n"] else "—", r["config"],
                f"{fmt(r['mean'], pad=True)} ({fmt_ci(r['lo'], r['hi'])})" if r["n"] else "n/a (no test value)",
                f"{r['n']}/{r['seeds']}",
                "never" if math.isinf(r["epochs_median"]) else fmt(r["epochs_median"]),
                "never" if math.isinf(r["seconds_median"]) else fmt(r["seconds_median"], 3),
                f"{r['reached']}/{r['seeds']}", status]})
        where = f"{dataset} at {setting}" if setting else dataset
        blocks.append({"kind": "table", "title": f"{where} — test {first['metric']} ({direction} is better){note}",
                       "header": header, "rows": rows, "text_cols": [1, len(header) - 1]})
    return blocks


def ranking_section(g: Group) -> list:
    rule = {"kind": "text", "text": "Ranked within each dataset and setting. A configuration with a diverged "
            "replicate ranks after every configuration without one (its mean is over the replicates that "
            "survived)."}
    if g.fixed is None:
        return [rule, *ranking_tables(g.table)] if len(g.table) else [_empty("No runs in this group.")]
    lrs = ", ".join(fmt(v, 3) for v in sorted(g.fixed["lr"].dropna().unique()))
    why = "; ".join(sorted(g.fixed["lr_why"].dropna().unique()))
    return [rule, *ranking_tables(g.table, " — at each configuration's validation-chosen learning rate"),
            {"kind": "text", "text": f"The fixed-learning-rate view: every configuration at lr = {lrs} ({why}), "
             "so the order with and without tuning can be compared."},
            *ranking_tables(g.fixed, f" — every configuration at lr = {lrs}")]


def findings_section(g: Group) -> list:
    return [{"kind": "list", "title": dataset, "items": items} for dataset, items in g.found]


def knobs_section(g: Group) -> list:
    if robustness_applies(g) or knobs.knob(g.table["setting"]) is None:
        return []  # no numeric knob (or label noise, whose own figure draws it)
    grads = tables.curve_frame(g.runs, g.history, column="out_grad", split="train")
    budget = tables.budgets(g.history)
    epochs = float(budget.max()) if len(budget) else 0.0
    key, _ = knobs.knob(g.table["setting"])
    saturating = g.runs["activation"].isin(knobs.SATURATING).any()
    return [_figure(g.draw(knobs.draw, g.table, grads, epochs, g.out, f"{g.slug}-knobs.png"), "knobs",
                    f"{{figure}} draws the test metric and the epochs to the validation target against {key}, one "
                    "line per configuration, each point compared within its setting.",
                    f"Against {key}: the test metric (mean, 95 % interval), the median replicate's epochs to the "
                    "target (hollow: never reached)" + (", and the output gradient at epoch 0 (the outputs "
                                                       "that can saturate)." if saturating else "."), None)]


def significance_section(g: Group) -> list:
    if g.sig.empty:  # the canonical pairing was not trained here: the head-to-head compares the losses
        return []
    blocks = [_figure(g.draw(forest.draw, g.sig, g.table, g.out, f"{g.slug}-forest.png"), "forest",
                      "{figure} shows every configuration's paired comparison with the canonical pairing, with its "
                      "interval; a filled point holds after the Holm adjustment, a hollow one does not.",
                      "Each configuration against the canonical pairing on the final test metric, paired by "
                      "replicate, with the interval of the table below.", None),
              {"kind": "text", "text":
               "Estimate = configuration against the canonical pairing of the task (regression: linear+mse, "
               "binary: sigmoid+bce, multiclass: softmax+cce) on the final test metric: a difference, or a ratio "
               f"for errors. {claims.RULE} A diverged replicate counts as a loss: it takes the worst test value "
               "any replicate reached on the dataset at that setting."}]
    for (dataset, setting), s in g.sig.groupby(["dataset", "setting"], sort=True):
        rows = []
        for _, r in s.iterrows():
            c = r.to_dict()
            words = f"{claims.verdict(c, r['config'], r['reference'])} ({claims.evidence(c)})."
            rows.append({"cls": {"better": "better", "worse": "worse"}.get(r["verdict"], ""), "cells": [
                r["config"], claims.amount(c), claims.interval(c), str(r["n"]),
                fmt(r["p"], 2), fmt(r["p_holm"], 2), r["verdict"], words]})
        first = s.iloc[0]
        where = f"{dataset} at {setting}" if setting else dataset
        blocks.append({"kind": "table", "title": f"{where} — vs {first['reference']} (test {first['metric']}; "
                                                 f"{first['family']})",
                       "header": ["configuration", "estimate (config vs canonical)", "interval (Holm level)",
                                  "paired replicates", "p (paired t)", "p (Holm)", "verdict", "in words"], "rows": rows,
                       "text_cols": [0, 6, 7]})
    return blocks


def tuning_section(g: Group) -> list:
    """Tuned runs only: the sensitivity figure, the robustness finding and the grid-edge warnings."""
    if g.fixed is None:
        return []
    members = tuned_view.member_vals(g.all_runs, g.all_history)
    said = findings.tuning_findings(tuned_view.sensitivity(members, findings.TOLERANCE)).get(g.name, [])
    return [*({"kind": "list", "title": title, "items": items} for title, items in said),
            _figure(g.draw(sensitivity.draw, members, g.out, f"{g.slug}-sensitivity.png"), "sensitivity",
                    "{figure} shows how forgiving each configuration is about the step size: a flat line keeps its "
                    "score over a wide range of learning rates.",
                    "Final validation metric against the learning rate; a diverged learning rate leaves a gap; the "
                    "star marks the rate chosen on validation, whose test results the tables use.", None)]


def curves_section(g: Group) -> list:
    frame = tables.curve_frame(g.runs, g.history)
    targets = g.runs.dropna(subset=["target"]).groupby("dataset")["target"].first().to_dict()
    return [_figure(g.draw(curves.draw, frame, g.out, f"{g.slug}-curves.png", targets=targets,
                           title="Validation metric against epoch (mean over replicates, 95 % band)"), "curves",
                    "{figure} overlays every configuration's validation curve on one set of axes per dataset and "
                    "setting; one dataset's settings share a y axis.",
                    "Validation metric per epoch; the thin black line is the convergence target.", None)]


def heatmaps_section(g: Group) -> list:
    return [_figure(g.draw(heatmaps.draw, g.table, g.sig, g.out, f"{g.slug}-heatmap.png"), "heatmap",
                    "{figure} shows the final test metric over loss × activation, each cell coloured by how much "
                    "better or worse it is than the canonical pairing, on one scale per metric.",
                    "Mean final test metric over replicates, one panel per dataset and setting (never the best over "
                    "a setting); * marks a difference from the canonical pairing that holds after adjustment. The "
                    "colour scale ends at the 90th percentile of the differences; an arrow on the colour bar marks "
                    "cells beyond it, drawn at its end colour. A difference below one test example per replicate is a tie, "
                    "drawn white.", None)]


def speed_section(g: Group) -> list:
    workloads = len(set(zip(g.table["dataset"], g.table["setting"])))
    return [
        _figure(g.draw(speed.draw, g.speed_runs, tables.budgets(g.history), g.out, f"{g.slug}-speed.png"),
                "speed",
                "{figure} shows how many epochs each replicate needed to reach the validation target.",
                "Each point is one replicate; boxes show quartiles; points above the dashed line never reached the "
                "target within the run's epochs.", None),
        _figure(g.draw(profiles.draw, g.table, g.out, f"{g.slug}-profile.png"), "profile",
                f"{{figure}} is the performance profile over the {workloads} problems (dataset × setting).",
                "ρ(τ): the fraction of problems on which a configuration reaches the target within τ times the "
                "fastest configuration's time (Dolan & Moré); higher and further left is better.", None)]


def saturation_section(g: Group) -> list:
    bounded = g.runs[g.runs["activation"].isin(knobs.SATURATING)]
    if bounded.empty:
        return []  # linear or positive outputs do not saturate: the section does not apply
    grads = tables.curve_frame(bounded, g.history[g.history["run_id"].isin(bounded["run_id"])] if len(g.history)
                               else g.history, column="out_grad", split="train")
    return [_figure(
        g.draw(curves.draw, grads, g.out, f"{g.slug}-saturation.png", logy=True,
               ylabel="mean |∂loss/∂z| (log scale)",
               title="Output-gradient magnitude on the training data (mean over replicates, 95 % band)"),
        "saturation", "{figure} shows the output gradient of the saturating outputs (sigmoid, tanh, softmax) during "
        "training: where it collapses while the metric is still poor, learning stalls.",
        "Mean |∂loss/∂z| at the output on the training rows, per epoch, log scale.", None)]


def pitfall_section(g: Group) -> list:
    if g.pit.empty:
        return []  # no sigmoid+BCE run on multiclass data in this group: the section does not apply
    said = findings.pitfall_findings(g.pit).get(g.name, {})
    return [{"kind": "list", "items": [f"On {d}, {text}" for d, text in said.items()]},
            _figure(g.draw(pitfall.draw, g.pit, g.out, f"{g.slug}-pitfall.png"), "pitfall",
                    "{figure} shows the two 'accuracies' of the same sigmoid+BCE model on multiclass data.",
                    "With C classes and one-hot targets, a model that outputs 0 on every unit already scores 1 − 1/C "
                    "binary accuracy; Keras reports this number as 'accuracy' when the loss is binary_crossentropy.",
                    None)]


def robustness_applies(g: Group) -> bool:
    return not robustness.robustness_frame(g.runs, g.history).empty


def robustness_section(g: Group) -> list:
    frame = robustness.robustness_frame(g.runs, g.history)
    if frame.empty:
        return []  # no runs in this group differ in dataset.label_noise: the section does not apply
    said = findings.robustness_findings(robustness.summary(frame)).get(g.name, {})
    return [{"kind": "list", "items": [f"On {d}: {text}" for d, text in said.items()]},
            _figure(g.draw(robustness.draw, frame, g.out, f"{g.slug}-robustness.png"), "robustness",
                    "{figure} draws the clean test metric and the memorisation gap against the share of wrong "
                    "training labels, one line per configuration.",
                    "Left: clean test metric at the last epoch. Right: how much of its clean validation metric a loss "
                    "loses between its best epoch and the last (validation labels are clean, so the best epoch is "
                    "an oracle stop); each point is one noise level, compared within it only.", None)]


# (id, title, build): the folded sections of a preset, in order; each build returns the section's blocks
SECTIONS = [
    ("answer", "The answer in full", answer_section),
    ("scores", "Every metric per configuration (loss × metric)", scores_section),
    ("significance", "Against the canonical pairing", significance_section),
    ("knobs", "Against the knob", knobs_section),
    ("robustness", "Robustness to label noise", robustness_section),
    ("heatmaps", "Final metric over loss × activation", heatmaps_section),
    ("pitfall", "The pitfall: categorical vs element-wise accuracy", pitfall_section),
    ("findings", "Findings", findings_section),
    ("ranking", "Rankings, tuned and at the fixed learning rate", ranking_section),
    ("forecast", "What each loss forecasts", forecast.section),
    ("tuning", "Learning-rate sensitivity", tuning_section),
    ("curves", "Learning curves", curves_section),
    ("speed", "Convergence speed", speed_section),
    ("saturation", "Saturation: gradient at the output", saturation_section),
    ("calibration", "Calibration: before and after temperature scaling", calibration.section),
]


# ---------------------------------------------------------------------------------------------
# the page

def slug(group) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(group))


def chosen_history(runs, history) -> pd.DataFrame:
    """History rows of the chosen (seed, lr) members when runs are tuned; else history as it is."""
    if history.empty or runs["chosen"].all() or "lr" not in history:
        return history
    chosen = runs[runs["chosen"]][["run_id", "seed", "lr"]].astype({"seed": float, "lr": float})
    keyed = history.astype({"seed": float, "lr": float})
    return keyed.merge(chosen.drop_duplicates(), on=["run_id", "seed", "lr"], how="inner")


def appendix(runs, out, draw) -> list:
    """The analytic figures, once: the loss anatomy of every trained (loss, activation) pair."""
    trained = runs[runs["trained"]]
    found, notes = anatomy.curves(sorted(set(zip(trained["loss"], trained["activation"]))))
    return [_figure(draw(anatomy.draw, found, out, "anatomy.png"), "anatomy",
                    "{figure} draws each trained loss and its gradient against the logit, for one output unit: where "
                    "∂loss/∂z is small, gradient descent barely moves, however wrong the output is.",
                    "One output unit over a grid of logits, targets encoded as in training; for softmax, z is the "
                    "margin of class 1 over class 0.", None),
            *(_empty(f"Not drawn: {n}") for n in notes)]


def pixels(path) -> str:
    """A digest of a PNG's pixels (not its bytes: the metadata may differ where the image does not)."""
    from PIL import Image

    with Image.open(path) as image:
        return hashlib.sha256(image.convert("RGBA").tobytes() + str(image.size).encode()).hexdigest()


def number_figures(blocks_in_order, out) -> None:
    """Number the figures in the given order and give each lead its link; a figure whose pixels are
    those of an earlier one becomes a sentence pointing at that one (its file removed)."""
    seen, n = {}, 0
    for block in blocks_in_order:
        if block["kind"] != "figure":
            continue
        digest = pixels(out / block["src"])
        if digest in seen:
            first = seen[digest]
            (out / block["src"]).unlink()
            block.clear()
            block.update({"kind": "text", "lead": ("The same runs drew the same figure: see ", first, "."),
                          "text": ""})
            continue
        n += 1
        block["number"] = n
        seen[digest] = n
        before, _, after = block["lead"].partition("{figure}")
        block["lead"] = (before, n, after)


def sections(results_dir, out, painter, left_out=None) -> tuple:
    """Load the results, write the CSVs and findings.txt, hand the figures to `painter`; return
    (setup rows, presets, appendix blocks) for the template, figures resolved and numbered.
    left_out: a list, given the damaged run folders left out of it (store.load)."""
    from bench.store import load

    runs, history = load(results_dir, left_out)
    if runs.empty:
        return {"rows": [], "rules": []}, [], []
    every = tables.prepare(runs, results_dir)
    runs = every[every["chosen"]]  # tuned: each configuration at its validation-chosen lr
    every_history = history
    history = chosen_history(every, history)
    speed = every[every["speed_chosen"]]  # speed claims: at the lr that reaches the target fastest
    sig = tables.significance(runs)
    table = tables.ranking(runs, speed, sig)
    speed_sig = tables.speed_significance(speed, tables.budgets(history))
    fixed = tuned_view.fixed_view(every)  # None, or the tuned groups only (saturation trains one lr)
    tuned = tuned_view.tuned_groups(every)
    found = findings.findings(runs, table, sig, history, speed, speed_sig)
    pit = tables.pitfall_rows(runs, history)
    for group, by_dataset in findings.pitfall_findings(pit).items():
        for dataset, sentences in found.get(group, []):
            if dataset in by_dataset:
                sentences.append(by_dataset[dataset])
    said = answers.answers(runs, table, sig, history, lambda group, key: f"#{slug(group)}-{key}", fixed, speed)
    table.to_csv(out / "ranking.csv", index=False)
    if fixed is not None:
        fixed.to_csv(out / "ranking-fixed-lr.csv", index=False)
    sig.to_csv(out / "significance.csv", index=False)
    speed_sig.to_csv(out / "speed-significance.csv", index=False)
    tuned_every = every[every["group"].isin(tuned)]
    tuning = findings.tuning_findings(tuned_view.sensitivity(tuned_view.member_vals(tuned_every, every_history),
                                                         findings.TOLERANCE)) if tuned else {}
    (out / "findings.txt").write_text(answers.as_text(said) + "".join(
        f"[{g}] {d}: {s}\n" for found_ in (found, tuning) for g, ds in found_.items() for d, ss in ds for s in ss))
    by_group = {a["group"]: a for a in said}
    order = answers.story_order(runs["group"].unique())
    all_scores = scorecard.scores(runs)
    presets = []
    for name in order:
        r = runs[runs["group"] == name]
        t = table[table["group"] == name]
        answer = headline.complete(by_group.get(name, {"group": name, "question": None, "sentences": []}), r, t)
        g = Group(name=name, slug=slug(name), runs=r,
                  history=history[history["run_id"].isin(r["run_id"])] if len(history) else history,
                  table=t, sig=sig[sig["group"] == name], found=found.get(name, []),
                  pit=pit[pit["group"] == name] if len(pit) else pit, out=out, draw=painter.draw,
                  fixed=fixed[fixed["group"] == name] if name in tuned else None,
                  all_runs=every[every["group"] == name],
                  all_history=every_history[every_history["run_id"].isin(r["run_id"])] if len(every_history)
                  else every_history, answer=answer, scores=all_scores[all_scores["group"] == name],
                  speed_runs=speed[speed["group"] == name])
        trained = r.loc[r["trained"], "config"].nunique()
        presets.append({
            "name": name, "id": g.slug, "answer": answer, "question": question_parts(answer.get("question"))[0],
            "h2h": headline.rows_for_page(answer["head_to_head"]),  # (rows, notes)
            "families": list(dict.fromkeys(answer["head_to_head"]["family"])),
            "facts": f"{plural(r['run_id'].nunique(), 'run')}, {plural(r['dataset'].nunique(), 'dataset')}, "
                     f"{plural(trained, 'trained configuration')}, "
                     f"{plural(int(r['seed'].nunique()), 'replicate')}",
            "sections": [{"id": f"{g.slug}-{key}", "title": title, "blocks": build_blocks(g)}
                         for key, title, build_blocks in SECTIONS]})
    extra = appendix(runs, out, painter.draw)
    for p in presets:
        for section in p["sections"]:
            section["blocks"] = [b for b in map(resolve, section["blocks"]) if b is not None]
        p["key"] = take_key_figure(p)
        # a section applies when it has something to show beyond its explanatory text
        p["sections"] = [s for s in p["sections"] if any(b["kind"] != "text" for b in s["blocks"])]
    extra = [b for b in map(resolve, extra) if b is not None]
    # the verdicts' figures first (what the page shows unfolded), then the folded ones in page order
    number_figures([p["key"] for p in presets if p["key"]] +
                   [b for p in presets for s in p["sections"] for b in s["blocks"]] + extra, out)
    ids = {s["id"] for p in presets for s in p["sections"]}
    for p in presets:  # the answer's evidence links point at a section on the page (else at the preset)
        p["answer"]["sentences"] = [(text, href if href[1:] in ids else f"#{p['id']}")
                                    for text, href in p["answer"].get("sentences", [])]
    return setup_box.setup(results_dir, runs, order), presets, extra


def take_key_figure(preset) -> dict | None:
    """Move the figure that shows the preset's verdict out of its folded sections (KEY_FIGURE, else the
    first of FALLBACK it has); None when it has none of them."""
    for kind in (KEY_FIGURE.get(preset["name"]), *FALLBACK):
        for section in preset["sections"]:
            for block in section["blocks"]:
                if block["kind"] == "figure" and block["figure"] == kind:
                    section["blocks"].remove(block)
                    return block
    return None


def build(results_dir="results", out=None, workers=2) -> Path:
    """Load `results_dir`, write the PNGs, CSVs and index.html into `out`; return the page's path.

    workers: processes drawing the figures (1 = inline)."""
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results_dir={str(results_dir)!r} is not a directory; run a sweep first (make sweep) "
                        "or pass the folder that holds <group>/<run_id>/summary.json")
    out = Path(out) if out is not None else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # figures of groups that no longer exist must not linger
        old.unlink()
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)

    # fork the figure workers now, before pyarrow (load) or torch (anatomy) start threads here
    painter = Painter(min(workers, machine.cores()))
    left_out = []  # damaged run folders: named on stderr and counted on the page
    try:
        setup_rows, presets, extra = sections(results_dir, out, painter, left_out)
    finally:
        painter.close()
    for path, problem in left_out:
        print(left_out_line(path, problem), file=sys.stderr, flush=True)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        setup_header=setup_box.HEADER, setup=setup_rows, presets=presets, appendix=extra,
        h2h_header=headline.PAGE_HEADER, results_dir=str(results_dir), built=time.strftime("%Y-%m-%d %H:%M:%S"),
        left_out=[(str(path.relative_to(results_dir)), problem) for path, problem in left_out],
        seconds=f"{time.perf_counter() - started:.1f}")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
