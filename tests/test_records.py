"""meshctl.records.record behaves as @dataclass(frozen=True, slots=True) does, with its methods shared."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshctl.records import record


def twins(body: str) -> tuple[type, type]:
    """The same class body made by dataclass and by record."""
    made = []
    for decorate in (dataclasses.dataclass(frozen=True, slots=True), record):
        ns: dict = {}
        exec(f"class C:\n{body}", {"field": dataclasses.field, "__name__": __name__}, ns)
        made.append(decorate(ns["C"]))
    return made[0], made[1]


SHAPES = {
    "none": "    pass\n",
    "one": "    a: int\n",
    "four": "    a: int\n    b: str\n    c: object = 0.0\n    d: tuple = ()\n",
    "hidden": "    a: int\n    secret: str = field(default='', repr=False)\n",
    "not compared": "    a: int\n    note: str = field(default='', compare=False)\n",
    "not hashed": "    a: int\n    b: object = field(default=0, hash=False)\n",
}
@record
class Point:
    """A record at module level, where pickle finds it."""

    a: int
    b: str = ""


VALUES = st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=True), st.tuples(st.integers()))


@pytest.mark.parametrize("shape", SHAPES)
@given(data=st.data())
def test_a_record_compares_hashes_and_prints_as_a_frozen_dataclass(shape: str, data: st.DataObject) -> None:
    D, R = twins(SHAPES[shape])
    names = [f.name for f in dataclasses.fields(D)]
    assert names == [f.name for f in dataclasses.fields(R)]
    x = {n: data.draw(VALUES) for n in names}
    y = {n: data.draw(st.sampled_from([x[n], data.draw(VALUES)])) for n in names}
    d1, d2, r1, r2 = D(**x), D(**y), R(**x), R(**y)
    assert (r1 == r2) == (d1 == d2) and (r1 != r2) == (d1 != d2)
    assert (r1 == r1) == (d1 == d1)  # a NaN field: a tuple holding the same object is equal to itself
    try:
        expected = hash(d1)
    except TypeError:  # an unhashable value in a hashed field
        with pytest.raises(TypeError):
            hash(r1)
    else:
        assert hash(r1) == expected
    assert repr(r1) == repr(d1)
    assert dataclasses.astuple(r1) == dataclasses.astuple(d1) and dataclasses.asdict(r1) == dataclasses.asdict(d1)
    assert R.__match_args__ == D.__match_args__


def test_a_record_is_frozen_slotted_and_otherwise_a_dataclass() -> None:
    D, R = twins(SHAPES["four"])
    r, d = R(1, "x"), D(1, "x")
    for obj in (r, d):
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
            obj.a = 2
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'b'"):
            del obj.b
        with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):  # 3.11's dataclass: a TypeError
            obj.other = 1
        assert not hasattr(obj, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'other'"):
        r.other = 1
    assert dataclasses.is_dataclass(r) and R.__dataclass_params__.frozen
    assert dataclasses.replace(r, a=5) == R(5, "x")
    assert copy.copy(r) == r and copy.deepcopy(r) == r
    assert pickle.loads(pickle.dumps(Point(1, "x"))) == Point(1, "x")
    assert r != d and (r == (1, "x", 0.0, ())) is False
    assert r.__eq__(d) is NotImplemented
    match r:
        case R(a, b):
            assert (a, b) == (1, "x")


def test_a_record_that_holds_itself_prints_as_a_dataclass_does() -> None:
    D, R = twins("    items: list\n")
    r, d = R([]), D([])
    r.items.append(r)
    d.items.append(d)
    assert repr(r) == repr(d) == "C(items=[...])"


def test_records_share_their_methods() -> None:
    """The point of it: no code compiled per class but __init__ (the memory is measured by make bench)."""
    (_, one), (_, other) = twins(SHAPES["one"]), twins(SHAPES["four"])
    for name in ("__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__"):
        assert getattr(one, name) is getattr(other, name), name
    assert one.__init__ is not other.__init__


def test_what_a_record_defines_itself_stays() -> None:
    @record
    class Secret:
        key: str
        port: int = 0

        def __repr__(self) -> str:
            return f"Secret(key=<set>, port={self.port})"

    @record
    class Loose:
        a: int
        b: int = 0

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Loose) and other.a == self.a

    @record
    class Hashed:
        a: int

        def __hash__(self) -> int:
            return 7

    assert repr(Secret("k", 1)) == "Secret(key=<set>, port=1)"
    assert Loose(1, 2) == Loose(1, 3) and hash(Loose(1, 2)) == hash((1, 2))  # dataclass's __hash__, as dataclass does
    assert hash(Hashed(1)) == 7


INIT_SHAPES = {
    "factory": ("    a: int\n    items: list = field(default_factory=list)\n", [(1,), (1, [2])], [{"a": 1, "items": [3]}]),
    "not in init": ("    a: int\n    b: int = field(default=4, init=False)\n"
                    "    c: list = field(default_factory=list, init=False)\n", [(1,)], [{"a": 2}]),
    "keyword only": ("    a: int\n    b: int = field(default=2, kw_only=True)\n    c: str = ''\n", [(1,), (1, 'x')],
                     [{"a": 1, "b": 5}, {"a": 1, "b": 5, "c": "y"}]),
    "a field named self": ("    self: int\n    other: int = 0\n", [(1,), (1, 2)], [{"self": 3}]),
    "post init": ("    a: int\n    def __post_init__(self):\n        if self.a < 0:\n            raise ValueError('a')\n",
                  [(1,)], [{"a": 2}]),
}


@pytest.mark.parametrize("shape", INIT_SHAPES)
def test_a_record_takes_the_arguments_a_frozen_dataclass_takes(shape: str) -> None:
    import inspect
    body, positional, keyword = INIT_SHAPES[shape]
    D, R = twins(body)
    assert str(inspect.signature(R)) == str(inspect.signature(D))
    assert R.__init__.__annotations__ == D.__init__.__annotations__
    for args in positional:
        assert dataclasses.astuple(R(*args)) == dataclasses.astuple(D(*args))
    for kwargs in keyword:
        assert dataclasses.astuple(R(**kwargs)) == dataclasses.astuple(D(**kwargs))
    for wrong_args, wrong_kwargs in (((), {}), ((1, 2, 3, 4), {}), ((1,), {"nope": 1})):
        with pytest.raises(TypeError) as d_error:
            D(*wrong_args, **wrong_kwargs)
        with pytest.raises(TypeError) as r_error:
            R(*wrong_args, **wrong_kwargs)
        # The same complaint, naming the same parameters (what precedes "()" is the function's qualified name).
        assert str(r_error.value).partition("()")[2] == str(d_error.value).partition("()")[2]
    if shape == "factory":
        assert R(1).items is not R(1).items  # a new list each time
    if shape == "post init":
        with pytest.raises(ValueError):
            R(-1)


def test_a_record_is_refused_where_dataclass_refuses_or_where_it_cannot_follow() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        twins("    a: int = 0\n    b: int\n")
    ns: dict = {}
    exec("class C:\n    a: int\n    b: dataclasses.InitVar[int]\n", {"dataclasses": dataclasses, "__name__": __name__}, ns)
    with pytest.raises(TypeError, match="InitVar"):
        record(ns["C"])


def test_an_undocumented_record_gets_the_doc_dataclass_gives() -> None:
    D, R = twins("    a: int\n    b: str = ''\n")
    assert R.__doc__ == D.__doc__


def test_records_of_one_shape_share_compiled_code_under_their_own_names() -> None:
    _, first = twins("    a: int\n    b: str = ''\n")
    _, second = twins("    port: int\n    host: str = 'x'\n")
    assert first.__init__.__code__.co_code == second.__init__.__code__.co_code
    assert second.__init__.__code__.co_varnames == ("self", "port", "host")
    assert dataclasses.astuple(second(port=1)) == (1, "x")
