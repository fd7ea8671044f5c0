"""Frozen dataclasses whose comparison, hash, repr and immutability are shared, not compiled per class.

``@dataclass(frozen=True, slots=True)`` compiles six methods for each class it
makes (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__``,
``__delattr__``), about 12 KB of code objects and, on 3.11, three ``exec`` calls
(0.1 ms each) a class.  A daemon builds some sixty such classes at start and
keeps them for months: 0.5 MB of a router's memory and 20 ms of its start-up,
for methods that differ only in the names of the fields.  :func:`record` lets
:func:`dataclasses.dataclass` make the slotted class and its fields, makes the
frozen ``__init__`` (the one method that must be made per class) from code
compiled once per shape of fields, and gives the class five methods shared by
every record, which read the fields through one :func:`operator.attrgetter` per
class.  The result is still a frozen dataclass (``fields``, ``replace``,
``asdict``, ``is_dataclass``, ``__dataclass_params__.frozen``, pattern matching,
pickle and copy work), takes the same arguments, compares, hashes and prints as
the generated methods do.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
import reprlib
from collections.abc import Callable
from types import CodeType, FunctionType
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


def _template(shape: tuple[tuple[str, bool, str], ...], post_init: bool) -> CodeType:
    """The code of a frozen ``__init__`` for fields of this ``shape``, their names left as placeholders.

    ``shape`` holds, per field, its placeholder, whether it is a keyword-only parameter, and where its value
    comes from: ``"arg"`` (the parameter), ``"arg|factory"`` (the parameter, or its factory when left out),
    ``"default"`` or ``"factory"`` (not a parameter), ``""`` (not set).
    """
    positional = [name for name, kw, source in shape if source.startswith("arg") and not kw]
    keyword = [name for name, kw, source in shape if source.startswith("arg") and kw]
    body = []
    for name, _, source in shape:
        value = {"arg": name, "arg|factory": f"__record_factory_{name}() if {name} is __record_factory__ else {name}",
                 "default": f"__record_default_{name}", "factory": f"__record_factory_{name}()"}.get(source)
        if value:
            body.append(f"  __record_set__(__record_self__, {name!r}, {value})")
    if post_init:
        body.append("  __record_self__.__post_init__()")
    params = ", ".join(["__record_self__", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({params}):\n" + ("\n".join(body) or "  pass") + "\n"
    env: dict[str, Any] = {}
    exec(source, env)  # noqa: S102  # the source is made above from placeholders, never from a class's text
    return env["__init__"].__code__  # type: ignore[no-any-return]


def _init(cls: Any, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    """The ``__init__`` dataclass makes for a frozen class, without compiling it for each class.

    dataclass (3.11, 3.12) compiles ``__init__``, ``__setattr__`` and ``__delattr__`` one ``exec`` at a time
    for a frozen class, about 0.1 ms each: some 10 ms of a daemon's start-up for the two a record replaces.
    The one left, ``__init__``, differs between records mostly in the names of the fields: it is compiled
    once per shape (how many fields, which have defaults or factories) with placeholder names, and each
    record's copy gets its own names with :meth:`types.CodeType.replace` (0.5 us against 50 for an ``exec``).
    """
    env: dict[str, Any] = {"__record_set__": object.__setattr__, "__record_factory__": _FACTORY}
    shape: list[tuple[str, bool, str]] = []
    names = {"__record_self__": "__record_self__" if any(f.name == "self" for f in fields) else "self"}
    defaults: list[Any] = []
    kwdefaults: dict[str, Any] = {}
    defaulted = False
    for i, f in enumerate(fields):
        name = f.name
        placeholder = f"__record_{i}__"
        names[placeholder] = name
        # A parameter's default goes on the function; a field that is set but not passed reads it from globals.
        default: Any = dataclasses.MISSING
        if f.default is not dataclasses.MISSING:
            default = env[f"__record_default_{placeholder}"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            env[f"__record_factory_{placeholder}"] = f.default_factory
            default = _FACTORY
        if f.init:
            source = "arg|factory" if f.default_factory is not dataclasses.MISSING else "arg"
            if default is not dataclasses.MISSING:
                if f.kw_only:
                    kwdefaults[name] = default
                else:
                    defaults.append(default)
            elif not f.kw_only and defaulted:
                raise TypeError(f"non-default argument {name!r} follows default argument")
            defaulted = defaulted or (default is not dataclasses.MISSING and not f.kw_only)
        else:
            source = ("default" if f.default is not dataclasses.MISSING
                      else "factory" if f.default_factory is not dataclasses.MISSING else "")
        shape.append((placeholder, bool(f.init and f.kw_only), source))
    key = (tuple(shape), hasattr(cls, "__post_init__"))
    template = _TEMPLATES.get(key)
    if template is None:
        template = _TEMPLATES[key] = _template(*key)
    code = template.replace(co_varnames=tuple(names.get(n, n) for n in template.co_varnames),
                            co_consts=tuple(names.get(c, c) if isinstance(c, str) else c
                                            for c in template.co_consts),
                            co_qualname=f"{cls.__qualname__}.__init__")
    made = FunctionType(code, env, "__init__", tuple(defaults) or None)
    made.__kwdefaults__ = kwdefaults or None
    made.__qualname__ = f"{cls.__qualname__}.__init__"
    made.__module__ = cls.__module__
    made.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return made


_TEMPLATES: dict[tuple[tuple[tuple[str, bool, str], ...], bool], CodeType] = {}


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
