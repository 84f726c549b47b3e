"""`python -m bench.same_results A B`: do two results folders hold the same runs with the same numbers,
seconds aside? (How packed and unpacked sweeps are compared: `make sweep` twice, once with PACK=false.)

    python -m bench.same_results results_packed results_alone     # exit 0: the same; 1: differences, listed

Every run folder (<group>/<run_id>) must be in both. summary.json: every value equal but the ones that
time or describe how the run was executed (SECONDS_KEYS: wall and training seconds, seconds to target,
the packing facts, the environment); history.parquet: every column equal, bit for bit, but train_seconds;
config.yaml: equal but results_dir and the pack node. Floats are compared exactly (NaN equal to NaN).
"""
import json
import math
import sys
from pathlib import Path

# summary keys (at any depth) that time a run or describe how it was executed, not what it computed
SECONDS_KEYS = ("seconds", "train_seconds", "seconds_to_target", "packed", "environment")
CONFIG_KEYS = ("results_dir", "pack")  # config.yaml keys that name where and how a sweep ran


def runs(root: Path) -> dict:
    """{<group>/<run_id>: its folder} of every finished run under a results folder."""
    return {f"{p.parent.parent.name}/{p.parent.name}": p.parent for p in sorted(root.glob("*/*/summary.json"))}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def differences(a, b, where="", skip=SECONDS_KEYS) -> list:
    """Where two JSON values differ (paths), the keys in `skip` left out at any depth."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key in skip:
                continue
            if key not in a or key not in b:
                out.append(f"{where}{key}: only in {'the second' if key not in a else 'the first'}")
            else:
                out += differences(a[key], b[key], f"{where}{key}.", skip)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where[:-1]}: {len(a)} against {len(b)} entries"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}{i}.", skip)]
    return [] if _same(a, b) else [f"{where[:-1]}: {a!r} against {b!r}"]


def compare_run(first: Path, second: Path) -> list:
    """The differences between two folders of one run: summary.json, history.parquet, config.yaml."""
    import pandas as pd
    import yaml

    out = [f"summary.json {d}" for d in differences(json.loads((first / "summary.json").read_text()),
                                                    json.loads((second / "summary.json").read_text()))]
    configs = [yaml.safe_load((p / "config.yaml").read_text()) for p in (first, second)]
    out += [f"config.yaml {d}" for d in differences(*configs, skip=CONFIG_KEYS)]
    histories = [p / "history.parquet" for p in (first, second)]
    if histories[0].is_file() != histories[1].is_file():
        return out + ["history.parquet: in one folder only"]
    if histories[0].is_file():
        a, b = (pd.read_parquet(h).drop(columns=["train_seconds"], errors="ignore") for h in histories)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            out.append(f"history.parquet: columns or rows differ ({a.shape} against {b.shape})")
        else:
            for column in a.columns:
                x, y = a[column].to_numpy(), b[column].to_numpy()
                same = [_same(u, v) for u, v in zip(x.tolist(), y.tolist())]
                if not all(same):
                    out.append(f"history.parquet {column}: {same.count(False)} of {len(same)} rows differ")
    return out


def compare(first: Path, second: Path) -> list:
    """Every difference between two results folders (an empty list: the same runs, the same numbers)."""
    a, b = runs(first), runs(second)
    out = [f"{name}: only in {first}" for name in sorted(set(a) - set(b))]
    out += [f"{name}: only in {second}" for name in sorted(set(b) - set(a))]
    for name in sorted(set(a) & set(b)):
        out += [f"{name}: {d}" for d in compare_run(a[name], b[name])]
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not all(Path(a).is_dir() for a in args):
        print("error: give two results folders: python -m bench.same_results A B", file=sys.stderr)
        return 2
    found = compare(Path(args[0]), Path(args[1]))
    for line in found:
        print(line)
    n = len(runs(Path(args[0])))
    print(f"{'the same' if not found else f'{len(found)} differences'}: {n} runs in {args[0]}, "
          f"{len(runs(Path(args[1])))} in {args[1]} (seconds aside)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
