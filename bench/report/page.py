"""The page: per sweep group, a list of sections (a title and a function that builds its blocks),
the figure painter and the HTML template.

A block is a dict the template renders by `kind`: text | list | table | figure | empty. Figures are
handed to the `Painter` while the page is assembled and resolved to their file names at the end.
A section is shown only where it applies: a figure block whose `empty` is None disappears when
there is nothing to draw, and a section left without blocks is not on the page.

To add a section: write `my_section(g: Group) -> [block, ...]` and append
("my-id", "Title", my_section) to SECTIONS (or `SECTIONS.insert` where it belongs).
"""
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import machine
from bench.errors import UserError
from bench.store import left_out_line
from bench.report import answers, findings, tables
from bench.report import tuned as tuned_view
from bench.report.figures import anatomy, curves, heatmaps, pitfall, profiles, robustness, sensitivity, speed
from bench.report.tables import ALPHA, fmt, fmt_ci


# ---------------------------------------------------------------------------------------------
# blocks and the painter

def _empty(text):
    return {"kind": "empty", "text": text}


def _figure(pending, caption, empty):
    """A figure block whose file is still being drawn: `resolve` turns it into the image or `empty`."""
    return {"kind": "figure", "pending": pending, "caption": caption, "empty": empty}


def resolve(block):
    """The block with its figure drawn; None when there was nothing to draw and the section does not
    apply (`empty` is None)."""
    if block["kind"] != "figure" or "pending" not in block:
        return block
    name = block["pending"].result()
    if name:
        return {"kind": "figure", "src": name, "caption": block["caption"]}
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
# the sections of one group

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
    anatomy: tuple  # (curves, notes) for every trained pair in the results
    out: Path
    draw: object  # Painter.draw
    fixed: pd.DataFrame = None  # a group that tunes: its ranking at tuned.fixed_lr (else None: one lr)
    all_runs: pd.DataFrame = None  # tuned runs: every (seed, lr) member (else the same as runs)
    all_history: pd.DataFrame = None  # tuned runs: the history of every member


def findings_section(g: Group) -> list:
    return [{"kind": "list", "title": dataset, "items": items} for dataset, items in g.found] \
        or [_empty("No finished runs with a test value in this group.")]


def ranking_tables(table, note="") -> list:
    """One table per (dataset, setting): losses ranked at the same knob value."""
    blocks = []
    for (dataset, setting), t in table.groupby(["dataset", "setting"], sort=True):
        first = t.iloc[0]
        direction = "higher" if first["higher_is_better"] else "lower"
        goal = f"{'≥' if first['higher_is_better'] else '≤'} {fmt(first['target'])}"
        bias = "bias" in t and t["bias"].notna().any()
        header = ["rank", "configuration", f"test {first['metric']}: mean (95 % CI)", "seeds with value",
                  *(["bias (% of mean target)"] if bias else []),
                  f"epochs to val {goal} (median)", "seconds to target (median)", "seeds reaching target",
                  "status"]
        rows = []
        for _, r in t.iterrows():
            if r["seeds"] == 0:
                why = r["reason"] or r["status"]
                rows.append({"cls": "na", "cells": ["—", r["config"], "n/a", "—", *(["n/a"] if bias else []),
                                                    "n/a", "n/a", "—", f"{r['status']}: {why}"]})
                continue
            status = f"{r['done']} done" + (f", {r['diverged']} of {r['seeds']} diverged" if r["diverged"] else "")
            rows.append({"cls": "diverged" if r["diverged"] else "", "cells": [
                fmt(r["rank"]) if r["n"] else "—", r["config"],
                f"{fmt(r['mean'], pad=True)} ({fmt_ci(r['lo'], r['hi'])})" if r["n"] else "n/a (no test value)",
                f"{r['n']}/{r['seeds']}", *([f"{r['bias']:+.1f}" if pd.notna(r["bias"]) else "n/a"] if bias else []),
                "never" if math.isinf(r["epochs_median"]) else fmt(r["epochs_median"]),
                "never" if math.isinf(r["seconds_median"]) else fmt(r["seconds_median"], 3),
                f"{r['reached']}/{r['seeds']}", status]})
        where = f"{dataset} at {setting}" if setting else dataset
        blocks.append({"kind": "table", "title": f"{where} — test {first['metric']} ({direction} is better){note}",
                       "header": header, "rows": rows, "text_cols": [1, len(header) - 1]})
    return blocks


