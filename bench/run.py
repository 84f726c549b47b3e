"""`python -m bench.run`: one run = one configuration trained on every seed at once.

Phases (DESIGN "Data flow of one run"): compose (Hydra) -> validate (bench.config: the plan) -> data
-> model -> train -> store. Everything a user can get wrong in the config is checked there, before
any data is loaded; what only the data can tell (a bad CSV, MAPE on zero targets) is checked as it loads.
Inside a sweep (`-m`), an invalid combination is recorded as `invalid` and a crash as `failed`
(with its traceback) so the sweep goes on; a single run exits 2 with a one-line error instead.
"""
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import traceback

import hydra
from omegaconf import DictConfig, OmegaConf

from bench import machine, stopping, store
from bench.config import CONF_DIR, Plan, resolve_auto, resolve_device, validate  # noqa: F401 (re-exported)
from bench.console import message, note_figure, say
from bench.errors import MachineError, UserError, is_number

def available_memory(device) -> int:
    """Bytes free for this run: CUDA's free memory on the device, else the host's available RAM."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(model, cfg, device, data, n_outputs, k) -> None:
    """Estimate the run's memory from its model (still on the CPU) and refuse a run that cannot fit
    with a UserError that says how to make it fit, instead of an out-of-memory crash later. k: members."""
    from bench.train import memory_estimate, optimizer_state_size

    batch = min(cfg.trainer.batch_size, data.train.shape[1])
    n_rows = sum(data.sizes.values())
    parts = memory_estimate(model, data.input_shape, k, batch, n_rows, n_outputs,
                            optimizer_state_size(cfg.optimizer), stored_rows=data.x.shape[0] * data.x.shape[1])
    need, free = sum(parts.values()), available_memory(device)
    if need > 0.9 * free:
        gib = 2.0 ** 30
        detail = ", ".join(f"{name} {value / gib:.2f}" for name, value in parts.items())
        raise MachineError(f"members (seeds x learning rates) x trainer.batch_size = {k} x {batch} needs about "
                           f"{need / gib:.1f} GiB on "
                           f"{device} ({detail} GiB) but {free / gib:.1f} GiB is available; "
                           "use fewer seeds or learning rates or a smaller trainer.batch_size (or a smaller model)")


def build_on_cpu(cfg, input_shape, n_outputs, seeds, dtype):
    """The ensemble on the CPU in its final dtype (seeds: one per member); a model too large for this
    machine's memory is a MachineError (the allocator refuses it at once), not a crash."""
    from bench.models import build_model

    try:
        return build_model(cfg.model, input_shape, n_outputs, seeds).to(dtype=dtype)
    except RuntimeError as error:
        if "allocate" not in str(error):
            raise
        n_seeds, n_lrs = len(set(seeds)), len(seeds) // max(len(set(seeds)), 1)
        raise MachineError(f"model.hidden={list(cfg.model.hidden)} with {len(seeds)} members ({n_seeds} seeds x "
                           f"{n_lrs} learning rates) does not fit in this machine's memory; use fewer seeds or "
                           "learning rates or a smaller model") from None


def resolve_threads(requested: int, model, batch_size: int) -> int:
    """trainer.threads: as set; for 0 (auto) one thread when a training step is small or the machine
    is already busy, else all cores (a parallel sweep worker: its share): a small step gains nothing
    from a second thread, and on oversubscribed cores OpenMP's barriers stall (README, Speed)."""
    from bench.sweep import cores_per_job

    if requested:
        return requested
    cores = cores_per_job()  # all cores, or a parallel sweep worker's share of them
    step_flops = 6 * batch_size * sum(p.numel() for p in model.parameters())  # ~ forward + backward
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if step_flops < AUTO_THREADS_FLOPS or load >= machine.cores():
        return 1
    return cores


# a training step above this many FLOPs may use every core (K = 8 seeds of the digits MLP: 14 MFLOP)
AUTO_THREADS_FLOPS = 1e7


