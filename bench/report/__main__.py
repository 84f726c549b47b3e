"""`python -m bench.report [results_dir] [--out DIR] [--benchmark [--runs N]]`."""
import argparse
import sys

from bench.errors import UserError


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
        from bench.report.page import build

        index = build(args.results_dir, args.out)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {index}")


if __name__ == "__main__":
    main()
