"""Packed jobs: the configurations of a sweep that differ only in what an ensemble member can carry train
as one batched ensemble, and each is still stored as its own run.

    key = pack_key(cfg)                     # what configurations must share to pack (None: trains alone)
    packs = form_packs(configs, max_members)  # [[index of a configuration, ...], ...]
    results = run_pack(configs)             # [(outcome, figure)] per configuration, each stored as alone

A member carries its loss (and its parameters), its output activation, its learning rate and its seed;
everything else (the dataset and its split rule, the model, the optimizer's settings, the trainer's, the
device) is the pack's: one data pipeline, one forward and backward per step for every configuration,
each group of members with its own head and objective (bench.groups). A member's numbers do not depend
on the members beside it (README: "What can make two runs of the same config differ"), so each
configuration's curves, test metrics and divergence steps are those of its run alone, and it gets its
own run folder, summary.json, history.parquet and run id, exactly as alone; a finished one is skipped,
an invalid one recorded as alone, a grid extension trained for the configuration that needs it (those
of a round together, bench.run.train_runs).

The clock: a packed configuration's `train_seconds` are what it costs alone, measured: after the pack,
each configuration trains alone for `clock_epochs` epochs (its declared grid's members, as its run alone
would, with the threads its run alone would pick), untimed for its numbers, and its clock reads that
pass's seconds per epoch at every epoch (`on_own_clock`). So two configurations' seconds differ by their
own objective's arithmetic only, whatever pack they trained in.

What cannot promise a member the bits it has alone trains alone: model=cnn (a grouped convolution over
more groups may take another kernel) and trainer.compile=true (code generated for the pack's shapes).
"""
import contextlib
import dataclasses
import json
import sys
import time
import traceback

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import store
from bench.errors import UserError

CLOCK_EPOCHS = 3  # epochs a packed configuration trains alone for its clock (the launcher's clock_epochs)
# config keys a member carries (differing within a pack); the rest must be equal
MEMBER_KEYS = ("loss", "activation", "seeds")
MEMBER_OPTIMIZER_KEYS = ("lr",)


def pack_key(cfg) -> str | None:
    """What a configuration shares with the others of its pack (a JSON text), or None where it trains
    alone: a config that does not resolve (its run records why), model=cnn, trainer.compile=true.
    cfg: a job's composed config (without the hydra node)."""
    from omegaconf.errors import OmegaConfBaseException

    from bench.config import resolve_auto

    try:
        config = OmegaConf.to_container(resolve_auto(cfg), resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError):
        return None
    try:
        if config["model"]["name"] != "mlp" or config["trainer"]["compile"]:
            return None
        shared = {k: v for k, v in config.items() if k not in (*MEMBER_KEYS, *store.NOT_IDENTITY)}
        shared["optimizer"] = {k: v for k, v in config["optimizer"].items() if k not in MEMBER_OPTIMIZER_KEYS}
    except (KeyError, TypeError, AttributeError):
        return None
    return json.dumps(shared, sort_keys=True, default=str)


def member_count(cfg) -> int:
    """Members a configuration trains in its first pass: seeds x learning rates (1 if unreadable)."""
    try:
        lr = OmegaConf.select(cfg, "optimizer.lr")
        return len(cfg.seeds) * (len(lr) if OmegaConf.is_list(lr) else 1)
    except Exception:  # a broken config: its run records why
        return 1


def form_packs(configs, max_members: int, min_packs: int = 1) -> list:
    """Configurations (composed job configs) grouped into packs: lists of their indices, in the order of
    the configurations' first appearance. Those with one pack key pack together, in consecutive packs of
    at most `max_members` members (a configuration larger than that trains alone), and the packs of one
    key are split further, as evenly as they go, until there are at least `min_packs` packs in all (as
    many as parallel workers: one large pack would leave the others idle)."""
    keys = [pack_key(cfg) for cfg in configs]
    sizes = [member_count(cfg) for cfg in configs]
    by_key = {}
    for i, key in enumerate(keys):
        by_key.setdefault(("alone", i) if key is None else key, []).append(i)
    packs = []
    for indices in by_key.values():
        packs += _chunks(indices, sizes, max_members)
    while len(packs) < min_packs:
        largest = max(range(len(packs)), key=lambda p: (sum(sizes[i] for i in packs[p]), len(packs[p])))
        if len(packs[largest]) < 2:
            break
        half = _halves(packs[largest], sizes)
        packs[largest:largest + 1] = half
    return sorted(packs, key=lambda pack: pack[0])


def _chunks(indices, sizes, max_members) -> list:
    """indices in order, cut into consecutive runs of at most max_members members (at least one each)."""
    chunks, current, members = [], [], 0
    for i in indices:
        if current and members + sizes[i] > max_members:
            chunks.append(current)
            current, members = [], 0
        current.append(i)
        members += sizes[i]
    return chunks + [current]


