"""`python -m bench.perf`: how fast the harness trains, against what a user would otherwise write.

    python -m bench.perf                                # digits, MLP 64-64, batch 32, 20 epochs, SGD
    python -m bench.perf device=cuda repeats=7          # the same on a GPU
    python -m bench.perf dataset=mnist1d hidden=256,256 batch_size=128 threads=2
    python -m bench.perf --help                         # every option

On the same data, model, loss and schedule it times (training only, evaluation excluded):

  plain      the loop of the official PyTorch tutorial: DataLoader(TensorDataset), nn.Sequential,
             one seed at a time (`bench.tutorial_loop.plain_loop`; it prints nothing, which only helps it)
  harness    bench.train.train as `python -m bench.run` calls it, with K = 1, 8, 32 seeds at once;
             its time per member (run time / K) is what a sweep over seeds pays
  grid       the harness with the learning rate as an ensemble axis: 5 seeds x 7 learning rates
             (the optimizer's lr_grid) = 35 members, each at its own rate; per member it should be
             at least as fast as K = 32 at one learning rate (checked as the median of the rounds'
             paired ratios: both rows run back to back in a round, under the same load)
  eval       the K = 8 harness again with evaluation every epoch: what evaluating adds (untimed in
             train_seconds, but not free)
  flops      the training step's arithmetic counted from the layer shapes, per second, as a share
             of the machine's measured large-matmul rate (same device, dtype, threads)
  cli        wall time of `python -m bench.run trainer.epochs=1` (process start to exit)
  objectives seconds per epoch of the K = 8 harness for every valid (activation, loss) of the dataset's
             task (`objective_epochs` epochs): every objective's gradient comes from one mechanism,
             so they should differ by their own arithmetic only (targets: within 20 % of the task's
             canonical objective, kl_div within 10 % of cce); the ratios pair each run with the
             canonical objective's runs just before and after it (the load drifts within a round)
  job order  train_seconds of one run (`python -m bench.run`'s `run`, K = 8) as the first and as the
             second job of a fresh process: one-off costs are paid before the clock (target: 10 %)
  packed     the classification preset's configurations of the dataset as one pack, each alone, and each
             one's packed clock against its alone run's seconds per epoch (target: 15 %): bench.perf_pack

Every row runs `repeats` times in this one process (after one untimed warm-up) and reports the
median; all repeats go to results/perf.json (or out=...). The machine's load average is recorded
too: on a shared machine every figure is noisy, the ratios (measured interleaved) less so.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import machine, store, tutorial_loop
from bench.console import say
from bench.losses import CANONICAL
from bench.errors import UserError, check_choice, check_positive, check_value, run_cli

ROOT = Path(__file__).resolve().parent.parent
# option: (default, meaning); parsed from key=value arguments
OPTIONS = {
    "dataset": ("digits", "dataset config name (conf/dataset/)"),
    "hidden": ("64,64", "hidden layer widths of the MLP, comma-separated"),
    "batch_size": (32, "examples per step (per member)"),
    "epochs": (20, "passes over the training split"),
    "optimizer": ("sgd", "sgd | adam (conf/optimizer/, its default learning rate)"),
    "seeds": ("1,8,32", "ensemble sizes K to time, comma-separated"),
    "grid": ("5x7", "SxL: a row of S seeds x the first L learning rates of the optimizer's lr_grid; none: no such row"),
    "device": ("cpu", "cpu | cuda | cuda:N | mps | auto"),
    "dtype": ("float32", "float32 | float64 | bfloat16 (CUDA: autocast)"),
    "compile": ("false", "true: the harness rows use trainer.compile=true (compile time counts in)"),
    "threads": (0, "torch CPU threads; 0 = as `python -m bench.run` (trainer.threads=0)"),
    "repeats": (5, "timed repeats of every row (the median is reported)"),
    "clock": ("wall", "wall | cpu: wall time, or this process's CPU time (CPU only; steadier on a busy machine)"),
    "cli": ("true", "also time `python -m bench.run trainer.epochs=1` in a subprocess: true | false"),
    "objectives": ("true", "also time every valid objective and the job order (fresh processes): true | false"),
    "objective_epochs": (5, "epochs of each objective's timing"),
    "packed": ("true", "also time the classification preset's configurations of the dataset packed, alone, and "
                       "each one's packed clock (bench.perf_pack): true | false"),
    "clock_epochs": (3, "epochs a packed configuration's clock trains it alone (the pack node's clock_epochs)"),
    "out": ("results/perf.json", "where the figures are written"),
}
# the floor this benchmark must show, checked in the table
TARGETS = {"speedup_k1": 2.5, "speedup_per_member_k8": 10.0, "speedup_per_member_k32": 30.0,
           "flops_fraction_k32": 0.25, "eval_overhead_k8": 0.20, "cli_seconds": 6.0,
           "grid_per_member_vs_k32": 1.0,  # (K = 32 seconds per member) / (grid row's): >= 1
           "objective_spread": 0.20, "kl_div_vs_cce": 0.10, "second_vs_first_job": 0.10,
           "packed_clock_deviation": 0.15,  # a packed configuration's clock against its run alone, per epoch
           "packed_vs_alone": 1.0}  # the pack's training seconds / the sum of its configurations' alone
LOWER_IS_BETTER = ("eval_overhead_k8", "cli_seconds", "objective_spread", "kl_div_vs_cce", "second_vs_first_job",
                   "packed_clock_deviation", "packed_vs_alone")


def integer(key, value) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise UserError(f"{key}={value!r} is not allowed; it must be an integer") from None


def positive_integers(key, value) -> list:
    """'1,8,32' -> [1, 8, 32]; UserError naming the key unless every item is an integer > 0."""
    try:
        values = [int(v) for v in str(value).split(",")]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise UserError(f"{key}={value!r} is not allowed; it must be integers > 0, comma-separated, "
                        f"e.g. {key}={OPTIONS[key][0]}")
    return values


def check_output(key, path) -> None:
    """The file the figures go to: not a folder, in a folder this process may create or write (checked
    before the benchmark runs, not after)."""
    from bench.config import check_writable

    file = Path(path)
    if file.is_dir():
        raise UserError(f"{key}={path} is a folder; give the file to write, e.g. {key}={file / 'perf.json'}")
    check_writable(key, file.parent if file.exists() else file)  # (its folder: the write goes via a temp file)


def parse(argv) -> dict:
    """key=value arguments -> options (UserError names the bad key or value)."""
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.split("\n\n")[0].strip(), "\n\noptions (key=value):")
        for key, (default, meaning) in OPTIONS.items():
            print(f"  {key:<11} {meaning} [default: {default}]")
        raise SystemExit(0)
    options = {key: default for key, (default, _) in OPTIONS.items()}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq:
            raise UserError(f"argument {arg!r} is not key=value; run with --help for the options")
        check_choice("option", key, OPTIONS)
        options[key] = value
    hidden, seeds = (positive_integers(key, options[key]) for key in ("hidden", "seeds"))
    for key in ("batch_size", "epochs", "threads", "repeats", "objective_epochs", "clock_epochs"):
        options[key] = integer(key, options[key])
    for key in ("batch_size", "epochs", "repeats", "objective_epochs", "clock_epochs"):
        check_positive(key, options[key], integer=True)
    check_positive("threads", options["threads"], integer=True, allow_zero=True)
    check_choice("dataset", options["dataset"], sorted(p.stem for p in (ROOT / "conf" / "dataset").glob("*.yaml")))
    from bench.config import DEVICE

    check_value("device", options["device"], DEVICE)
    check_output("out", options["out"])
    check_choice("dtype", options["dtype"], ["float32", "float64", "bfloat16"])
    check_choice("optimizer", options["optimizer"], ["sgd", "adam"])
    check_choice("cli", options["cli"], ["true", "false"])
    check_choice("objectives", options["objectives"], ["true", "false"])
    check_choice("packed", options["packed"], ["true", "false"])
    check_choice("compile", options["compile"], ["true", "false"])
    check_choice("clock", options["clock"], ["wall", "cpu"])
    grid = str(options["grid"])
    if grid != "none":
        n_seeds, x, n_lrs = grid.partition("x")
        if not (x and n_seeds.isdigit() and n_lrs.isdigit() and int(n_seeds) > 0 and int(n_lrs) > 0):
            raise UserError(f"grid={grid!r} is not allowed; it must be SxL (seeds x learning rates, e.g. 5x7) or none")
        grid = (int(n_seeds), int(n_lrs))
    options.update(hidden=hidden, seeds=seeds, cli=options["cli"] == "true", grid=grid,
                   objectives=options["objectives"] == "true", packed=options["packed"] == "true")
    return options


def compose(options, k, *extra):
    """The real run config (conf/) for these options and K seeds (and `extra` overrides)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    overrides = [f"dataset={options['dataset']}", f"optimizer={options['optimizer']}",
                 f"model.hidden=[{','.join(map(str, options['hidden']))}]",
                 f"trainer.batch_size={options['batch_size']}", f"trainer.epochs={options['epochs']}",
                 f"trainer.dtype={options['dtype']}", f"device={options['device']}",
                 f"trainer.compile={options['compile']}",
                 f"seeds=[{','.join(map(str, range(k)))}]", "progress=false", *extra]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return hydra_compose("config", overrides=overrides)


