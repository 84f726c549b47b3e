"""Ctrl-C and SIGTERM: one line, a clean exit, nothing half-written, on every launcher, every time.

    try:
        with stopping.handled():     # bench.run.cli, around Hydra
            main()
    except ...: print(stopping.requested.line()); exit(stopping.requested.code)

The first SIGINT or SIGTERM ends the command; any later one is ignored, so the stop cannot be cut short.
While the block runs, both signals are blocked in this process's threads and caught by a watcher thread
(`signal.sigtimedwait`). A blocked signal mask is inherited by every child process (through fork and
exec), so the workers and controllers a launcher starts never see the terminal's Ctrl-C themselves:
none of them can print a traceback of its own or stop half-way; this process stops them.

- Without a pool (a single run, the basic launcher, a launcher waiting on jobs it started, such as
  submitit's local controllers or SLURM's): the stop is raised as `Stopped` (a KeyboardInterrupt) in the
  main thread wherever it is; `with` blocks release the run's lock, the atomic writes remove their temp
  files, bench.run.main removes the folder of the run it was training, a launcher's own Ctrl-C cleanup
  runs (scancel), and the CLI stops whatever child process is left (`stop_children`) and says its line.
- With a pool (joblib's loky workers, the report's figure workers: this process's multiprocessing
  children): unwinding through the pool is not clean (joblib's shutdown kills workers with tools a
  machine may lack; seen: three tracebacks and a 45 s hang), so the watcher stops the children itself,
  deepest first: SIGTERM to a process that takes it (a parallel worker running a job unwinds it as
  above, then exits), SIGKILL to one that blocks it (an idle worker: nothing of ours to clean up) and
  to any still alive after GRACE seconds; then `CLEANUPS`, the line, and exit. The resource trackers
  are left to exit by themselves when this process is gone (they clean up the pool's semaphores).

Exit code 128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM (what SLURM sends at a time limit).
A signal may arrive while a library turns exceptions into its own (Hydra's config loader does): the
error paths read `requested` and say the stop's line instead of a wrong one.
"""
import _thread
import multiprocessing
import os
import shlex
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE = 10.0  # seconds the children that take SIGTERM get to unwind their jobs before SIGKILL
INTERRUPTED = "interrupted; finished runs are kept, rerun the same command to resume"
NOW = {}  # what is running, for SIGTERM's line: "run" (its folder), "sweep" (its folder and job count)
CLEANUPS = []  # what a stop that ends the process at once (with children) must still undo: callables