def ranking_section(g: Group) -> list:
    rule = {"kind": "text", "text": "Ranked within each dataset and setting. A configuration with a diverged "
            "seed ranks after every configuration without one (its mean is over the seeds that survived)."}
    if g.fixed is None:
        return [rule, *ranking_tables(g.table)] if len(g.table) else [_empty("No runs in this group.")]
    lrs = ", ".join(fmt(v, 3) for v in sorted(g.fixed["lr"].dropna().unique()))
    why = "; ".join(sorted(g.fixed["lr_why"].dropna().unique()))
    return [rule, *ranking_tables(g.table, " — at each configuration's validation-chosen learning rate"),
            {"kind": "text", "text": f"The fixed-learning-rate view: every configuration at lr = {lrs} ({why}), "
             "so the order with and without tuning can be compared."},
            *ranking_tables(g.fixed, f" — every configuration at lr = {lrs}")]


def curves_section(g: Group) -> list:
    frame = tables.curve_frame(g.runs, g.history)
    targets = g.runs.dropna(subset=["target"]).groupby("dataset")["target"].first().to_dict()
    no_curves = "No learning curves: no trained run has a history."
    return [
        _figure(g.draw(curves.draw, frame, g.out, f"{g.slug}-curves-epoch.png", x="epoch", xlabel="epoch",
                       targets=targets, title="Validation metric vs epoch (mean over seeds, 95 % band)"),
                "Rows: datasets; columns: output activation; colour: loss. The thin black line is the "
                "convergence target.", no_curves),
        _figure(g.draw(curves.draw, frame, g.out, f"{g.slug}-curves-seconds.png", x="train_seconds",
                       xlabel="training time (s, evaluation excluded)", targets=targets,
                       title="Validation metric vs training time (mean over seeds, 95 % band)"),
                "The same curves against training seconds (the seeds of a run train together, so the time "
                "axis is the run's).", no_curves)]


def heatmaps_section(g: Group) -> list:
    return [_figure(g.draw(heatmaps.draw, g.table, g.out, f"{g.slug}-heatmap.png"),
                    "Mean final test metric over seeds, one panel per dataset and setting (never the best over "
                    "a setting); lighter is better in every panel.", None)]


def speed_section(g: Group) -> list:
    return [
        _figure(g.draw(speed.draw, g.runs, tables.budgets(g.history), g.out, f"{g.slug}-speed.png"),
                "Each point is one seed; boxes show quartiles. Points above the dashed line never reached the "
                "target within the run's epochs.", "No trained runs: nothing to time."),
        _figure(g.draw(profiles.draw, g.table, g.out, f"{g.slug}-profile.png"),
                "ρ(τ): the fraction of datasets on which a configuration reaches the target within τ times the "
                "fastest configuration's time (Dolan & Moré). Higher and further left is better; ρ(1) is the "
                "share of datasets on which it is the fastest.",
                None)]


def saturation_section(g: Group) -> list:
    grads = tables.curve_frame(g.runs, g.history, column="out_grad", split="train")
    return [_figure(
        g.draw(curves.draw, grads, g.out, f"{g.slug}-saturation.png", x="epoch", logy=True, xlabel="epoch",
               ylabel="mean |∂loss/∂z| (log scale)",
               title="Output-gradient magnitude on the training data vs epoch (mean over seeds, 95 % band)"),
        "A gradient that collapses while the metric is still poor means the output saturated (e.g. "
        "sigmoid+MSE far from the target): learning stalls.", None)]


def anatomy_section(g: Group) -> list:
    found, notes = g.anatomy
    trained = g.runs[g.runs["trained"]]
    pairs = set(zip(trained["activation"], trained["loss"]))
    mine = [c for c in found if (c[1], c[0]) in pairs]
    return [_figure(g.draw(anatomy.draw, mine, g.out, f"{g.slug}-anatomy.png"),
                    "Why losses learn differently: where ∂loss/∂z is small, gradient descent barely moves, however "
                    "wrong the output is (sigmoid+MSE far on the wrong side). One output unit over a grid of "
                    "logits, targets encoded as in training; for softmax, z is the margin of class 1 over class 0.",
                    "No trained (loss, activation) pair to draw.")] + \
        [_empty(f"Not drawn: {n}") for n in notes if tuple(n.split(",")[0].split("+", 1)) in pairs]


def pitfall_section(g: Group) -> list:
    if g.pit.empty:
        return []  # no sigmoid+BCE run on multiclass data in this group: the section does not apply
    said = findings.pitfall_findings(g.pit).get(g.name, {})
    return [{"kind": "list", "items": [f"On {d}, {text}" for d, text in said.items()]},
            _figure(g.draw(pitfall.draw, g.pit, g.out, f"{g.slug}-pitfall.png"),
                    "With C classes and one-hot targets, a model that outputs 0 on every unit already scores "
                    "1 − 1/C binary accuracy; Keras reports this number as 'accuracy' when the loss is "
                    "binary_crossentropy.", "")]


