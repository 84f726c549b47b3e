"""`python -m bench.report [results_dir] [--out DIR] [--benchmark [--runs N]]`."""
import argparse
import sys
from pathlib import Path

from bench.errors import UserError


def check_results(results_dir, out) -> None:
    """Before anything is drawn: a results folder holding runs (<group>/<run_id>/summary.json), not
    a group folder or an empty one, and an output folder that can be written."""
    from bench.config import check_writable

    folder = Path(results_dir)
    if not folder.is_dir():
        raise UserError(f"results_dir={results_dir!r} is not a directory; run a sweep first (make sweep) "
                        "or pass the folder that holds <group>/<run_id>/summary.json")
    if next(folder.glob("*/*/summary.json"), None) is None:
        if next(folder.glob("*/summary.json"), None) is not None:
            raise UserError(f"results_dir={results_dir!r} is a group folder (it holds <run_id>/summary.json); "
                            f"pass the results folder above it: python -m bench.report {folder.parent}")
        raise UserError(f"results_dir={results_dir!r} holds no runs (no <group>/<run_id>/summary.json); "
                        "run a sweep first (make sweep) or pass the folder that holds them")
    check_writable("--out" if out is not None else "the report folder", out if out is not None else folder / "report")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
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
        if args.benchmark:
            from bench.perf_report import benchmark

            if args.runs < 1:
                raise UserError(f"--runs={args.runs} is not allowed; it must be an integer > 0")
            benchmark(args.runs, keep=args.out)
            return
        check_results(args.results_dir, args.out)
        from bench.report.page import build

        try:
            index = build(args.results_dir, args.out)
        except OSError as error:  # a read-only folder, a full disk: the user's to fix, no traceback
            where = args.out or str(Path(args.results_dir) / "report")
            raise UserError(f"could not write the report into {where}: {error.strerror or error}") from None
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {index}")


if __name__ == "__main__":
    main()