# ------------------------------------------------------------------------------------------------
# the harness, as bench.run calls it

def prepare(options, k):
    """(cfg, data on the device, head, amp dtype) for K seeds; the data is loaded once per process."""
    from bench.datasets import load_dataset
    from bench.heads import make_head
    from bench.run import validate

    cfg = compose(options, k)
    plan = validate(cfg)  # the same checks as a run: device present, bfloat16 on CUDA only, ...
    amp = torch.bfloat16 if plan.dtype == torch.bfloat16 else None
    dtype = torch.float32 if amp else plan.dtype
    data = load_dataset(cfg.dataset, plan.seeds).to(plan.device, dtype)
    n_targets = data.y.shape[-1] if data.task == "regression" else 1
    head = make_head(data.task, data.n_classes, n_targets, "auto", CANONICAL[data.task][1])
    return cfg, data, head, amp


def harness(cfg, data, head, amp, eval_every=None, clock=time.perf_counter, grid=None) -> tuple:
    """Train K = len(cfg.seeds) members (x len(grid) with a learning-rate `grid`: bench.optim.members)
    with bench.train; (train_seconds, seconds of building the step and all of train())."""
    from bench.models import build_model
    from bench.optim import make_optimizer, members
    from bench.step import make_step
    from bench.train import train

    seeds, lrs = members(list(cfg.seeds), grid) if grid else (list(cfg.seeds), None)
    model = build_model(cfg.model, data.input_shape, head.n_outputs, seeds).to(data.x.device, data.x.dtype)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lrs)
    epochs = cfg.trainer.epochs
    start = clock()
    step = make_step(model, head, optimizer, amp_dtype=amp, compile=cfg.trainer.compile)
    trained = train(step, data, seeds, epochs, cfg.trainer.batch_size, eval_every or epochs + 1, clock=clock,
                    lrs=lrs)
    return trained.seconds, clock() - start


