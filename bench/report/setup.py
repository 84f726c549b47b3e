"""The setup box: what was trained, per preset, read from the results themselves (each run's
config.yaml and summary.json), never from the defaults in conf/: the model and its widths, the
optimizer, epochs, batch size, replicates and what they vary, the learning-rate grid and its rule, the
test rows per dataset. A fact that differs between a group's runs lists every value it takes.

    setup(results_dir, runs, order)   {"rows": [{"group", "cells": [...]}] in `order`, "rules": [...]};
                                      HEADER names the cells, a learning-rate cell refers to its rule
"""
import json

from bench.report.tables import fmt

HEADER = ["preset", "what it varies", "model", "optimizer", "epochs × batch", "replicates", "learning rate",
          "test rows per replicate"]


def _yaml(path):
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        config = yaml.load(path.read_text(), Loader=loader) if path.is_file() else None
    except yaml.YAMLError:
        config = None
    return config if isinstance(config, dict) else {}


def _get(tree, dotted, default=None):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def _values(items) -> str:
    """Distinct values in first-seen order, ' / '-joined; '—' when none is known."""
    seen = [v for v in dict.fromkeys(items) if v not in (None, "")]
    return " / ".join(seen) if seen else "—"


def _model(config) -> str | None:
    name = _get(config, "model.name")
    if name is None:
        return None
    widths = _get(config, "model.hidden") or _get(config, "model.channels")
    hidden = _get(config, "model.activation")
    return (name.upper() + (f" {'-'.join(str(w) for w in widths)}" if widths else "")
            + (f", {hidden}" if hidden else ""))


def _optimizer(config, summary) -> str | None:
    name = _get(config, "optimizer.name") or summary.get("optimizer")
    momentum = _get(config, "optimizer.momentum")
    return None if name is None else name + (f" (momentum {fmt(momentum)})" if momentum else "")


def _replicates(config, summary) -> str | None:
    seeds = _get(config, "seeds") or summary.get("seeds")
    if not seeds:
        return None
    if summary.get("resample"):
        varies = "each its own split, initialisation and batch order"
    else:
        varies = f"initialisation and batch order; one split (split_seed {_get(config, 'dataset.split_seed', 0)})"
    return f"{len(seeds)}: {varies}"


def _learning_rate(summary, rules) -> str | None:
    """'tuned over 7 values, 0.003–3 (rule 1)' for the declared grid, the rule's text added to `rules`
    once; a grid the run extended past an edge is counted by `_extended`."""
    grid = summary.get("lr_declared") or summary.get("lr_grid") or (
        [summary["lr"]] if isinstance(summary.get("lr"), (int, float)) else None)
    if not grid:
        return None
    if len(grid) == 1:
        return f"fixed at {fmt(grid[0], 3)}"
    selection = summary.get("lr_selection") or {}
    rule = "; ".join(selection[k] for k in ("rule", "speed_rule", "extension") if selection.get(k)) \
        or "chosen on validation"
    if rule not in rules:
        rules.append(rule)
    return f"tuned over {len(grid)} values, {fmt(min(grid), 3)}–{fmt(max(grid), 3)} (rule {rules.index(rule) + 1})"


def _extended(summaries) -> str:
    """'; grid extended past an edge for 3 of 24 runs; the cap hit (optimum not inside) for 1'."""
    tuned = [s for s in summaries if s.get("lr_declared")]
    grown = sum(bool((s.get("lr_extended") or {}).get("below") or (s.get("lr_extended") or {}).get("above"))
                for s in tuned)
    capped = sum(s.get("tuned") is False for s in tuned)
    return ((f"; grid extended past an edge for {grown} of {len(tuned)} runs" if grown else "")
            + (f"; the optimum not inside the grid's cap for {capped}" if capped else ""))


def setup(results_dir, runs, order) -> list:
    """One row per group of `order`: the facts of its runs, each cell the distinct values they take."""
    from bench.store import run_dir

    rows, rules = [], []
    for group in order:
        r = runs[runs["group"] == group]
        trained = r[r["trained"]]
        facts = {k: [] for k in HEADER[2:]}
        tests, summaries = {}, []
        for rid in trained["run_id"].unique():
            path = run_dir(results_dir, group, rid)
            config = _yaml(path / "config.yaml")
            try:
                summary = json.loads((path / "summary.json").read_text())
            except (OSError, ValueError):
                summary = {}
            summaries.append(summary)
            facts["model"].append(_model(config))
            facts["optimizer"].append(_optimizer(config, summary))
            epochs, batch = _get(config, "trainer.epochs", summary.get("epochs")), _get(config, "trainer.batch_size")
            facts["epochs × batch"].append(None if epochs is None else f"{epochs} × {batch if batch else '?'}")
            facts["replicates"].append(_replicates(config, summary))
            facts["learning rate"].append(_learning_rate(summary, rules))
            test = (summary.get("split_sizes") or {}).get("test")
            tests.setdefault(summary.get("dataset"), set()).add(test)
        facts["test rows per replicate"] = [
            "; ".join(f"{d} {' / '.join(str(t) for t in sorted(v, key=str) if t is not None) or 'not recorded'}"
                      for d, v in sorted(tests.items(), key=lambda kv: str(kv[0])))]
        cells = {k: _values(facts[k]) for k in HEADER[2:]}
        cells["learning rate"] += _extended(summaries)
        rows.append({"group": group, "cells": [group, _varies(trained), *cells.values()]})
    return {"rows": rows, "rules": rules}


def _varies(trained) -> str:
    """'breast_cancer, digits × linear, sigmoid × mse, bce; dataset.contamination 0.0, 0.1' (datasets ×
    outputs × losses, then each knob with its values)."""
    axes = [", ".join(sorted(set(trained[k].astype(str)))) for k in ("dataset", "activation", "loss")]
    knobs = {}
    for setting in trained["setting"].unique() if "setting" in trained else []:
        for part in str(setting).split():
            key, _, value = part.partition("=")
            knobs.setdefault(key, []).append(value)
    return " × ".join(a for a in axes if a) + "".join(
        f"; {key} {', '.join(sorted(set(v), key=_number))}" for key, v in knobs.items())


def _number(text):
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