def _halves(indices, sizes) -> list:
    """indices cut in two consecutive runs of members as equal as they go."""
    total, running = sum(sizes[i] for i in indices), 0
    for cut, i in enumerate(indices[:-1], 1):
        running += sizes[i]
        if running * 2 >= total:
            return [indices[:cut], indices[cut:]]
    return [indices[:-1], indices[-1:]]


# ------------------------------------------------------------------------------------------------
# running a pack: each configuration admitted (validated, claimed) as bench.run.main admits a run, then
# trained together, clocked alone, stored on its own

MISTAKES = (UserError, OmegaConfBaseException)  # a bad value, or a bad ${interpolation}


def admit(configs, locks) -> tuple:
    """The configurations of a pack, in a sweep, taken as bench.run.main takes a job -> ({index: plan} to
    train, each holding its lock in `locks` (an ExitStack), its partial folder or failed run removed;
    {index: (outcome, figure)} for those recorded invalid, already finished or duplicated (skipped)).
    Invalid ones are recorded first, each under its own lock, before any other lock is taken; the runs
    to train are claimed in the order of their folders, so two sweeps whose packs share runs never wait
    on each other in a circle."""
    from bench.console import message, say
    from bench.errors import MachineError
    from bench.run import record_unfinished, refusal, run_path, validate

    plans, results = {}, {}
    for i, cfg in enumerate(configs):
        try:
            plans[i] = validate(cfg)
        except MISTAKES as error:
            _, path = run_path(cfg)
            with store.claim(path):
                if (not isinstance(error, MachineError) and store.finished_status(path) == "invalid"
                        and not cfg.force):
                    results[i] = ("skipped", "already finished (invalid)")
                else:
                    results[i] = (record_unfinished(cfg, refusal(error), message(error)), message(error))
    admitted, paths = {}, set()
    for i in sorted(plans, key=lambda i: str(plans[i].path)):
        plan = plans[i]
        if plan.path in paths:  # the same run twice in one sweep: the first trains it
            results[i] = ("skipped", "the same run as another job of this sweep")
            continue
        paths.add(plan.path)
        locks.enter_context(store.claim(plan.path, message=f"wait: another process is running {plan.path}"))
        summary, problem = store.read_run(plan.path)
        status = summary["status"] if summary else None
        if status not in (None, "failed") and not plan.cfg.force:
            results[i] = ("skipped", f"already finished ({status})")
            continue
        held = store.remove_run(plan.path)  # a partial or damaged folder, a failed run, or force=true: from scratch
        if held and problem:
            say(f"removed damaged run folder {plan.path} ({problem}); redoing it")
        elif held and status is None:
            say(f"removed partial run folder {plan.path} (an interrupted run; it held: {', '.join(held)})")
        admitted[i] = plan
    return dict(sorted(admitted.items())), results


def alone(cfg):
    """One admitted configuration trained by itself (bench.run.run), recorded as bench.run.main records a
    run in a sweep: (outcome, figure)."""
    from bench.console import LAST, message
    from bench.run import record_unfinished, refusal, run

    try:
        return run(cfg)["status"], LAST.get("figure")
    except MISTAKES as error:  # found while loading the data (a bad CSV, MAPE on zero targets)
        return record_unfinished(cfg, refusal(error), message(error)), message(error)
    except Exception as error:  # a crash in one run must not end the sweep
        reason = f"{type(error).__name__}: {error}"
        return record_unfinished(cfg, "failed", reason, traceback.format_exc()), reason


def run_pack(configs, clock_epochs: int = CLOCK_EPOCHS) -> list:
    """Train the configurations of one pack (composed job configs of one pack key) and store each as its
    own run -> [(outcome, figure)] per configuration, outcome as bench.run.main returns it (done |
    diverged | invalid | failed | skipped). Every configuration's lock is held from its admission to its
    summary. A crash of the pack's training retries each configuration alone (so one configuration's
    crash fails that one only)."""
    results = [None] * len(configs)
    with contextlib.ExitStack() as locks:
        admitted, done = admit(configs, locks)
        for i, result in done.items():
            results[i] = result
        try:
            if len(admitted) == 1:
                (i, plan), = admitted.items()
                results[i] = alone(configs[i])
            elif admitted:
                for i, result in _train_together(configs, admitted, clock_epochs).items():
                    results[i] = result
        except BaseException:  # stopped (Ctrl-C, SIGTERM): the runs it cut short leave no folder behind
            for plan in admitted.values():
                if not store.is_finished(plan.path):
                    store.remove_run(plan.path)
            raise
    return results


