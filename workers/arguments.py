"""A task's arguments checked against its signature before it runs.

`apply_async` checks the count and the keywords on the client (Celery's `typing` option),
but `celery call` and `send_task` go by name and check nothing: a wrong call would reach
the task as a TypeError (a traceback in the worker log, then whatever the retry policy
does) or, worse, run with a string where an id belongs. The base task (tasks.py) asks
`problem` first and logs one line instead.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any


def problem(fun: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str | None:
    """What is wrong with calling `fun(*args, **kwargs)`, in one phrase; None if nothing.

    The count and the keywords, then each value's type against a plain annotation (`int`,
    `str`, `float`, `X | None`); `True` is not an int here, though Python says it is."""
    try:
        bound = inspect.signature(fun).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    hints = _hints(getattr(fun, "__func__", fun))
    for name, value in bound.arguments.items():
        allowed = _types(hints.get(name))
        if allowed and not _is_one_of(value, allowed):
            names = " or ".join(_name(t) for t in allowed)
            return f"{name} must be {names}, not {type(value).__name__} {value!r}"[:300]
    return None


def signature(fun: Callable[..., Any], name: str) -> str:
    """e.g. `enrichment.requeue(tenant: str, record_id: int | None = None)`."""
    found = inspect.signature(fun, eval_str=True)
    return f"{name}{found.replace(return_annotation=inspect.Signature.empty)}"


@cache
def _hints(fun: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fun)


def _types(hint: Any) -> tuple[type, ...]:
    """The classes a value may be of, or () for a hint this check does not judge."""
    if isinstance(hint, type) and hint is not object:
        return (hint,)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        parts = typing.get_args(hint)
        return parts if all(isinstance(p, type) for p in parts) else ()
    return ()


def _is_one_of(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in allowed:
        return False
    if isinstance(value, int) and float in allowed:
        return True  # JSON has one number type; 2 is a fine float
    return isinstance(value, allowed)


def _name(t: type) -> str:
    return "null" if t is type(None) else t.__name__
