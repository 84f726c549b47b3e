"""`python -m bench.results [results_dir]`: a compact ranking table of the stored runs, in the terminal.

For each group (sweep preset) and dataset, the configurations ranked by their mean test main metric
over seeds (best first), with the spread over seeds, the epochs to the validation target (median
over the seeds that reached it) and how many seeds reached it. Settings that vary between the runs
of a dataset besides activation and loss (say model.out_init_scale) are shown after the name.
Runs that are invalid, failed or diverged are counted under each group.

    $ python -m bench.results results
    saturation: 6 runs (6 done)
      digits: test accuracy, higher is better; target 0.95 on val
         #  configuration                   test accuracy   epochs to target  reached
         1  sigmoid+bce out_init_scale=30   0.9594 ± 0.011               6.0      5/5
         ...
"""
import math
import sys
from pathlib import Path

from bench.errors import UserError

# config keys that never tell two runs of one table apart (or are shown elsewhere)
IGNORED = ("results_dir", "force", "group", "progress", "seeds", "device", "trainer.threads",
           "dataset.name", "activation.name", "loss.name", "trainer.compile")


def flat(tree, prefix="") -> dict:
    """Nested config dict -> {"model.out_init_scale": 30, ...} (lists kept as values)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def varying_settings(paths) -> dict:
    """{run folder: 'key=value ...'} for the config keys that differ between these run folders."""
    import yaml

    configs = {}
    for path in paths:
        file = Path(path) / "config.yaml"
        configs[path] = flat(yaml.safe_load(file.read_text())) if file.is_file() else {}
    # keys every run has (a loss parameter of one loss only is not a difference between runs)
    keys = sorted(set.intersection(*(set(c) for c in configs.values())) - set(IGNORED)) if configs else []
    differing = [k for k in keys if len({repr(c[k]) for c in configs.values()}) > 1]
    return {p: " ".join(f"{k.split('.')[-1]}={c[k]}" for k in differing) for p, c in configs.items()}


def number(value, digits=4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def table(results_dir) -> str:
    """The ranking table of every complete run under results_dir, as text."""
    import pandas as pd

    from bench.store import load

    runs, _ = load(results_dir)
    if runs.empty:
        return f"no finished runs under {results_dir}"
    lines = []
    for group, g in runs.groupby("group", sort=True):
        per_run = g.drop_duplicates("run_id")
        counts = per_run["status"].value_counts()
        lines.append(f"{group}: {len(per_run)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
        trained = g[g["status"].isin(["done", "diverged"])]
        for dataset, d in trained.groupby("dataset", sort=True):
            metric, higher = d["metric"].iloc[0], bool(d["higher_is_better"].iloc[0])
            labels = varying_settings([Path(results_dir) / group / r for r in d["run_id"].unique()])
            rows = []
            for rid, r in d.groupby("run_id", sort=False):
                values = pd.to_numeric(r.get(f"test_{metric}"), errors="coerce").dropna()
                epochs = pd.to_numeric(r["epochs_to_target"], errors="coerce").dropna()
                extra = labels[Path(results_dir) / group / rid]
                rows.append({
                    "name": f"{r['activation'].iloc[0]}+{r['loss'].iloc[0]}" + (f" {extra}" if extra else ""),
                    "mean": values.mean() if len(values) else math.nan,
                    "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                    "epochs": epochs.median() if len(epochs) else math.nan,
                    "reached": f"{len(epochs)}/{len(r)}",
                    "diverged": int((r["seed_status"] == "diverged").sum()),
                })
            rows.sort(key=lambda row: (math.isnan(row["mean"]), -row["mean"] if higher else row["mean"]))
            width = max(13, *(len(row["name"]) for row in rows))
            direction = "higher" if higher else "lower"
            lines.append(f"  {dataset}: test {metric}, {direction} is better; "
                         f"target {number(d['target'].iloc[0])} on val")
            lines.append(f"    {'#':>2}  {'configuration':<{width}}  {'test ' + metric:>18}  "
                         f"{'epochs to target':>16}  reached")
            for rank, row in enumerate(rows, 1):
                score = f"{number(row['mean'])} ± {number(row['std'], 2)}"
                note = f"  ({row['diverged']} diverged)" if row["diverged"] else ""
                lines.append(f"    {rank:>2}  {row['name']:<{width}}  {score:>18}  "
                             f"{number(row['epochs'], 3):>16}  {row['reached']:>7}{note}")
        for status in ("invalid", "failed"):
            bad = per_run[per_run["status"] == status]
            if len(bad):
                names = ", ".join(sorted(f"{r.dataset} {r.activation}+{r.loss}" for r in bad.itertuples()))
                lines.append(f"  {status} ({len(bad)}): {names}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) > 1 or (argv and argv[0].startswith("-")):
            raise UserError(f"arguments {' '.join(argv)!r} are not allowed; usage: python -m bench.results "
                            "[results_dir]")
        results_dir = argv[0] if argv else "results"
        if not Path(results_dir).is_dir():
            raise UserError(f"results_dir={results_dir} is not a folder; pass the folder holding the "
                            "runs, e.g. results")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
