"""What lossbench prints: whole lines, one-line error messages, and the figure a job's progress line
shows. Imported by bench.run (the entry) and bench.sweep (the sweep's bookkeeping) alike, so neither
needs the other for it."""
import sys


def say(line: str, file=None) -> None:
    """Print `line` and its newline in one write. In a parallel sweep several worker processes print to
    one terminal (or pipe), and print's separate write of the newline let two lines run together
    ("... ETA 19ssweep: 2/2 ..."); one write of a short line to a pipe is never split."""
    file = sys.stdout if file is None else file
    file.write(line + "\n")
    file.flush()


def message(error: Exception) -> str:
    """A user mistake as the one line the CLI prints: a UserError's own text, a Hydra/OmegaConf
    composition error shortened by `one_line`."""
    from bench.errors import UserError

    return str(error) if isinstance(error, UserError) else one_line(error)


def one_line(error: Exception) -> str:
    """A Hydra/OmegaConf composition error as one line naming the bad value and the options."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name!r} is not allowed; choose one of: {', '.join(sorted(error.options))}"
    text = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in text:
        text += f": {error.__cause__}"
    return " ".join(text.split())


LAST = {}  # the last job's main figure or reason, for the sweep's progress line (bench.sweep)


def note_figure(text: str | None) -> None:
    """What the sweep's progress line shows for the job that just ran (bench.sweep reads LAST in the
    job's own process). A function, not `LAST[...] = ` in bench.run.main: a joblib worker gets main
    pickled by value, with copies of its globals, but this function by reference, with the module's."""
    LAST["figure"] = text