def show_progress(setting) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def run(cfg: DictConfig) -> dict:
    """Validate, train and store one run; return its summary (a finished run is not redone)."""
    started = time.perf_counter()
    # validate
    plan = validate(cfg)
    cfg = plan.cfg  # loss=auto resolved
    summary, _ = store.read_run(plan.path)  # (a damaged run is redone)
    if summary is not None and not cfg.force:
        say(f"skip: {plan.path} is already finished (force=true reruns it)")
        note_figure(main_figure(summary))
        return summary
    amp_dtype, dtype = precision(plan)

    # data: every replicate's own split (bench.datasets)
    from bench.datasets import load_dataset

    data = load_dataset(cfg.dataset, plan.seeds).to(plan.device, dtype)
    entry = Entry(plan, head_of(plan, data))

    # train: the declared grid in one pass, then one rate at a time beyond an edge the choice sits at
    bar = None
    if show_progress(cfg.progress):
        from tqdm import tqdm

        bar = tqdm(total=cfg.trainer.epochs, desc=f"{data.name} {entry.head.activation}+{entry.head.loss}",
                   unit="epoch", leave=False)
    (passes,), (cap,) = train_runs([entry], data, amp_dtype, bar)
    if bar is not None:
        bar.close()

    # final metrics on test, and store
    summary = finish(plan, entry.head, data, passes, cap)
    summary["seconds"] = time.perf_counter() - started
    summary = settle(summary)
    import pandas as pd

    store.save_run(plan.path, OmegaConf.to_yaml(plan.config), pd.DataFrame(history_of(passes)), summary)
    note_figure(main_figure(summary))
    if not in_sweep():  # a sweep prints one progress line per run instead (bench.sweep)
        print(describe(summary, plan.path))
    return summary


def precision(plan) -> tuple:
    """(autocast dtype or None, dtype of parameters and data): bfloat16 trains float32 parameters, data
    and objective with the model's matmuls under autocast."""
    import torch

    amp_dtype = torch.bfloat16 if plan.dtype == torch.bfloat16 else None
    return amp_dtype, torch.float32 if amp_dtype else plan.dtype


def head_of(plan, data, replicates=None):
    """The plan's Head on this data, its training targets checked (a target the loss cannot take is a
    UserError). replicates: the replicates whose targets the run trains on (default: every one of `data`;
    a pack's data holds every configuration's seeds, and each is checked on its own, as alone)."""
    from bench.heads import Head, check_targets

    n_targets = data.y.shape[-1] if data.task == "regression" else 1
    head = Head(data.task, data.n_classes, n_targets, plan.activation, plan.cfg.loss.name, plan.loss_params)
    y_train = data.y_train if replicates is None else data.y_train[replicates]
    check_targets(head, y_train.flatten(0, 1))
    return head


@dataclasses.dataclass
class Entry:
    """One configuration of a batched pass: its validated plan and its head."""

    plan: Plan
    head: object  # bench.heads.Head


@dataclasses.dataclass
class Pass:
    """One batched training pass of one configuration: its members (for each learning rate, every seed),
    what `train` returned for them, and every member's raw test outputs [K, N, O] (and validation outputs,
    for temperature scaling)."""

    seeds: list
    lrs: list
    trained: object  # bench.train.Trained
    z_test: object
    z_val: object = None  # [K, Nv, O]; classification only


def train_pass(entries, data, grids, amp_dtype, bar, epochs=None, eval_every=None, clock=time.perf_counter) -> list:
    """Train the members seeds x grids[i] of every entry as one ensemble (several entries: a pack, one
    group of members with its own head each, bench.groups; entries of equal output width side by side)
    -> one Pass per entry. epochs, eval_every: the plans' (trainer.epochs, trainer.eval_every) unless given;
    clock: what train_seconds reads (bench.train.train)."""
    import torch

    from bench.groups import Groups
    from bench.optim import make_optimizer, members
    from bench.step import make_step
    from bench.train import raw_test_outputs, train

    plan = entries[0].plan  # a pack's configurations share model, optimizer settings and trainer (bench.pack)
    cfg = plan.cfg
    parts = [members(e.plan.seeds, grid) for e, grid in zip(entries, grids)]  # ([K_i], [K_i]) per entry
    seeds, lrs = [s for ss, _ in parts for s in ss], [lr for _, ls in parts for lr in ls]  # [K], [K]
    groups = Groups.of([e.head for e in entries], [len(ss) for ss, _ in parts])
    model = build_on_cpu(cfg, data.input_shape, groups.widths(), seeds, data.x.dtype)
    check_memory(model, cfg, plan.device, data, max(groups.widths()), len(seeds))
    torch.set_num_threads(resolve_threads(cfg.trainer.threads, model, cfg.trainer.batch_size))
    model = model.to(plan.device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lrs, model.parameter_members())
    step = make_step(model, groups, optimizer, amp_dtype=amp_dtype, compile=cfg.trainer.compile)
    epochs = cfg.trainer.epochs if epochs is None else epochs
    trained = train(step, data, seeds, epochs, cfg.trainer.batch_size, eval_every or cfg.trainer.eval_every,
                    train_curve_rows=cfg.trainer.train_curve_rows, progress=bar, lrs=lrs, clock=clock)
    z_test = per_layer(raw_test_outputs(model, data, seeds))
    z_val = per_layer(raw_test_outputs(model, data, seeds, "val")) if data.task != "regression" else None
    passes = []
    for i, (group, (member_seeds, member_lrs)) in enumerate(zip(groups, parts)):
        layer, rows = groups.locate(i)
        passes.append(Pass(member_seeds, member_lrs, trained.part(group, i), z_test[layer][rows],
                           None if z_val is None else z_val[layer][rows]))
    return passes