def robustness_section(g: Group) -> list:
    frame = robustness.robustness_frame(g.runs, g.history)
    if frame.empty:
        return []  # no runs in this group differ in dataset.label_noise: the section does not apply
    said = findings.robustness_findings(robustness.summary(frame)).get(g.name, {})
    return [{"kind": "list", "items": [f"On {d}: {text}" for d, text in said.items()]},
            _figure(g.draw(robustness.draw, frame, g.out, f"{g.slug}-robustness.png"),
                    "Left: clean test metric at the last epoch against the share of wrong training labels. Right: "
                    "how much of its clean validation metric a loss loses between its best epoch and the last "
                    "(memorisation of the wrong labels). Validation labels are clean, so the best epoch is an "
                    "oracle stop; each point is one noise level, compared within it only.", "")]


def significance_section(g: Group) -> list:
    blocks = [{"kind": "text", "text":
               "Difference = configuration − canonical pairing of the task (regression: linear+mse, "
               "binary: sigmoid+bce, multiclass: softmax+cce) on the final test metric, paired by "
               "seed; 95 % t interval (not adjusted) and paired t-test, Holm-corrected over the "
               f"comparisons of each dataset at α = {ALPHA}."}]
    if g.sig.empty:  # the canonical pairing was not trained here: the answers compare the losses directly
        return []
    blocks[0]["text"] += (" A diverged seed counts as a loss: it takes the worst test value any seed reached "
                          "on the dataset.")
    for (dataset, setting), s in g.sig.groupby(["dataset", "setting"], sort=True):
        rows = []
        for _, r in s.iterrows():
            if math.isnan(r["p_holm"]):
                words = f"n/a: {r['note']}"
            else:
                lower = "higher" if r["diff"] > 0 else "lower"
                words = (f"{r['config']} scores {fmt(abs(r['diff']), 3, pad=True)} {lower} {r['metric']} than {r['reference']} "
                         f"(95 % CI of the difference {fmt_ci(r['lo'], r['hi'], 3)}; Holm-adjusted p = "
                         f"{fmt(r['p_holm'], 2)}, {r['n']} paired seeds): {r['verdict']}.")
            rows.append({"cls": {"better": "better", "worse": "worse"}.get(r["verdict"], ""), "cells": [
                r["config"], fmt(r["diff"], 3, pad=True), fmt_ci(r["lo"], r["hi"], 3), str(r["n"]),
                fmt(r["p"], 2), fmt(r["p_holm"], 2), r["verdict"], words]})
        first = s.iloc[0]
        where = f"{dataset} at {setting}" if setting else dataset
        blocks.append({"kind": "table", "title": f"{where} — vs {first['reference']} (test {first['metric']})",
                       "header": ["configuration", "difference (config − canonical)", "95 % CI", "paired seeds",
                                  "p (paired t)", "p (Holm)", "verdict", "in words"], "rows": rows,
                       "text_cols": [0, 6, 7]})
    return blocks


def tuning_section(g: Group) -> list:
    """Tuned runs only: the sensitivity figure, the robustness finding and the grid-edge warnings."""
    if g.fixed is None:
        return []
    members = tuned_view.member_vals(g.all_runs, g.all_history)
    said = findings.tuning_findings(tuned_view.sensitivity(members, findings.TOLERANCE)).get(g.name, [])
    return [*({"kind": "list", "title": title, "items": items} for title, items in said),
            _figure(g.draw(sensitivity.draw, members, g.out, f"{g.slug}-sensitivity.png"),
                    "How forgiving each loss is about the step size: a flat line keeps its score over a wide range "
                    "of learning rates; a diverged learning rate leaves a gap. The star marks the learning rate "
                    "chosen on validation, whose test results the rankings use.", None)]


# (id, title, build): the page's sections in order; each build returns the section's blocks
SECTIONS = [
    ("findings", "Findings", findings_section),
    ("ranking", "Ranking per dataset", ranking_section),
    ("tuning", "Learning-rate sensitivity", tuning_section),
    ("curves", "Learning curves", curves_section),
    ("heatmaps", "Final metric over loss × activation", heatmaps_section),
    ("speed", "Convergence speed", speed_section),
    ("saturation", "Saturation: gradient at the output", saturation_section),
    ("anatomy", "Loss anatomy", anatomy_section),
    ("pitfall", "The pitfall: categorical vs element-wise accuracy", pitfall_section),
    ("significance", "Significance against the canonical pairing", significance_section),
    ("robustness", "Robustness to label noise", robustness_section),
]


# ---------------------------------------------------------------------------------------------
# the page

def slug(group) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(group))


def anatomy_for(runs) -> tuple:
    """(curves, notes): anatomy curves for every trained (loss, activation) in the results."""
    trained = runs[runs["trained"]]
    return anatomy.curves(sorted(set(zip(trained["loss"], trained["activation"]))))


