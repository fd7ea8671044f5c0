"""Frozen dataclasses whose comparison, hash, repr and immutability are shared, not compiled per class.

``@dataclass(frozen=True, slots=True)`` compiles six methods for each class it
makes (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``), about 12 KB of code objects and, on 3.11, three ``exec`` calls
(0.1 ms each) a class.  A daemon builds some sixty such classes at start and
keeps them for months: 0.5 MB of a router's memory and 20 ms of its start-up,
for methods that differ only in the names of the fields.  :func:`record` lets
:func:`dataclasses.dataclass` make the slotted class and its fields, compiles
the frozen ``__init__`` (the one method that must be made per class) in one
``exec``, and gives the class five methods shared by every record, which read
the fields through one :func:`operator.attrgetter` per class.  The result is
still a frozen dataclass (``fields``, ``replace``, ``asdict``, ``is_dataclass``,
``__dataclass_params__.frozen``, pattern matching, pickle and copy work), takes
the same arguments, compares, hashes and prints as the generated methods do.
"""

from __future__ import annotations

import dataclasses
import inspect
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


def _getstate(self: Any) -> list[Any]:
    """Pickle and copy: the fields' values, as dataclass's frozen slotted classes give them."""
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)  # past the frozen __setattr__, as the __init__ does


class _Factory:
    """The default a field with a ``default_factory`` shows in the signature, as dataclass shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


@dataclasses.dataclass(frozen=True, slots=True)
class _Frozen:
    """Only its ``__dataclass_params__``: what every record says it was made with."""


def _init(cls: Any, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    """The ``__init__`` dataclass makes for a frozen class, compiled here in one go.

    dataclass (3.11, 3.12) compiles ``__init__``, ``__setattr__`` and ``__delattr__`` one ``exec`` at a time
    for a frozen class, about 0.1 ms each: some 10 ms of a daemon's start-up for the two a record replaces.
    """
    self = "__record_self__" if any(f.name == "self" for f in fields) else "self"
    env: dict[str, Any] = {"__record_set__": object.__setattr__, "__record_factory__": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    defaulted = False
    for f in fields:
        name = f.name
        if f.default is not dataclasses.MISSING:
            env[f"__record_default_{name}__"] = f.default
            default, value = f"=__record_default_{name}__", f"__record_default_{name}__"
        elif f.default_factory is not dataclasses.MISSING:
            env[f"__record_factory_{name}__"] = f.default_factory
            default, value = "=__record_factory__", f"__record_factory_{name}__()"
        else:
            default, value = "", ""
        if f.init:
            if f.kw_only:
                keyword.append(name + default)
            else:
                if defaulted and not default:
                    raise TypeError(f"non-default argument {name!r} follows default argument")
                defaulted = defaulted or bool(default)
                positional.append(name + default)
            if f.default_factory is not dataclasses.MISSING:
                value = f"{value} if {name} is __record_factory__ else {name}"
            else:
                value = name
        if value:
            body.append(f"  __record_set__({self}, {name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append(f"  {self}.__post_init__()")
    params = ", ".join([self, *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + ("\n".join(body) or "  pass") + "\n"
    exec(source, env)  # noqa: S102  # the source is made above from the class's own field names
    made = env["__init__"]
    made.__qualname__ = f"{cls.__qualname__}.__init__"
    made.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return made  # type: ignore[no-any-return]


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T]) -> type[T]:
    """``@dataclass(frozen=True, slots=True)``, with the shared methods (see the module's docstring)."""
    body = dict(cls.__dict__)  # what the class defines itself stays, as dataclass leaves it
    # dataclass makes the slotted class and its fields and compiles nothing; the frozen __init__ is made here.
    undocumented = body.get("__doc__") is None
    if undocumented:
        cls.__doc__ = "-"  # not dataclass's signature of a class without __init__ yet (0.2 ms): ours, below
    # With ``from __future__ import annotations`` every annotation is a string, which dataclass matches three
    # times against ClassVar, InitVar and KW_ONLY by regex and module look-ups (15 us of a record's 160): those
    # that name none of them are shown to it as ``object`` and given back to the fields afterwards.
    written = body.get("__annotations__", {})
    plain = {name: hint for name, hint in written.items()
             if isinstance(hint, str) and not any(word in hint for word in ("ClassVar", "InitVar", "KW_ONLY"))}
    if plain:
        cls.__annotations__ = {name: object if name in plain else hint for name, hint in written.items()}
    made: Any = dataclasses.dataclass(init=False, slots=True, eq=False, repr=False)(cls)
    if plain:
        made.__annotations__ = written
        for name, hint in plain.items():
            made.__dataclass_fields__[name].type = hint
    fields = dataclasses.fields(made)
    named = {f.name for f in fields}
    if any("InitVar" in str(f.type) for f in made.__dataclass_fields__.values() if f.name not in named):
        raise TypeError(f"{cls.__qualname__}: @record takes no InitVar fields (its __init__ would not pass them on)")
    if "__init__" not in body:
        made.__init__ = _init(made, fields)
    if undocumented:  # the doc dataclass gives a class
        made.__doc__ = made.__name__ + str(inspect.signature(made)).replace(" -> None", "")
    made.__dataclass_params__ = _Frozen.__dataclass_params__  # type: ignore[attr-defined]
    if "__getstate__" not in body:
        made.__getstate__, made.__setstate__ = _getstate, _setstate
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
    made.__setattr__, made.__delattr__ = _setattr, _delattr
    return made  # type: ignore[no-any-return]