def per_layer(z) -> list:
    """A model's outputs as a list per output layer (one tensor for a single one)."""
    return z if isinstance(z, list) else [z]


def train_runs(entries, data, amp_dtype, bar) -> tuple:
    """Every entry's declared grid in one batched pass, then, round by round, the next rate past the edge
    each entry's choice sits at (bench.tuning.extension), the entries that need one together in one more
    pass -> (per entry its passes, per entry its extension cap). A member's numbers do not depend on the
    members beside it, so an entry trains as it would alone."""
    from bench import tuning

    passes = [[p] for p in train_pass(entries, data, [e.plan.lr_grid for e in entries], amp_dtype, bar)]
    caps = [e.plan.cfg.optimizer.get("lr_extend", 0) if len(e.plan.lr_grid) > 1 else 0 for e in entries]
    while True:
        more = [tuning.extension(score_passes(e.plan, p), e.plan.lr_grid, e.plan.summary_facts["higher_is_better"],
                                 cap) for e, p, cap in zip(entries, passes, caps)]
        todo = [i for i, rate in enumerate(more) if rate is not None]
        if not todo:
            return passes, caps
        if bar is not None:
            bar.total += entries[0].plan.cfg.trainer.epochs
            bar.refresh()
        extended = train_pass([entries[i] for i in todo], data, [[more[i]] for i in todo], amp_dtype, bar)
        for i, p in zip(todo, extended):
            passes[i].append(p)


def history_of(passes) -> list:
    """Every pass's history rows. A run has one clock, its declared grid's pass (the first): members of
    a later pass (rates beyond the grid's edges, trained on their own) read their train_seconds off it
    at the same epoch, so a configuration's seconds do not depend on how many rates its grid grew by."""
    clock = {r["epoch"]: r["train_seconds"] for r in passes[0].trained.history}
    rows = list(passes[0].trained.history)
    for later in passes[1:]:
        rows += [{**r, "train_seconds": clock[r["epoch"]]} for r in later.trained.history]
    return rows


def members_of(plan, passes) -> list:
    """One dict per member of every pass: seed, lr, its pass and position there, its validation curve
    (rows in order, on the run's clock), its divergence step (-1 if none) and its convergence figures."""
    from bench.metrics import convergence

    facts = plan.summary_facts
    curves = {}  # (seed, lr) -> its validation rows, in order
    for r in history_of(passes):
        if r["split"] == "val":
            curves.setdefault((r["seed"], r["lr"]), []).append(r)
    out = []
    for p in passes:
        steps = max(r["step"] for r in p.trained.history)
        for m, (seed, lr) in enumerate(zip(p.seeds, p.lrs)):
            curve = curves[seed, lr]
            diverged_step = p.trained.diverged_step[m]
            if diverged_step < 0 and not bool(p.z_test[m].isfinite().all()):
                diverged_step = steps  # finite weights so large that the outputs overflow (lr=1e30): diverged by the end
            speed = convergence([r["epoch"] for r in curve], [r["step"] for r in curve],
                                [r["train_seconds"] for r in curve], [r[facts["metric"]] for r in curve],
                                facts["target"], facts["higher_is_better"])
            out.append({"seed": seed, "lr": lr, "pass": p, "index": m, "val": curve[-1][facts["metric"]],
                        "diverged_step": diverged_step, "diverged": diverged_step >= 0, "speed": speed})
    return out


