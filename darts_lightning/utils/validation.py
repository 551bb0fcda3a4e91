"""Argument checks of the configurable classes, in one place and with one message format.

Every check raises ``ValueError("<name> must be …, got <value>")``, plus the fix where it is not
obvious. The constructors call them first, before anything is built, loaded or imported, and check every
argument whatever the others are: a misspelt choice or an out-of-range number in a config is reported
at once, not ignored because another setting happens to leave it unused (``hessian`` with ``order: 1``)
and not after a supernet was built or a data set was read.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from numbers import Real
from typing import Any

__all__ = ["check_choice", "check_range", "check_keywords", "accepted_keywords"]


def check_choice(name: str, value: Any, choices: Iterable[Any], hint: str = "") -> None:
    """Refuse ``value`` unless it is one of ``choices``; the message lists them."""
    choices = list(choices)
    # True == 1 in Python: a flag is not a choice among numbers.
    if any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        return
    shown = ", ".join(str(c) for c in choices)
    raise ValueError(f"{name} must be one of {shown}, got {value!r}" + (f"; {hint}" if hint else ""))


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    optional: bool = False,
    hint: str = "",
) -> None:
    """Refuse ``value`` unless it is a number (an integer with ``integer=True``) in the range given by
    ``low`` and ``high`` (inclusive unless ``low_open``/``high_open``); ``optional`` also accepts ``None``.
    NaN is refused. The message states the range in words ("a positive integer", "a non-negative number")
    or in the notation ``[a, b)``, ``>= a``."""
    if value is None and optional:
        return
    kind = "integer" if integer else "number"
    article = "an" if integer else "a"
    if low is not None and high is not None:
        wanted = f"{article} {kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low == 0 and low_open or low == 1 and integer and not low_open:
        wanted = f"a positive {kind}"
    elif low == 0:
        wanted = f"a non-negative {kind}"
    elif low is not None:
        wanted = f"{article} {kind} {'>' if low_open else '>='} {low}"
    elif high is not None:
        wanted = f"{article} {kind} {'<' if high_open else '<='} {high}"
    else:
        wanted = f"{article} {kind}"
    if optional:
        wanted += " or None"
    ok = isinstance(value, int if integer else Real) and not isinstance(value, bool)
    if ok and not integer:
        ok = not math.isnan(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name} must be {wanted}, got {value!r}" + (f"; {hint}" if hint else ""))


def accepted_keywords(factory: Callable[..., Any], given: Collection[str] = ()) -> list[str] | None:
    """The keyword arguments ``factory`` takes, less those in ``given`` (passed by the caller itself);
    ``None`` when it takes ``**kwargs`` (or has no signature), i.e. when its keywords cannot be listed."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keyword_kinds and p.name not in given and p.name != "self"]


def check_keywords(name: str, kwargs: Mapping[str, Any] | None, factory: Callable[..., Any], given: Collection[str] = ()) -> None:
    """Refuse keys of the argument ``name`` (a mapping of keyword arguments for ``factory``) that
    ``factory`` does not take, listing those it takes; ``given`` are set by the caller and may not be
    given again. A factory that takes ``**kwargs`` is left to check its own keywords."""
    if kwargs is None:
        return
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"{name} must be a mapping of keyword arguments, got {kwargs!r}")
    repeated = [k for k in kwargs if k in given]
    if repeated:
        raise ValueError(f"{name} may not set {', '.join(map(repr, repeated))}: it is set by its own argument")
    valid = accepted_keywords(factory, given)
    unknown = [] if valid is None else [k for k in kwargs if k not in valid]
    if unknown:
        raise ValueError(
            f"{name} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"valid keys are: {', '.join(valid) if valid else 'none'}"
        )
