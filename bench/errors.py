"""User-facing errors: one line naming the bad value and what is allowed.

Everything the user can get wrong (a name, a size, a file) raises `UserError` at the boundary;
the CLI prints its message on one line and exits 2. Anything else is a bug and keeps its traceback.
"""
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass


class UserError(ValueError):
    """A mistake in the user's input; the message is shown as is, on one line."""


class MachineError(UserError):
    """A refusal that depends on the machine (a device, a dtype or the memory it lacks): the same config
    may run elsewhere (a cluster's other node, the shared results folder seen from a GPU machine), so a
    sweep records it `failed` (retried by the next sweep), never as a finished `invalid` run."""


def is_number(value) -> bool:
    """A finite real number (an int, or a float that is neither inf nor nan; never a bool): the one
    check of every numeric config key whose physical quantity is finite (learning rates, scales,
    thresholds, fractions). A value of 1e400 is parsed as inf and passes any `> 0` test: not here."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(key: str, value, allowed: Iterable) -> None:
    """Raise UserError unless `value` is one of `allowed` (the shared check for every name)."""
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def check_positive(key: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise UserError unless `value` is a (non-negative if allow_zero) number, an int if `integer`."""
    check_value(key, value, Interval(int if integer else float, 0, None, closed="left" if allow_zero else "neither"))


# ---------------------------------------------------------------------------------------------
# constraints as data (scikit-learn's `_parameter_constraints` style): each key declares what it
# accepts; `check_value` raises the first violation naming the key, the value and what is allowed


@dataclass(frozen=True)
class Interval:
    """A number in an interval: Interval(int, 1, None) is "an integer >= 1"; closed ends by default."""

    kind: type  # int or float (float accepts ints too; bool, inf and nan are never a number here)
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # both | left | right | neither
    what: str | None = None  # the description, where the default wording would say less
    or_none: bool = False  # null is allowed too

    def __contains__(self, value) -> bool:
        if value is None:
            return self.or_none
        if not is_number(value) or (self.kind is int and not isinstance(value, int)):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        return self.high is None or value < self.high or (value == self.high and self.closed in ("both", "right"))

    def __str__(self) -> str:
        if self.what:
            return self.what
        noun = "an integer" if self.kind is int else "a number"
        if self.high is None:
            return f"{noun} {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.low is None:
            return f"{noun} {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        left, right = "[" if self.closed in ("both", "left") else "(", "]" if self.closed in ("both", "right") else ")"
        return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"


def check_value(key: str, value, allowed) -> None:
    """Raise UserError unless `value` is allowed: an Interval or Rule, or a collection of choices."""
    if isinstance(allowed, (Interval, Rule)):
        if value not in allowed:
            infinite = isinstance(value, float) and not math.isfinite(value)
            raise UserError(f"{key}={value!r} is not allowed{' (not a finite number)' if infinite else ''}; "
                            f"it must be {allowed}")
    else:
        check_choice(key, value, allowed)


@dataclass(frozen=True)
class Rule:
    """Any other constraint: a test and the words for what it accepts."""

    test: object  # value -> bool
    what: str

    def __contains__(self, value) -> bool:
        return bool(self.test(value))

    def __str__(self) -> str:
        return self.what


def run_cli(main) -> None:
    """Run a command-line entry point: its return value is the exit code; a reader that stops reading
    (`python -m bench.results | head -3`) ends it quietly, as it does `ls`, not with a traceback."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the flush at exit would fail again)
        code = 1
    if code:  # (0: return, as a module run by runpy or a test expects)
        sys.exit(code)