def chosen_history(runs, history) -> pd.DataFrame:
    """History rows of the chosen (seed, lr) members when runs are tuned; else history as it is."""
    if history.empty or runs["chosen"].all() or "lr" not in history:
        return history
    chosen = runs[runs["chosen"]][["run_id", "seed", "lr"]].astype({"seed": float, "lr": float})
    keyed = history.astype({"seed": float, "lr": float})
    return keyed.merge(chosen.drop_duplicates(), on=["run_id", "seed", "lr"], how="inner")


def sections(results_dir, out, painter, left_out=None) -> tuple:
    """Load the results, write the CSVs and findings.txt, hand the figures to `painter`; return
    (answers, groups) for the template, figures resolved. left_out: a list, given the damaged run
    folders left out of it (store.load)."""
    from bench.store import load

    runs, history = load(results_dir, left_out)
    if runs.empty:
        return [], []
    every = tables.prepare(runs, results_dir)
    runs = every[every["chosen"]]  # tuned: each configuration at its validation-chosen lr
    every_history = history
    history = chosen_history(every, history)
    table = tables.ranking(runs)
    fixed = tuned_view.fixed_view(every)  # None, or the tuned groups only (saturation trains one lr)
    tuned = tuned_view.tuned_groups(every)
    sig = tables.significance(runs)
    found = findings.findings(runs, table, sig, history)
    pit = tables.pitfall_rows(runs, history)
    for group, by_dataset in findings.pitfall_findings(pit).items():
        for dataset, sentences in found.get(group, []):
            if dataset in by_dataset:
                sentences.append(by_dataset[dataset])
    said = answers.answers(runs, table, sig, history, lambda group, key: f"#{slug(group)}-{key}", fixed)
    drawn = anatomy_for(runs)
    table.to_csv(out / "ranking.csv", index=False)
    if fixed is not None:
        fixed.to_csv(out / "ranking-fixed-lr.csv", index=False)
    sig.to_csv(out / "significance.csv", index=False)
    tuned_every = every[every["group"].isin(tuned)]
    tuning = findings.tuning_findings(tuned_view.sensitivity(tuned_view.member_vals(tuned_every, every_history),
                                                         findings.TOLERANCE)) if tuned else {}
    (out / "findings.txt").write_text(answers.as_text(said) + "".join(
        f"[{g}] {d}: {s}\n" for found_ in (found, tuning) for g, ds in found_.items() for d, ss in ds for s in ss))
    groups = []
    for name in sorted(runs["group"].unique()):
        r = runs[runs["group"] == name]
        g = Group(name=name, slug=slug(name), runs=r,
                  history=history[history["run_id"].isin(r["run_id"])] if len(history) else history,
                  table=table[table["group"] == name], sig=sig[sig["group"] == name], found=found.get(name, []),
                  pit=pit[pit["group"] == name] if len(pit) else pit, anatomy=drawn, out=out, draw=painter.draw,
                  fixed=fixed[fixed["group"] == name] if name in tuned else None,
                  all_runs=every[every["group"] == name],
                  all_history=every_history[every_history["run_id"].isin(r["run_id"])] if len(every_history)
                  else every_history)
        trained = r.loc[r["trained"], "config"].nunique()
        groups.append({
            "name": name, "id": g.slug,
            "facts": f"{plural(r['run_id'].nunique(), 'run')}, {plural(r['dataset'].nunique(), 'dataset')}, "
                     f"{plural(trained, 'trained configuration')}, {plural(int(r['seed'].nunique()), 'seed')}",
            "sections": [{"id": f"{g.slug}-{key}", "title": title, "blocks": build_blocks(g)}
                         for key, title, build_blocks in SECTIONS]})
    for g in groups:
        for section in g["sections"]:
            section["blocks"] = [b for b in map(resolve, section["blocks"]) if b is not None]
        # a section applies when it has something to show beyond its explanatory text
        g["sections"] = [s for s in g["sections"] if any(b["kind"] != "text" for b in s["blocks"])]
    ids = {s["id"] for g in groups for s in g["sections"]}
    for a in said:  # evidence links point at a section on the page (else at the group)
        a["id"] = slug(a["group"])
        a["sentences"] = [(text, href if href[1:] in ids else f"#{a['id']}") for text, href in a["sentences"]]
    return said, groups


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
        said, groups = sections(results_dir, out, painter, left_out)
    finally:
        painter.close()
    for path, problem in left_out:
        print(left_out_line(path, problem), file=sys.stderr, flush=True)
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        answers=said, groups=groups, results_dir=str(results_dir),
        left_out=[(str(path.relative_to(results_dir)), problem) for path, problem in left_out],
        built=time.strftime("%Y-%m-%d %H:%M:%S"), seconds=f"{time.perf_counter() - started:.1f}")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