def step_flops(model, batch_size) -> int:
    """Multiply-adds x 2 of one training step, from the layer shapes: for each linear layer
    [K, in, out] the forward and the weight gradient cost 2*K*B*in*out each, the input gradient
    as much again for every layer but the first (nothing needs the gradient of the data)."""
    from bench.models import EnsembleLinear

    layers = [m for m in model.modules() if isinstance(m, EnsembleLinear)]
    total = 0
    for i, layer in enumerate(layers):
        k, fan_in, fan_out = layer.weight.shape
        total += (2 if i == 0 else 3) * 2 * k * batch_size * fan_in * fan_out
    return total


def matmul_flops(device, dtype, repeats, n=4096, clock=time.perf_counter) -> list:
    """The machine's practical limit: FLOP/s of an n x n matmul, one figure per repeat."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        machine.sync(device)
        start = clock()
        a @ b
        machine.sync(device)
        rates.append(2 * n ** 3 / (clock() - start))
    return rates


def cli_seconds(options, repeats) -> tuple:
    """Wall times of `python -m bench.run trainer.epochs=1` (a fresh process each time, force=true),
    and for reference of `python -c "import torch"` alone."""
    import tempfile

    times, torch_only = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bench.run", "trainer.epochs=1", f"results_dir={tmp}",
                            f"device={options['device']}", "progress=false", "force=true"],
                           check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True)
            torch_only.append(time.perf_counter() - start)
    return times, torch_only


def objective_seconds(options, prepared, clock) -> tuple:
    """({"activation+loss": seconds per epoch}, {"activation+loss": its ratio to the task's canonical
    objective}) of the K = 8 harness for every (activation, loss) valid on the dataset's task: medians of
    `repeats` rounds; a ratio divides by the mean of the canonical runs right before and after it."""
    from bench.heads import make_head
    from bench.losses import LOSSES, VALIDITY

    cfg, data, canonical, amp = prepared
    cfg = cfg.copy()
    cfg.trainer.epochs = options["objective_epochs"]
    heads = {f"{a}+{l}": make_head(data.task, data.n_classes, canonical.n_targets, a, l)
             for (t, a, l), why in VALIDITY.items() if t == data.task and why is None and l in LOSSES}
    canonical = heads["+".join(CANONICAL[data.task])]
    times, ratios = {name: [] for name in heads}, {name: [] for name in heads}
    for round_ in range(options["repeats"] + 1):  # round 0: the warm-up
        before = harness(cfg, data, canonical, amp, clock=clock)[0]
        for name, head in heads.items():
            seconds = harness(cfg, data, head, amp, clock=clock)[0]
            after = harness(cfg, data, canonical, amp, clock=clock)[0]
            if round_:
                times[name].append(seconds / cfg.trainer.epochs)
                ratios[name].append(2 * seconds / (before + after))
            before = after
    return ({name: statistics.median(t) for name, t in times.items()},
            {name: statistics.median(r) for name, r in ratios.items()})


TWO_JOBS = """
import json, sys, tempfile
from bench.perf import compose
from bench.run import run
options = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    cfg = compose(options, 8)
    cfg.results_dir, cfg.force = tmp, True
    print(json.dumps([run(cfg)["per_seed"][0]["train_seconds"] for _ in range(2)]))
