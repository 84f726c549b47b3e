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
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(error, MissingConfigException) and error.options and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name!r} is not allowed; choose one of: {', '.join(sorted(error.options))}"
    if isinstance(error, OverrideParseException):
        return unparsable(error)
    text = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in text:
        text += f": {error.__cause__}"
    text = " ".join(text.split())
    return not_a_key(text) or text


def unparsable(error) -> str:
    """Hydra's parse error names neither the argument nor, mostly, the character: find the argument
    that does not parse, and say what Hydra says of it on one line, with how to quote a value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for arg in (a for a in sys.argv[1:] if not a.startswith("-")):
        try:
            parser.parse_overrides([arg])
        except Exception as failure:  # noqa: BLE001 (Hydra's grammar errors have no common base here)
            lines = str(failure).splitlines()
            where = next((line.index("^") - lines[0].index(arg) for line in lines[1:2] if "^" in line
                          and arg in lines[0]), None)
            at = f" at {arg[where]!r}" if where is not None and 0 <= where < len(arg) else ""
            why = next((line for line in lines if not line.startswith(("See ", "Error parsing", " "))), "")
            if why.startswith("LexerNoViableAltException"):  # a character the grammar has no place for
                key, _, value = arg.partition("=")
                return (f"the override {arg!r} cannot be parsed{at}; quote a value holding such characters: "
                        f"'{key}=\"{value}\"'")
            return f"the override {arg!r} cannot be parsed: {why.split(' expecting {')[0]}"
    return " ".join(str(error).split())


def not_a_key(text: str) -> str | None:
    """Hydra's words for a key that does not exist, where they point the wrong way: `foo=1` is told to
    use `+foo=1` (which validation then refuses: nothing reads it), and `hydra.launcher.n_jobs=2` to
    use `+hydra.launcher.n_jobs=2` (which the basic launcher refuses: the key is another launcher's).
    None where the text is not one of those."""
    import re

    from bench.config import RUN, TRAINER

    found = (re.match(r"Could not override '([^']+)'\. To append to your config use \+", text)
             or re.search(r"BasicLauncher'?: TypeError\(.*unexpected keyword argument '([^']+)'", text))
    if not found:
        return None
    key = found.group(1) if found.re.pattern.startswith("Could") else f"hydra.launcher.{found.group(1)}"
    if key.startswith("hydra.launcher."):
        return launcher_hint(key.split(".")[2])
    group, _, rest = key.partition(".")
    if not rest:
        return f"{key} is not a config key; the keys are: {', '.join(RUN)}"
    if group == "trainer":
        return f"{key} is not a config key; the keys here are: {', '.join(TRAINER)}"
    return (f"{key} is not a setting of the chosen {group} option (conf/{group}/); "
            "`python -m bench.run --cfg job` shows every key")


def launcher_hint(setting: str) -> str:
    """The error for `hydra.launcher.<setting>` given to the basic launcher, which has no settings:
    which launcher has it (conf/hydra/launcher/), and how to choose that one."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from bench.config import CONF_DIR

    key = f"hydra.launcher.{setting}"
    owners = [p.stem for p in sorted((Path(CONF_DIR) / "hydra" / "launcher").glob("*.yaml"))
              if setting in (OmegaConf.load(p) or {})]
    if not owners:
        return f"{key} is not a setting of any launcher (conf/hydra/launcher/)"
    return (f"{key} is a setting of the {' or '.join(owners)} launcher, not of the basic one; choose the "
            f"launcher too: -m hydra/launcher={owners[0]} {key}=...")


LAST = {}  # the last job's main figure or reason, for the sweep's progress line (bench.sweep)


def note_figure(text: str | None) -> None:
    """What the sweep's progress line shows for the job that just ran (bench.sweep reads LAST in the
    job's own process). A function, not `LAST[...] = ` in bench.run.main: a joblib worker gets main
    pickled by value, with copies of its globals, but this function by reference, with the module's."""
    LAST["figure"] = text