def _train_together(configs, plans: dict, clock_epochs: int) -> dict:
    """The admitted configurations ({index: plan}) trained as one ensemble -> {index: (outcome, figure)}."""
    from bench.datasets import load_dataset
    from bench.groups import Groups
    from bench.console import message
    from bench.run import Entry, head_of, precision, record_unfinished, refusal, train_runs

    started = time.perf_counter()
    results = {}
    first = next(iter(plans.values()))
    amp_dtype, dtype = precision(first)
    seeds = list(dict.fromkeys(s for plan in plans.values() for s in plan.seeds))  # every replicate of the pack
    try:
        data = load_dataset(first.cfg.dataset, seeds).to(first.device, dtype)
    except MISTAKES as error:  # the data the configurations share cannot be used (a bad CSV)
        return {i: (record_unfinished(configs[i], refusal(error), message(error)), message(error)) for i in plans}
    entries, order = [], []
    for i, plan in plans.items():
        try:
            entries.append(Entry(plan, head_of(plan, data, list(dict.fromkeys(data.replicate_of(plan.seeds).tolist())))))
            order.append(i)
        except MISTAKES as error:  # a target this loss cannot take (MAPE on a zero)
            results[i] = (record_unfinished(configs[i], refusal(error), message(error)), message(error))
    if len(entries) < 2:
        return {**results, **{i: alone(configs[i]) for i in order}}
    by_width = Groups.order([e.head for e in entries])
    entries, order = [entries[j] for j in by_width], [order[j] for j in by_width]
    bar = _progress(first, data, len(entries))
    try:
        passes, caps = train_runs(entries, data, amp_dtype, bar)
    except Exception as error:  # retry each alone: a crash of one configuration fails that one only
        print(f"{traceback.format_exc()}pack: training {len(entries)} configurations together failed "
              f"({type(error).__name__}: {error}); training each alone", file=sys.stderr, flush=True)
        return {**results, **{i: alone(configs[i]) for i in order}}
    finally:
        if bar is not None:
            bar.close()
    members = sum(len(p[0].seeds) for p in passes)
    for i, entry, own, cap in zip(order, entries, passes, caps):
        try:
            per_epoch = alone_seconds_per_epoch(entry, data, amp_dtype, clock_epochs)
            facts = {"configurations": len(entries), "members": members, "clock_epochs": clock_epochs,
                     "seconds_per_epoch_alone": per_epoch}
            results[i] = _store(entry, data, [on_own_clock(own[0], per_epoch), *own[1:]], cap, facts, started)
        except Exception as error:  # one configuration's crash while finishing fails that one only
            reason = f"{type(error).__name__}: {error}"
            results[i] = (record_unfinished(configs[i], "failed", reason, traceback.format_exc()), reason)
    return results


def _progress(plan, data, n):
    from bench.run import show_progress

    if not show_progress(plan.cfg.progress):
        return None
    from tqdm import tqdm

    return tqdm(total=plan.cfg.trainer.epochs, desc=f"{data.name}: {n} configurations packed", unit="epoch",
                leave=False)


def alone_seconds_per_epoch(entry, data, amp_dtype, epochs: int, clock=time.perf_counter) -> float:
    """The configuration's training seconds per epoch when it trains by itself: its declared grid's
    members alone for `epochs` epochs (the first ones: the same data order, the same threads as its run
    alone), evaluated only at the start and the end (untimed either way); its numbers are not kept."""
    from bench.run import train_pass

    timed = train_pass([entry], data, [entry.plan.lr_grid], amp_dtype, None, epochs=epochs, eval_every=epochs + 1,
                       clock=clock)
    return timed[0].trained.seconds / epochs


def on_own_clock(first_pass, per_epoch: float):
    """The declared grid's pass with its clock read off the configuration alone: train_seconds at epoch e
    is e x its measured seconds per epoch (the run's clock: later passes read it, bench.run.history_of)."""
    trained = first_pass.trained
    history = [{**row, "train_seconds": row["epoch"] * per_epoch} for row in trained.history]
    epochs = max(row["epoch"] for row in history)
    return dataclasses.replace(first_pass, trained=dataclasses.replace(
        trained, histories=[history], seconds=epochs * per_epoch))


def _store(entry, data, passes, cap, facts, started) -> tuple:
    """One packed configuration's summary, history and config, stored as its run alone stores them, with
    `packed` facts added -> (outcome, figure)."""
    import pandas as pd

    from bench.run import finish, history_of, main_figure, settle

    plan = entry.plan
    summary = finish(plan, entry.head, data, passes, cap)
    summary["seconds"] = time.perf_counter() - started  # the pack's wall time so far (it trained them all)
    summary["packed"] = facts
    summary = settle(summary)
    store.save_run(plan.path, OmegaConf.to_yaml(plan.config), pd.DataFrame(history_of(passes)), summary)
    return summary["status"], main_figure(summary)