def score_passes(plan, passes, test=None) -> list:
    """The `bench.tuning.per_lr` table over every rate trained so far (test: each member's main test
    metric, when known)."""
    from bench import tuning

    members = members_of(plan, passes)
    rows = [{"lr": m["lr"], "val": m["val"], "diverged": m["diverged"], "epochs": m["speed"]["epochs_to_target"],
             "test": None if test is None else test[i]} for i, m in enumerate(members)]
    return tuning.per_lr(rows, sorted({m["lr"] for m in members}), plan.summary_facts["higher_is_better"])


def finish(plan, head, data, passes, cap=0) -> dict:
    """Test metrics (scikit-learn) and convergence figures of every member of every pass, the learning
    rates chosen on validation (bench.tuning: for quality, `chosen_lr`; for speed, `speed_lr`) -> the
    summary dict. A run's status and the figures read as the run's own are those of the chosen learning
    rate's seeds."""
    from bench import tuning
    from bench.calibration import temperature_scaling
    from bench.metrics import final_metrics
    from bench.optimum import Optimum, conditional_law

    facts = plan.summary_facts
    metric, higher = facts["metric"], facts["higher_is_better"]
    bins = plan.cfg.trainer.calibration_bins
    calibrated = {}  # classification: per pass, per member a temperature fitted on its val rows, test after it
    for p in passes:
        if p.z_val is not None:
            rep = data.replicate_of(p.seeds)
            calibrated[id(p)] = temperature_scaling(head, p.z_val, data.targets(rep, data.val[rep]).cpu(), p.z_test,
                                                    data.targets(rep, data.test[rep]).cpu(), bins)
    per_seed, tests = [], []
    optima = {}  # replicate -> the exact optimum of this loss on its test rows (generated data with a known law)
    for member in members_of(plan, passes):
        p, m = member["pass"], member["index"]
        r = int(data.replicate_of([member["seed"]])[0])  # the member's replicate: its own test rows
        diverged = member["diverged"]
        y = data.y[r][data.test[r]].cpu()
        scale = float(data.target_scale[r])
        test = {} if diverged else final_metrics(head, y, p.z_test[m], scale, data.y_train[r].cpu(), bins)
        if test and data.conditional is not None:
            if r not in optima:
                optima[r] = Optimum(head, conditional_law(data.conditional, r, data.test[r].cpu()))
            test.update(optima[r].figures(head, p.z_test[m], scale, y))
        scaled = None if diverged else calibrated.get(id(p), [None] * len(p.seeds))[m]
        if scaled:
            test.update({f"{name}_scaled": value for name, value in scaled["test_scaled"].items()})
        tests.append(test.get(metric))
        per_seed.append({"seed": member["seed"], "lr": member["lr"], "status": "diverged" if diverged else "done",
                         "diverged_step": member["diverged_step"] if diverged else None, "test": test,
                         **({"temperature": scaled["temperature"], "reliability": scaled["reliability"]}
                            if scaled else {}),
                         "train_seconds": passes[0].trained.seconds, **member["speed"]})
    table = score_passes(plan, passes, tests)
    chosen, fast = tuning.choose(table, higher), tuning.choose_speed(table, higher)
    for entry in per_seed:
        entry["chosen"], entry["speed_chosen"] = entry["lr"] == chosen, entry["lr"] == fast
    grid = sorted(e["lr"] for e in table)
    declared = sorted(plan.lr_grid)
    n_seeds = len(plan.seeds)
    n_diverged = sum(s["status"] == "diverged" for s in per_seed if s["chosen"])
    at = f" at the chosen lr {chosen:g}" if len(grid) > 1 else ""
    own = dict.fromkeys(data.replicate_of(plan.seeds).tolist())  # the run's replicates (a pack's data holds more)
    noise = [data.label_noise[r].get("applied", 0.0) for r in own if data.label_noise[r]]
    return {
        **facts, "lr": chosen, "lr_grid": grid, "chosen_lr": chosen, "speed_lr": fast,
        "lr_declared": declared if len(declared) > 1 else None,
        "lr_extended": {"cap": cap, "below": [lr for lr in grid if lr < declared[0]],
                        "above": [lr for lr in grid if lr > declared[-1]]} if len(declared) > 1 else None,
        "tuned": (tuning.bound(table, declared, higher) is None) if len(declared) > 1 else None,
        "lr_bound": tuning.bound(table, declared, higher),
        "lr_selection": tuning.lr_selection(metric, cap), "per_lr": table,
        "n_classes": data.n_classes, "status": "diverged" if n_diverged else "done",
        "reason": f"{n_diverged} of {n_seeds} seeds diverged{at} (loss, weights or outputs NaN/inf)" if n_diverged else None,
        "activation": head.activation, "steps_per_epoch": passes[0].trained.steps_per_epoch, "per_seed": per_seed,
        "resample": data.resample, "split_sizes": data.sizes,
        "label_noise_applied": sum(noise) / len(noise) if noise else 0.0,  # share of train labels replaced (mean over replicates)
        "environment": machine.environment(plan.device),
    }