class Stopped(KeyboardInterrupt):
    """Raised by the first SIGINT or SIGTERM. A KeyboardInterrupt (so a BaseException: `except Exception`
    lets it through): the cleanups libraries run for Ctrl-C (the SLURM launcher's scancel) run for both."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.code = 128 + signum

    def line(self) -> str:
        """What the CLI says: for Ctrl-C the familiar line; for SIGTERM what stopped and how to resume
        (a command other than bench.run says its own: `handled(said=...)`)."""
        if "said" in NOW:
            return NOW["said"](self)
        if self.signum == signal.SIGINT:
            return INTERRUPTED
        return (f"terminated (SIGTERM): stopped {running()}; finished runs are kept, rerun the same command "
                f"to resume: {command()}")


requested = None  # the Stopped of the first signal, once one came
_first_lock = threading.Lock()


def running() -> str:
    """What was running, in words: the sweep (how far it got) or the run."""
    if "sweep" in NOW:
        folder, total = NOW["sweep"]
        finished = len(list((Path(folder) / "outcomes").glob("*.json")))
        return f"the sweep after {finished} of {total} runs (its folder {folder})"
    if "run" in NOW:
        return f"the run {NOW['run']} (not kept: a rerun trains it from the start)"
    return "the command before it started a run"


def command() -> str:
    return shlex.join(["python", "-m", "bench.run", *sys.argv[1:]])


def _first(signum: int):
    """The Stopped of this signal if it is the first one, else None (the stop is under way)."""
    global requested
    with _first_lock:
        if requested is not None:
            return None
        requested = Stopped(signum)
        return requested


def _stop(signum, frame):
    """The Python-level handler (main thread): the watcher hands a signal to it by `interrupt_main`,
    and a signal that reached a thread not blocking it (one started before the block) comes here."""
    if _raising.is_set():  # handed over by the watcher, already counted as the first
        _raising.clear()
        raise requested
    stop = _first(signum)
    if stop is None:
        return
    if multiprocessing.active_children():
        end_with_children(stop)
    raise stop


_raising = threading.Event()  # set by the watcher when it hands the first signal to the main thread


def _watch(done: threading.Event) -> None:
    while not done.is_set():
        info = signal.sigtimedwait(SIGNALS, 0.2)
        if info is None or requested is not None:
            continue
        stop = _first(info.si_signo)
        if stop is None:
            continue
        if multiprocessing.active_children():  # a pool's workers: never unwind through the pool
            end_with_children(stop)
        _raising.set()
        _thread.interrupt_main(info.si_signo)  # -> _stop in the main thread, which raises it


def end_with_children(stop: Stopped) -> None:
    """Stop the child processes (module docstring), undo what `CLEANUPS` holds, say the line, exit at once."""
    stop_children()
    for cleanup in CLEANUPS:  # (no `finally` runs after os._exit)
        cleanup()
    sys.stdout.flush()
    print(f"\n{stop.line()}", file=sys.stderr, flush=True)
    os._exit(stop.code)


def stop_children() -> None:
    """Stop every process below this one, deepest first: SIGTERM to one that takes it, SIGKILL to one that
    blocks it and to any still alive after GRACE seconds. After a stop that unwound in place, the CLI
    calls it for what a launcher left running (submitit's local controllers and their jobs)."""
    children = descendants(os.getpid())
    gentle = []
    for pid in children:
        try:
            if takes_sigterm(pid):
                os.kill(pid, signal.SIGTERM)
                gentle.append(pid)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + GRACE
    while any(alive(pid) for pid in gentle) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in gentle:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> list:
    """The process ids below `pid`, deepest first, less loky's resource tracker (and what it started).
    From /proc where the system has it; elsewhere this process's multiprocessing children."""
    if not Path("/proc/self/task").is_dir():
        return [p.pid for p in multiprocessing.active_children() if p.pid]
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in _proc(pid, f"task/{task.name}/children").split():
            child = int(child)
            if "resource_tracker" in _proc(child, "cmdline"):
                continue
            found += [*descendants(child), child]
    return found


def _mask(pid: int, field: str) -> int:
    """A signal mask of /proc/<pid>/status (SigBlk, SigCgt) as an int; 0 where unknown."""
    for line in _proc(pid, "status").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    return 0


def takes_sigterm(pid: int) -> bool:
    """Whether SIGTERM reaches the process (not blocked): it unwinds (a handler) or dies at once."""
    return not _mask(pid, "SigBlk") & (1 << (signal.SIGTERM - 1))


def alive(pid: int) -> bool:
    """Whether the process still runs (a zombie has exited: its parent has not read its status yet)."""
    if Path("/proc/self").is_dir():
        state = _proc(pid, "stat").rpartition(")")[2].split()[:1]
        return bool(state) and state[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def handled(said=None):
    """Catch SIGINT and SIGTERM for the `with` block (module docstring); put everything back after.
    said: Stopped -> the line to say, for a command other than bench.run."""
    global requested
    requested = None
    _raising.clear()
    NOW.clear()
    CLEANUPS.clear()
    if said is not None:
        NOW["said"] = said
    previous = {s: signal.signal(s, _stop) for s in SIGNALS}
    watch = hasattr(signal, "sigtimedwait") and threading.current_thread() is threading.main_thread()
    if watch:
        # multiprocessing's resource tracker, started by the first pool or lock, unblocks both signals in
        # the thread that starts it (Python 3.11: SIG_UNBLOCK where it means to restore the mask), and the
        # workers a pool forks after that would take Ctrl-C themselves: start it first, then block
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # (inherited by the watcher and children)
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(done,), name="bench-stopping", daemon=True)
        watcher.start()
    try:
        yield
    finally:
        if watch:
            done.set()
            watcher.join()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s, handler in previous.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------------------------------------
# a parallel sweep's worker process (its signal mask, inherited, blocks SIGINT and SIGTERM)

_in_job = False


def _stop_job(signum, frame):
    """A worker's SIGTERM (from the parent): unwind the job it runs; an idle worker just exits."""
    if not _in_job:
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def worker_job():
    """Around one job in a parallel worker: Ctrl-C stays the parent's (ignored here), SIGTERM (the
    parent's way to stop the sweep) unwinds the job, and a stopped job ends the worker once the job's
    cleanup has run."""
    global _in_job
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_job)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    _in_job = True
    try:
        yield
    except Stopped as stop:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.code)
    finally:
        _in_job = False
