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
