"""Frozen dataclasses whose comparison, hash, repr and immutability are shared, not compiled per class.

``@dataclass(frozen=True, slots=True)`` compiles six methods for each class it
makes (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``), about 12 KB of code objects a class.  A daemon builds some
sixty such classes at start and keeps them for months: 0.5 MB of a router's
memory, for methods that differ only in the names of the fields.  :func:`record`
lets :func:`dataclasses.dataclass` make the class and its ``__init__`` (the one
method that must be made per class), then gives it five methods shared by
every record, which read the fields through one :func:`operator.attrgetter`
per class.  The result is still a frozen dataclass (``fields``, ``replace``,
``asdict``, ``is_dataclass`` and pattern matching work), compares, hashes and
prints as the generated methods do, and costs about 5 KB less a class.
"""

from __future__ import annotations

import dataclasses
import operator
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

T = TypeVar("T")


def _getter(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The fields ``names`` of an instance, as the tuple the generated methods compare and hash."""
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda self: (one(self),)
    if not names:
        return lambda self: ()
    return operator.attrgetter(*names)  # type: ignore[return-value]  # a tuple for two names or more


def _eq(self: Any, other: Any) -> Any:
    cls = self.__class__
    if other.__class__ is cls:
        return cls.__record_compare__(self) == cls.__record_compare__(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self.__class__.__record_hash__(self))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={value!r}" for name, value in zip(self.__class__.__record_repr_names__,
                                                                  self.__class__.__record_repr__(self), strict=True))
    return f"{self.__class__.__qualname__}({shown})"


def _setattr(self: Any, name: str, value: object) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True, slots=True)``, with the shared methods (see the module's docstring)."""
    body = dict(cls.__dict__)  # what the class defines itself stays, as dataclass leaves it
    made: Any = dataclasses.dataclass(frozen=True, slots=True, eq=False, repr=False)(cls)
    fields = dataclasses.fields(made)
    compared = [f.name for f in fields if f.compare]
    hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
    shown = [f.name for f in fields if f.repr]
    made.__record_compare__ = _getter(compared)
    made.__record_hash__ = made.__record_compare__ if hashed == compared else _getter(hashed)
    made.__record_repr__ = _getter(shown)
    made.__record_repr_names__ = tuple(shown)
    if "__eq__" not in body:
        made.__eq__ = _eq
    # As dataclass decides: a __hash__ of the class's own stays (an __eq__ of its own without one sets it to None).
    if body.get("__hash__", dataclasses.MISSING) in (dataclasses.MISSING, None):
        made.__hash__ = _hash
    if "__repr__" not in body:
        made.__repr__ = _repr
    made.__setattr__, made.__delattr__ = _setattr, _delattr  # the frozen ones, compiled for this class, go
    return made  # type: ignore[no-any-return]