def settle(summary: dict) -> dict:
    """The summary as the schema promises it (results/README.md), checked before it is saved: a value
    that is not a finite number where a number is promised becomes null; a diverged member's (its
    figures are undefined) says nothing more, any other (a figure that overflowed) makes the run
    `failed`, with the keys as its reason, so it is never stored as finished (the next sweep retries
    it). Anything else off the schema is a bug here, not the user's: it raises."""
    diverged = {f"per_seed[{i}]" for i, member in enumerate(summary.get("per_seed") or [])
                if member.get("status") == "diverged"}
    bad = [(key, value) for key, value in store.non_finite(summary) if key.partition(".")[0] not in diverged]
    summary = store.without_non_finite(summary)  # (a diverged member's figures are undefined: null)
    if bad:
        keys = ", ".join(f"{key}={value}" for key, value in bad[:3])
        keys += f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        summary = {**summary, "status": "failed",
                   "reason": f"{len(bad)} figures are not finite numbers ({keys}): they overflowed"}
    problem = store.summary_problem(summary)
    if problem:
        raise AssertionError(f"the summary of {summary.get('run_id')} is off the schema: {problem}")
    return summary


def main_figure(summary) -> str:
    """The main test figure: 'test accuracy 0.87 ± 0.012 (5 seeds)', mean ± std over the chosen
    learning rate's seeds, with that learning rate when a grid was tuned."""
    import statistics

    metric = summary["metric"]
    chosen = [s for s in summary["per_seed"] if s.get("chosen", True)]
    values = [s["test"][metric] for s in chosen if s["test"].get(metric) is not None]
    if not values:
        return "no seed finished"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    score = f"test {metric} {statistics.mean(values):.4g} ± {spread:.2g} ({len(values)} seeds)"
    grid = summary.get("lr_grid") or [summary["lr"]]
    if len(grid) > 1:
        bound = f", {summary['lr_bound']} that: the grid's cap was hit" if summary.get("lr_bound") else ""
        score += f" at lr {summary['chosen_lr']:g} (chosen on val from {len(grid)}{bound})"
    return score


def describe(summary, path) -> str:
    """The end-of-run line: main metric mean ± std over seeds, train time, where it was stored."""
    score = main_figure(summary)
    seconds = summary["per_seed"][0]["train_seconds"]
    return (f"{summary['dataset']} {summary['activation']}+{summary['loss']} [{summary['status']}]: "
            f"{score}, train {seconds:.2f} s -> {path}")


def run_path(cfg: DictConfig):
    """(resolved config as plain containers, run folder) of any config, even one validate rejects."""
    from omegaconf.errors import OmegaConfBaseException

    cfg = resolve_auto(cfg)
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # a bad ${interpolation}: identify the run by its unresolved text
        config = OmegaConf.to_container(cfg, resolve=False)
    return config, store.run_dir(cfg.results_dir, cfg.group, store.run_id(config))


def record_unfinished(cfg: DictConfig, status: str, reason: str, trace: str | None = None) -> str:
    """Inside a sweep: store an invalid or failed run with its reason (and traceback.txt), so the
    sweep can go on; call it holding the run's lock. Returns `status`. If even that cannot be written
    (a full disk), say so on stderr: the folder stays partial and the next sweep redoes the run."""
    config, path = run_path(cfg)
    cfg = resolve_auto(cfg)
    lr = (config.get("optimizer") or {}).get("lr") if isinstance(config.get("optimizer"), dict) else None
    grid = lr if isinstance(lr, list) and all(map(is_number, lr)) else None
    lr = lr if is_number(lr) else None  # a grid has no chosen lr
    from bench.metric_facts import HIGHER_IS_BETTER

    target, metric = cfg.dataset.get("target"), cfg.dataset.get("metric")
    summary = {"run_id": path.name, "group": cfg.group, "status": status, "reason": reason,
               "dataset": cfg.dataset.get("name"), "task": cfg.dataset.get("task"),
               "model": cfg.model.get("name"), "activation": cfg.activation.get("name"),
               "loss": cfg.loss.get("name"), "optimizer": cfg.optimizer.get("name"),
               "lr": lr, "lr_grid": grid, "metric": metric,
               "higher_is_better": HIGHER_IS_BETTER.get(metric) if isinstance(metric, str) else None,
               "target": target if is_number(target) else None, "per_seed": []}
    try:
        store.remove_run(path)  # what a crashed attempt left (a history without a summary) goes
        path.mkdir(parents=True, exist_ok=True)
        if trace:
            store.write_text(path / "traceback.txt", trace)
        store.save_run(path, OmegaConf.to_yaml(config), None, summary)
    except OSError as error:
        say(f"{status}: {path}: could not record it ({error}); a rerun redoes it", sys.stderr)
    note_figure(reason)
    return status