"""


def job_order_seconds(options) -> list:
    """[(train_seconds as the first job, as the second job)] of one run, a fresh process per repeat."""
    pairs = []
    for _ in range(options["repeats"]):
        out = subprocess.run([sys.executable, "-c", TWO_JOBS, json.dumps(options)], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout
        pairs.append(json.loads(out.strip().splitlines()[-1]))
    return pairs


def progress(line: str) -> None:
    """What the benchmark is doing, on stderr: minutes pass between its start and its table (stdout)."""
    say(f"perf: {line}", file=sys.stderr)


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure(options) -> dict:
    """Time every row `repeats` times, interleaved (one round = every row once); return the report."""
    from bench.models import build_model

    from bench.run import resolve_threads

    ks = options["seeds"]
    grid_seeds = options["grid"][0] if options["grid"] != "none" else None
    prepared = {k: prepare(options, k) for k in sorted({*ks, 8, *([grid_seeds] if grid_seeds else [])})}
    # every row on the same threads: as set, or what `python -m bench.run` picks for the largest K
    cfg, data, head, _ = prepared[max(ks)]
    with torch.device("cpu"):
        largest = build_model(cfg.model, data.input_shape, head.n_outputs, list(cfg.seeds))
    torch.set_num_threads(resolve_threads(options["threads"], largest, options["batch_size"]))
    cfg, data, head, amp = prepared[ks[0]]
    device = data.x.device
    if data.task == "regression" and data.y.shape[-1] != 1:
        raise UserError("bench.perf compares single-target regression; pick another dataset")
    first = data.replicate(0)  # the tutorial loop trains one seed: the first replicate's split
    x_cpu, y_cpu = first.x_train, first.y_train
    lr = cfg.optimizer.lr
    if options["clock"] == "cpu" and device.type != "cpu":
        raise UserError(f"clock=cpu reads host CPU time, which misses work on device={device}; use clock=wall")
    clock = time.process_time if options["clock"] == "cpu" else time.perf_counter

    def plain():
        return tutorial_loop.plain_loop(x_cpu, y_cpu, data.task, options["hidden"], head.n_outputs, options["epochs"],
                          options["batch_size"], lr, options["optimizer"], 0, device, clock)[0]

    rows = {"plain": plain, **{f"harness_k{k}": (lambda k=k: harness(*prepared[k], clock=clock)[0]) for k in ks}}
    if grid_seeds:
        lrs = list(prepared[grid_seeds][0].optimizer.lr_grid)[:options["grid"][1]]
        rows["harness_grid"] = lambda: harness(*prepared[grid_seeds], clock=clock, grid=lrs)[0]
    eval_cfg = prepared[8]

    def with_eval():  # training seconds and the seconds evaluation added, K = 8, every epoch
        seconds, total = harness(*eval_cfg, eval_every=1, clock=clock)
        return seconds, total - seconds

    # warm-up of every row (first-call costs, allocator, compile), then interleaved timed rounds
    progress(f"warm-up: {len(rows) + 1} rows once, untimed")
    for fn in [*rows.values(), with_eval]:
        fn()
    times = {name: [] for name in rows}
    evals = []
    loads = [load_average()]
    for round_ in range(options["repeats"]):
        progress(f"round {round_ + 1} of {options['repeats']}: {', '.join(rows)}, eval")
        for name, fn in rows.items():
            times[name].append(fn())
        evals.append(with_eval())
        loads.append(load_average())
    matmul = matmul_flops(device, torch.bfloat16 if amp else data.x.dtype, options["repeats"], clock=clock)

    median = {name: statistics.median(t) for name, t in times.items()}
    report = {"options": {**options, "hidden": options["hidden"], "seeds": ks}, "task": data.task,
              "environment": machine.environment(device), "load_average": loads, "seconds": times,
              "median_seconds": median, "rows": []}
    steps = -(-data.train.shape[1] // options["batch_size"]) * options["epochs"]
    matmul_rate = statistics.median(matmul)
    report["matmul_flops"] = {"repeats": matmul, "median": matmul_rate}
    for k in ks:
        per_member = median[f"harness_k{k}"] / k
        probe = build_model(prepared[k][0].model, data.input_shape, head.n_outputs, list(range(k)))
        flops = step_flops(probe, options["batch_size"]) * steps  # the last, smaller batch counted full
        rate = flops / median[f"harness_k{k}"]
        report["rows"].append({"row": f"harness K={k}", "seconds": median[f"harness_k{k}"],
                               "seconds_per_member": per_member,
                               "speedup_per_member": median["plain"] / per_member,
                               "flops_per_second": rate, "flops_fraction": rate / matmul_rate})
    if grid_seeds:
        k = grid_seeds * len(lrs)
        per_member = median["harness_grid"] / k
        probe = build_model(prepared[grid_seeds][0].model, data.input_shape, head.n_outputs, list(range(k)))
        rate = step_flops(probe, options["batch_size"]) * steps / median["harness_grid"]
        report["rows"].append({"row": f"harness K={k} ({grid_seeds} seeds x {len(lrs)} lrs)", "grid": lrs,
                               "seconds": median["harness_grid"], "seconds_per_member": per_member,
                               "speedup_per_member": median["plain"] / per_member,
                               "flops_per_second": rate, "flops_fraction": rate / matmul_rate})
        if "harness_k32" in times:  # per round: both rows ran back to back, under the same load
            report["grid_vs_k32_by_round"] = [(a / 32) / (b / k) for a, b in zip(times["harness_k32"],
                                                                               times["harness_grid"])]
    train_s = statistics.median(e[0] for e in evals)
    eval_s = statistics.median(e[1] for e in evals)
    report["eval_k8"] = {"train_seconds": train_s, "eval_seconds": eval_s, "overhead": eval_s / train_s,
                         "repeats": evals}
    if options["cli"]:
        progress(f"the CLI's start-up, {options['repeats']} times")
        cli, torch_only = cli_seconds(options, options["repeats"])
        report["cli_seconds"] = {"repeats": cli, "median": statistics.median(cli),
                                 "import_torch_median": statistics.median(torch_only)}
    if options["objectives"]:
        progress("seconds per epoch of every valid objective, then the first and second job of a process")
        per_epoch, ratios = objective_seconds(options, prepared[8], clock)
        pairs = job_order_seconds(options)
        report["objective_seconds_per_epoch"], report["objective_ratio"] = per_epoch, ratios
        report["job_order_seconds"] = {"repeats": pairs, "first": statistics.median(p[0] for p in pairs),
                                       "second": statistics.median(p[1] for p in pairs)}
    if options["packed"]:
        from bench import perf_pack

        progress("the classification preset's configurations packed, alone, and their packed clocks")

        configs = [compose(options, 5, *extra) for extra in perf_pack.overrides(torch.get_num_threads())]
        report["pack"] = perf_pack.measure(options, configs, clock, median["plain"])
    report["checks"] = checks(report)
    return report


def checks(report) -> dict:
    """Each target of TARGETS with the measured figure and whether it is met (None: not measured)."""
    by_k = {row["row"]: row for row in report["rows"]}
    grid_row = next((row for row in report["rows"] if "grid" in row), None)
    k32 = by_k.get("harness K=32", {}).get("seconds_per_member")
    figures = {
        "speedup_k1": by_k.get("harness K=1", {}).get("speedup_per_member"),
        "speedup_per_member_k8": by_k.get("harness K=8", {}).get("speedup_per_member"),
        "speedup_per_member_k32": by_k.get("harness K=32", {}).get("speedup_per_member"),
        "flops_fraction_k32": by_k.get("harness K=32", {}).get("flops_fraction"),
        "eval_overhead_k8": report["eval_k8"]["overhead"],
        "cli_seconds": report.get("cli_seconds", {}).get("median"),
        # the median of the per-round ratios where the rounds are known: a paired comparison, steadier than
        # the ratio of medians on a shared machine whose speed drifts between rounds
        "grid_per_member_vs_k32": (statistics.median(report["grid_vs_k32_by_round"])
                                   if report.get("grid_vs_k32_by_round") else
                                   k32 / grid_row["seconds_per_member"] if grid_row and k32 else None),
        "objective_spread": None, "kl_div_vs_cce": None, "second_vs_first_job": None,
        "packed_clock_deviation": report.get("pack", {}).get("clock_deviation"),
        "packed_vs_alone": report.get("pack", {}).get("packed_vs_alone"),
    }
    ratios = report.get("objective_ratio")
    if ratios:
        figures["objective_spread"] = max(abs(r - 1) for r in ratios.values())
        if "softmax+kl_div" in ratios and "softmax+cce" in ratios:
            figures["kl_div_vs_cce"] = abs(ratios["softmax+kl_div"] / ratios["softmax+cce"] - 1)
        order = report["job_order_seconds"]
        figures["second_vs_first_job"] = abs(order["second"] / order["first"] - 1)
    out = {}
    for name, target in TARGETS.items():
        value = figures[name]
        lower_is_better = name in LOWER_IS_BETTER
        met = None if value is None else (value <= target if lower_is_better else value >= target)
        out[name] = {"value": value, "target": target, "met": met}
    return out


def table(report) -> str:
    """The printed summary."""
    median = report["median_seconds"]
    lines = [f"clock: {report['options']['clock']} time",
             f"{'row':<33}{'seconds':>10}{'per member':>12}{'speedup':>10}{'GFLOP/s':>10}{'of matmul':>11}",
             f"{'plain loop (1 seed)':<33}{median['plain']:>10.3f}{median['plain']:>12.4f}{1:>10.1f}"]
    for row in report["rows"]:
        lines.append(f"{row['row']:<33}{row['seconds']:>10.3f}{row['seconds_per_member']:>12.4f}"
                     f"{row['speedup_per_member']:>10.1f}{row['flops_per_second'] / 1e9:>10.1f}"
                     f"{row['flops_fraction']:>10.0%}")
    e = report["eval_k8"]
    lines.append(f"evaluation every epoch, K=8: +{e['eval_seconds']:.3f} s on {e['train_seconds']:.3f} s "
                 f"training ({e['overhead']:.0%})")
    lines.append(f"matmul limit: {report['matmul_flops']['median'] / 1e9:.1f} GFLOP/s "
                 f"({report['environment']['threads']} threads, {report['environment']['device']})")
    if "cli_seconds" in report:
        cli = report["cli_seconds"]
        lines.append(f"python -m bench.run trainer.epochs=1: {cli['median']:.2f} s wall "
                     f"(python -c 'import torch' alone: {cli['import_torch_median']:.2f} s)")
    ratios = report.get("objective_ratio")
    if ratios:
        lines.append(f"seconds per epoch by objective (K=8, {report['options']['objective_epochs']} epochs; "
                     f"x {'+'.join(CANONICAL[report['task']])}, paired runs):")
        lines += [f"  {name:<26}{report['objective_seconds_per_epoch'][name]:>8.4f}{r:>7.2f}x"
                  for name, r in sorted(ratios.items(), key=lambda item: item[1])]
        order = report["job_order_seconds"]
        lines.append(f"one run as the first / second job of a process: {order['first']:.3f} / {order['second']:.3f} s")
    if "pack" in report:
        from bench import perf_pack

        lines += perf_pack.table(report)
    loads = [f"{x:.1f}" for x in report["load_average"] if x is not None]
    lines.append(f"load average during the rounds: {' '.join(loads)} on {report['environment']['cores']} cores")
    for name, check in report["checks"].items():
        if check["value"] is not None:
            mark = "ok " if check["met"] else "MISS"
            lines.append(f"  [{mark}] {name}: {check['value']:.3g} (target {check['target']})")
    return "\n".join(lines)


def main(argv=None) -> int:
    try:
        options = parse(sys.argv[1:] if argv is None else argv)
        report = measure(options)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(options["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(out, json.dumps(report, indent=2, default=str))
    print(table(report))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
