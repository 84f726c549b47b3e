"""`make perf`'s packed rows (bench.perf calls them): the classification preset's configurations of one
dataset (digits by default: activation linear, sigmoid, softmax x loss mse, mae, huber, bce, cce, the
valid ones, each 5 seeds x the optimizer's declared grid) trained

  packed   as one pack (bench.pack: one batched pass of every configuration, `bench.run.train_pass`)
  alone    each by itself, for every epoch (what an unpacked sweep trains)
  clock    each by itself for `clock_epochs` epochs: the seconds per epoch a packed configuration's clock
           reads (bench.pack.alone_seconds_per_epoch)

interleaved in rounds (one round: the pack, then each configuration alone and its clock). The figures:
the pack's seconds against the sum of the alone ones (does packing pay on this machine?), its seconds
per member against the tutorial loop's, and per configuration the clock's seconds per epoch against
its alone run's (the clock's promise: within 15 %; the median over rounds of each round's paired ratio,
the largest deviation over the configurations). Training only (evaluation at the start and the end,
untimed); the threads are bench.perf's, one count for every row.
"""
import statistics

from bench.errors import UserError

ACTIVATIONS = ("linear", "sigmoid", "softmax")
LOSSES = ("mse", "mae", "huber", "bce", "cce")  # conf/sweep/classification.yaml's grid


def overrides(threads: int) -> list:
    """Per configuration of the grid, the overrides bench.perf composes it with (5 seeds, tuned over the
    optimizer's declared grid, bench.perf's thread count)."""
    return [[f"activation={activation}", f"loss={loss}", "optimizer.lr=${optimizer.lr_grid}",
             f"trainer.threads={threads}"] for activation in ACTIVATIONS for loss in LOSSES]


def entries(configs):
    """(entries ordered by output width, their data, autocast dtype) of the composed configurations
    (`overrides`) that are valid pairings."""
    from bench.config import validate
    from bench.datasets import load_dataset
    from bench.groups import Groups
    from bench.run import Entry, head_of, precision

    plans = []
    for cfg in configs:
        try:
            plans.append(validate(cfg))
        except UserError:  # an invalid pairing: the preset records it, nothing trains
            continue
    if len(plans) < 2:
        raise UserError(f"dataset={configs[0].dataset.name} has fewer than two valid classification configurations "
                        "to pack; use packed=false")
    amp, dtype = precision(plans[0])
    data = load_dataset(plans[0].cfg.dataset, plans[0].seeds).to(plans[0].device, dtype)
    found = [Entry(plan, head_of(plan, data)) for plan in plans]
    return [found[i] for i in Groups.order([e.head for e in found])], data, amp


def measure(options, configs, clock, plain_seconds: float) -> dict:
    """The packed rows (module docstring) of the composed configurations (`overrides`) over options'
    repeats rounds, after one untimed warm-up round."""
    from bench.pack import alone_seconds_per_epoch
    from bench.run import train_pass

    found, data, amp = entries(configs)
    epochs, clock_epochs = options["epochs"], options["clock_epochs"]
    names = [f"{e.head.activation}+{e.head.loss}" for e in found]
    rounds = []
    for round_ in range(options["repeats"] + 1):  # round 0: the warm-up
        packed = train_pass(found, data, [e.plan.lr_grid for e in found], amp, None, eval_every=epochs + 1,
                            clock=clock)[0].trained.seconds
        alone, clocked = [], []
        for entry in found:
            alone.append(train_pass([entry], data, [entry.plan.lr_grid], amp, None, eval_every=epochs + 1,
                                    clock=clock)[0].trained.seconds)
            clocked.append(alone_seconds_per_epoch(entry, data, amp, clock_epochs, clock))
        if round_:
            rounds.append({"packed": packed, "alone": alone, "clock_per_epoch": clocked})
    members = sum(len(e.plan.seeds) * len(e.plan.lr_grid) for e in found)
    packed = statistics.median(r["packed"] for r in rounds)
    alone = statistics.median(sum(r["alone"]) for r in rounds)
    ratios = {name: statistics.median(r["clock_per_epoch"][i] / (r["alone"][i] / epochs) for r in rounds)
              for i, name in enumerate(names)}
    return {"dataset": options["dataset"], "configurations": names, "members": members, "epochs": epochs,
            "clock_epochs": clock_epochs, "rounds": rounds, "packed_seconds": packed, "alone_seconds": alone,
            "packed_vs_alone": packed / alone, "packed_per_member": packed / members,
            "speedup_per_member": plain_seconds / (packed / members),
            "alone_seconds_per_epoch": {name: statistics.median(r["alone"][i] / epochs for r in rounds)
                                        for i, name in enumerate(names)},
            "clock_vs_alone_per_epoch": ratios,
            "clock_deviation": max(abs(r - 1) for r in ratios.values())}


def table(report) -> list:
    """The printed lines of the packed rows."""
    p = report["pack"]
    lines = [f"packed classification {p['dataset']} pack: {len(p['configurations'])} configurations, {p['members']} members, "
             f"{p['epochs']} epochs: {p['packed_seconds']:.3f} s packed, {p['alone_seconds']:.3f} s alone "
             f"(sum; packed / alone {p['packed_vs_alone']:.2f}); per member {p['packed_per_member']:.4f} s, "
             f"speedup {p['speedup_per_member']:.1f}",
             f"packed configurations' clock ({p['clock_epochs']} epochs alone) / their alone run, s per epoch:"]
    lines += [f"  {name:<26}{p['alone_seconds_per_epoch'][name]:>8.4f}{ratio:>7.2f}x"
              for name, ratio in sorted(p["clock_vs_alone_per_epoch"].items(), key=lambda item: item[1])]
    return lines