def in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> str:
    """One run, or one job of a sweep; returns its outcome (done | diverged | invalid | failed |
    skipped) for the sweep summary (bench/sweep.py).

    Alone, a user mistake is one line on stderr and exit 2, with nothing written. In a sweep, a
    mistake is recorded `invalid` (in milliseconds: before any data is loaded), a refusal that depends
    on the machine (a device it lacks) and a crash `failed` (with traceback.txt), and the sweep goes on.
    Every run is checked, cleaned, trained and stored holding its lock (store.claim), so concurrent
    sweeps never train a run twice; a run stopped by Ctrl-C or SIGTERM leaves nothing behind.
    """
    global _composed
    _composed = True
    note_figure(None)
    if multiprocessing.current_process().name != "MainProcess":  # a parallel launcher's worker
        with stopping.worker_job():
            return job(cfg)
    return job(cfg)


def job(cfg: DictConfig) -> str:
    """main's work (see there)."""
    from omegaconf.errors import OmegaConfBaseException

    sweep = in_sweep()
    mistakes = (UserError, OmegaConfBaseException)  # a bad value, or a bad ${interpolation}
    try:
        plan = validate(cfg)  # every mistake in the config surfaces here, before any write
        path = plan.path
        if _explain:
            print(explain(plan, cfg))
            return "skipped"
    except mistakes as error:
        if not sweep:
            user_exit(error)
        _, path = run_path(cfg)
        with store.claim(path):
            if (not isinstance(error, MachineError) and store.finished_status(path) == "invalid"
                    and not cfg.force):
                note_figure("already finished (invalid)")
                return "skipped"
            return record_unfinished(cfg, refusal(error), message(error))
    stopping.NOW["run"] = path
    with store.claim(path, message=f"wait: another process is running {path}") as created:
        summary, problem = store.read_run(path)
        status = summary["status"] if summary else None
        if status not in (None, "failed") and not cfg.force:
            if not sweep:
                say(f"skip: {path} is already finished ({status}; force=true reruns it)")
            note_figure(f"already finished ({status})")
            return "skipped"
        held = store.remove_run(path)  # a partial or damaged folder, a failed run, or force=true: from scratch
        if held and problem:
            say(f"removed damaged run folder {path} ({problem}); redoing it")
        elif held and status is None:
            say(f"removed partial run folder {path} (an interrupted run; it held: {', '.join(held)})")
        try:
            summary = run(cfg)
        except mistakes as error:  # found while loading the data (a bad CSV, MAPE on zero targets)
            if sweep:
                return record_unfinished(cfg, refusal(error), message(error))
            late = error
        except Exception as error:  # a crash in one job must not end the sweep
            if not sweep and isinstance(error, OSError):  # a full disk, a lost mount: no traceback
                say(f"error: could not complete the run in {path}: {error}", sys.stderr)
                raise SystemExit(1) from None
            if not sweep:
                raise
            return record_unfinished(cfg, "failed", f"{type(error).__name__}: {error}",
                                     traceback.format_exc())
        except BaseException:  # stopped (Ctrl-C, SIGTERM): a run cut short leaves no folder behind
            if not store.is_finished(path):
                store.remove_run(path)
            raise
        else:
            if summary["status"] == "failed" and not sweep:  # stored, so that a rerun retries it
                say(f"error: the run failed: {summary['reason']}", sys.stderr)
                raise SystemExit(1)
            return summary["status"]
    store.unclaim(path, created)  # a single run stopped by a mistake leaves nothing on disk
    user_exit(late)


