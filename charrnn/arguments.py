"""The one type check of the public API's arguments: `@checked` reads a function's annotations
and refuses a value of the wrong type before the function does any work, with a TypeError that
names the argument and the type wanted (`Model.sample: prime must be str, got bytes`), where
NumPy would fail later with a message about something else. Ranges and values stay with the
function (a CharrnnError): this only makes sure it is given the kinds of things it reads.

Annotations understood: classes (bool is never taken for a number; int and float accept NumPy's
integers and reals), Optional and Union, Callable, Any, and list[X] / Sequence[X].
"""
import collections.abc
import functools
import inspect
import numbers
import os
import typing

PathLike = typing.Union[str, os.PathLike]  # a file or folder path


def _name(hint):
    if hint is type(None):
        return "None"
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return " or ".join(_name(a) for a in typing.get_args(hint))
    if origin in (list, collections.abc.Sequence):
        (item,) = typing.get_args(hint) or (typing.Any,)
        return f"a list of {_name(item)}"
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return "a function"
    if hint is os.PathLike:
        return "a path"
    return getattr(hint, "__name__", str(hint))


def matches(value, hint):
    """Whether value is of the annotated type `hint`."""
    if hint is typing.Any:
        return True
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(matches(value, a) for a in typing.get_args(hint))
    if origin in (list, collections.abc.Sequence):
        (item,) = typing.get_args(hint) or (typing.Any,)
        return (isinstance(value, (list, tuple))
                and all(matches(v, item) for v in value))
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint)


def checked(fn):
    """fn, with every annotated argument's type checked before it runs (see the module)."""
    signature = inspect.signature(fn)
    hints = {k: v for k, v in typing.get_type_hints(fn).items() if k != "return"}
    where = fn.__qualname__.replace(".<locals>", "")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # Python's own TypeError for a wrong count
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if name not in hints or kind in (inspect.Parameter.VAR_POSITIONAL,
                                             inspect.Parameter.VAR_KEYWORD):
                continue
            if not matches(value, hints[name]):
                raise TypeError(f"{where}: {name} must be {_name(hints[name])}, got "
                                f"{type(value).__name__} {_short(value)}")
        return fn(*args, **kwargs)

    return wrapper


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
