"""`python -m bench.report [results_dir] [--out DIR] [--benchmark [--runs N]]`."""
import argparse
import os
import signal
import sys
from pathlib import Path

from bench import stopping
from bench.errors import UserError, run_cli


def check_results(results_dir, out) -> None:
    """Before anything is drawn: a results folder holding runs (<group>/<run_id>/summary.json), not
    a group folder or an empty one, and an output folder that can be written."""
    from bench.config import check_writable
    from bench.store import check_results_dir

    check_results_dir(results_dir)
    check_writable("--out" if out is not None else "the report folder",
                   out if out is not None else Path(results_dir) / "report")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage block and its error: one line instead, exit 2
        print(f"error: {message} (python -m bench.report --help lists the options)", file=sys.stderr)
        sys.exit(2)


def built_in_place(results_dir, out) -> Path:
    """Build the report in a temporary folder beside its place, then move each file in (a rename: a
    reader sees the old file or the new one) and drop the figures the new report no longer has. A
    build that fails leaves the old report as it was, and no folder it created."""
    import shutil
    import tempfile

    from bench.report.page import build

    out = Path(out) if out is not None else Path(results_dir) / "report"
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    stopping.CLEANUPS.append(lambda: shutil.rmtree(staging, ignore_errors=True))  # a stop with figure workers
    try:
        build(results_dir, staging)
        out.mkdir(exist_ok=True)
        for stale in set(p.name for p in out.glob("*.png")) - set(p.name for p in staging.glob("*.png")):
            (out / stale).unlink()
        for made in sorted(staging.iterdir(), key=lambda p: p.name == "index.html"):  # the page last
            os.replace(made, out / made.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first; one that holds anything stays
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def main(argv=None) -> None:
    parser = Parser(
        prog="python -m bench.report",
        description="Build the report of a results tree: PNG figures, ranking.csv, significance.csv, "
                    "findings.txt and one static index.html (no network needed to view it).")
    parser.add_argument("results_dir", nargs="?", default="results",
                        help="folder holding <group>/<run_id>/summary.json (default: results)")
    parser.add_argument("--out", help="where to write the report (default: <results_dir>/report); with "
                                      "--benchmark: keep the generated results there (reused when present)")
    parser.add_argument("--benchmark", action="store_true",
                        help="time the build on generated results instead (1,000 runs x 5 seeds x 100 epochs)")
    parser.add_argument("--runs", type=int, default=1000, help="--benchmark: number of generated runs")
    args = parser.parse_args(argv)
    try:
        with stopping.handled(said=stopped):
            return build_report(args)
    except stopping.Stopped as stop:
        stopping.stop_children()
        print(f"\n{stop.line()}", file=sys.stderr, flush=True)
        sys.exit(stop.code)


def stopped(stop) -> str:
    return f"{'interrupted' if stop.signum == signal.SIGINT else 'terminated (SIGTERM)'}; the report is as it was"


def build_report(args) -> None:
    try:
        if args.benchmark:
            from bench.perf_report import benchmark

            if args.runs < 1:
                raise UserError(f"--runs={args.runs} is not allowed; it must be an integer > 0")
            benchmark(args.runs, keep=args.out)
            return
        check_results(args.results_dir, args.out)
        try:
            index = built_in_place(args.results_dir, args.out)
        except OSError as error:  # a read-only folder, a full disk: the user's to fix, no traceback
            where = args.out or str(Path(args.results_dir) / "report")
            raise UserError(f"could not write the report into {where}: {error.strerror or error}") from None
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {index}")


if __name__ == "__main__":
    run_cli(main)
