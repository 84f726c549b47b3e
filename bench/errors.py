"""User-facing errors: one line naming the bad value and what is allowed.

Everything the user can get wrong (a name, a size, a file) raises `UserError` at the boundary;
the CLI prints its message on one line and exits 2. Anything else is a bug and keeps its traceback.
"""
from collections.abc import Iterable


class UserError(ValueError):
    """A mistake in the user's input; the message is shown as is, on one line."""


def check_choice(key: str, value, allowed: Iterable) -> None:
    """Raise UserError unless `value` is one of `allowed` (the shared check for every name)."""
    allowed = list(allowed)
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def check_positive(key: str, value, *, integer: bool = False, allow_zero: bool = False) -> None:
    """Raise UserError unless `value` is a (non-negative if allow_zero) number, an int if `integer`."""
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        what = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise UserError(f"{key}={value!r} is not allowed; it must be {what} {bound}")