def refusal(error: Exception) -> str:
    """How a sweep records a refused run: `failed` where another machine may run it (retried by the
    next sweep), else `invalid` (finished: no machine can)."""
    return "failed" if isinstance(error, MachineError) else "invalid"


def user_exit(error: Exception):
    if stopping.requested:  # the error is what a library made of the stop (stopping's docstring)
        raise stopping.requested
    print(f"error: {message(error)}", file=sys.stderr)
    raise SystemExit(2) from None  # not an Exception: Hydra lets it through unreported


_composed = False  # set once Hydra has composed a config and handed it to main()
_explain = False  # --explain: show what the config resolves to, train nothing


def explain(plan, asked: DictConfig) -> str:
    """--explain: what `auto` resolves to, and the config the run would train, as YAML."""
    cfg = plan.cfg
    config = {**plan.config, "activation": {**plan.config["activation"], "name": plan.activation}}
    head = (f"# activation={asked.activation.name} -> {plan.activation}, loss={asked.loss.name} -> {cfg.loss.name} "
            f"(dataset={cfg.dataset.name}, task {cfg.dataset.task}); run folder {plan.path}")
    return head + "\n" + OmegaConf.to_yaml(config)


def misplaced_multirun(args: list) -> str | None:
    """`dataset=diabetes -m loss=...`: Hydra's flags come before the overrides (else argparse dumps its usage)."""
    for i, arg in enumerate(args):
        if arg in ("-m", "--multirun") and any("=" in a and not a.startswith("-") for a in args[:i]):
            rest = " ".join(a for a in args if a != arg)
            return f"{arg} must come first, before the overrides: python -m bench.run {arg} {rest}"
    return None


LOKY_CLEANUP_WARNING = "ignore:resource_tracker:UserWarning"  # a warnings filter (PYTHONWARNINGS syntax)


def register_launchers() -> None:
    """Hydra finds bench's slurm launcher (hydra/launcher=slurm) only when told of it: see
    hydra_plugins/lossbench_slurm. Without the slurm extra there is nothing to register (and no
    submitit launcher for it to extend). (The packing launchers, hydra_plugins/lossbench_pack, Hydra finds
    itself: `make install` installs the checkout on sys.path.)"""
    try:
        from hydra_plugins.lossbench_slurm import register
    except ImportError:
        return
    register()


def cli() -> None:
    """Run main() so that a failure to compose the config (bad override, unknown option) is one line
    and exit 2 like every other user mistake; an exception after composition is a bug and keeps its
    traceback."""
    global _composed, _explain
    _composed = False
    _explain = "--explain" in sys.argv[1:]
    sys.argv = [a for a in sys.argv if a != "--explain"]
    misplaced = misplaced_multirun(sys.argv[1:])
    if misplaced:
        print(f"error: {misplaced}", file=sys.stderr)
        sys.exit(2)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its multi-line report
    # Ctrl-C in a parallel sweep: loky's resource tracker (a process of its own, which ignores SIGINT)
    # warns at exit that it cleans up a semaphore the interrupted sweep never released. It does clean it
    # up, and Ctrl-C is one line. Its child processes read the filter from the environment.
    filters = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f and f != LOKY_CLEANUP_WARNING]
    os.environ["PYTHONWARNINGS"] = ",".join([*filters, LOKY_CLEANUP_WARNING])  # once, however often cli runs
    register_launchers()
    try:
        with stopping.handled():  # Ctrl-C and SIGTERM: one line, exit 130 / 143 (bench.stopping)
            main()
    except BaseException as error:
        stop = stopping.requested or (stopping.Stopped(signal.SIGINT) if isinstance(error, KeyboardInterrupt) else None)
        if stop is not None:  # (whatever a library made of it on the way out)
            import logging

            # the line is the last word: torch's atexit hook logs cache statistics at INFO, into the
            # root logger Hydra set up for the job, where the job's own end would have reset it
            logging.disable(logging.INFO)
            stopping.stop_children()  # what a launcher left running (submitit's local controllers)
            sys.stdout.flush()
            print(f"\n{stop.line()}", file=sys.stderr, flush=True)
            sys.exit(stop.code)
        if _composed or not isinstance(error, Exception):
            raise
        print(f"error: {message(error)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # through the importable module, not __main__: parallel launchers (joblib, submitit) pickle the
    # task function, and a __main__ function is pickled by value (with its unpicklable globals)
    from bench.run import cli as _cli

    _cli()
