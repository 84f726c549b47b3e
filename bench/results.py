"""`python -m bench.results [results_dir]`: a compact ranking table of the stored runs, in the terminal.

For each group (sweep preset) and dataset, the configurations in the report's ranking
(`bench.report.tables.ranking`: mean test main metric over seeds, best first, ranked within each
knob value, means less than one test example apart sharing a rank), each at the learning rate chosen
on validation from its grid (shown, '*' where it sits at the grid's edge), with the spread over
seeds, its verdict against the task's canonical pairing (the report's `tables.significance`: paired
by seed, Holm-adjusted over the comparisons of the dataset at that setting: better, worse, tie or
n/a), the epochs to the validation target (the report's `tables.time_to_target`: median over trained
seeds at the learning rate that reaches it fastest, "never" when the median seed does not reach it)
and how many seeds reached it. Configurations are labelled as in the report: settings that vary
within a group besides activation and loss are shown in brackets. Runs that are invalid or failed
are listed under each group.

    $ python -m bench.results results
    saturation: 6 runs (6 done)
      digits: test accuracy, higher is better; target 0.95 on val
         #  configuration                                 test accuracy         lr  vs canonical  epochs to target  reached
         1  sigmoid+bce [model.out_init_scale=30]         0.9594 ± 0.011  0.1 fixed             -               6.0      5/5
         ...
"""
import math
import sys
from pathlib import Path

from bench.errors import UserError, run_cli


def number(value, digits=4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def at_edge(grid, lr) -> bool:
    """Whether `lr` is the smallest or largest of a grid of several (a grid too narrow to call it tuned)."""
    return grid is not None and len(grid) > 1 and lr in (min(grid), max(grid))


def lr_note(rows) -> str:
    """The chosen learning rate of a configuration's runs, '*' where it sits at its grid's edge; the
    fixed lr (no grid) as it is."""
    notes = []
    for grid, lr in sorted({(g, c) for g, c in zip(rows["lr_grid"], rows["chosen_lr"])}, key=str):
        notes.append(f"{number(lr, 3)}{'*' if at_edge(grid, lr) else ''}" if grid and len(grid) > 1
                     else f"{number(lr, 3)} fixed")
    return ",".join(notes) or "-"


VERDICTS = {"better": "better", "worse": "worse", "tie": "tie", "n/a": "n/a", "reference": "canonical"}


def table(results_dir) -> str:
    """The ranking table of every complete run under results_dir, as text (each configuration at its
    chosen learning rate: the members at other rates of a grid are left out)."""
    from bench.report.tables import ALPHA, prepare, ranking
    from bench.store import left_out_line, load

    left_out = []
    runs, _ = load(results_dir, left_out)
    for path, problem in left_out:
        print(left_out_line(path, problem), file=sys.stderr, flush=True)
    left_note = [f"left out: {len(left_out)} damaged or foreign run folders (named on stderr)"] if left_out else []
    if runs.empty:
        return "\n".join([f"no finished runs under {results_dir}", *left_note])
    # configurations are labelled by their grid, not by the rate each one chose
    every = prepare(runs.assign(lr=runs["lr_grid"].astype(str)), results_dir)
    runs = every[every["chosen"]]  # the tuned view: each run's members at its chosen learning rate
    ranked = ranking(runs, every[every["speed_chosen"]])
    lines, edges = [], 0
    for group, g in runs.groupby("group", sort=True):
        per_run = g.drop_duplicates("run_id")
        counts = per_run["status"].value_counts()
        lines.append(f"{group}: {len(per_run)} runs ({', '.join(f'{n} {s}' for s, n in counts.items())})")
        trained = ranked[(ranked["group"] == group) & (ranked["seeds"] > 0)]
        for dataset, d in trained.groupby("dataset", sort=True):
            metric, higher = d["metric"].iloc[0], bool(d["higher_is_better"].iloc[0])
            width = max(13, *(len(name) for name in d["config"]))
            direction = "higher" if higher else "lower"
            lines.append(f"  {dataset}: test {metric}, {direction} is better; "
                         f"target {number(d['target'].iloc[0])} on val")
            lines.append(f"    {'#':>2}  {'configuration':<{width}}  {'test ' + metric:>18}  {'lr':>9}  "
                         f"{'vs canonical':>12}  {'epochs to target':>16}  reached")
            mine = per_run[per_run["dataset"] == dataset]
            for row in d.itertuples():
                score = f"{number(row.mean)} ± {number(row.std if row.n > 1 else 0.0, 2)}"
                note = f"  ({row.diverged} of {row.seeds} diverged)" if row.diverged else ""
                epochs = "never" if row.epochs_median == math.inf else number(row.epochs_median, 3)
                rank = "-" if math.isnan(row.rank) else f"{row.rank:.0f}"
                lr = lr_note(mine[mine["config"] == row.config])
                edges += "*" in lr
                verdict = VERDICTS.get(row.vs_canonical, "-") if isinstance(row.vs_canonical, str) else "-"
                lines.append(f"    {rank:>2}  {row.config:<{width}}  {score:>18}  {lr:>9}  {verdict:>12}  "
                             f"{epochs:>16}  {f'{row.reached}/{row.seeds}':>7}{note}")
        for status in ("invalid", "failed"):
            bad = per_run[per_run["status"] == status]
            if len(bad):
                names = ", ".join(sorted(f"{r.dataset} {r.config}" for r in bad.itertuples()))
                lines.append(f"  {status} ({len(bad)}): {names}")
    lines.append("lr: the learning rate chosen on validation from the run's grid (test figures at it); "
                 "'fixed': no grid")
    lines.append(f"vs canonical: paired by seed against the task's canonical pairing (canonical), Holm-adjusted over "
                 f"the comparisons of the dataset at one setting (α = {ALPHA}); tie: not distinguishable, or less than "
                 "one test example per replicate apart; the rank is by mean and claims no difference by itself")
    if edges:
        lines.append(f"* {edges} chosen at the edge of the grid: the grid was too narrow to call "
                     f"{'them' if edges > 1 else 'it'} tuned")
    return "\n".join(lines + left_note)


USAGE = "usage: python -m bench.results [results_dir]   (default: results)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(f"{USAGE}\n\n{__doc__.split(chr(10) + chr(10))[1]}")
        return 0
    try:
        if len(argv) > 1 or (argv and argv[0].startswith("-")):
            raise UserError(f"arguments {' '.join(argv)!r} are not allowed; {USAGE}")
        results_dir = argv[0] if argv else "results"
        from bench.store import check_results_dir

        check_results_dir(results_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(results_dir))
    return 0


if __name__ == "__main__":
    run_cli(main)
