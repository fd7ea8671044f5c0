"""The session state machine, driven with bytes in memory (no sockets)."""

from __future__ import annotations

import pytest

from meshctl.babel import events as ev
from meshctl.babel.protocol import BabelProtocol, Closed, CommandDone, Malformed, Ready, State

BANNER = b"BABEL 1.0\nversion babeld-1.12.1\nhost vm\nmy-id 02:00:00:00:00:00:00:01\nok\n"


def ready() -> BabelProtocol:
    p = BabelProtocol()
    p.receive_data(BANNER)
    assert isinstance(p.next_event(), Ready)
    return p


def test_banner_becomes_one_ready_event() -> None:
    p = BabelProtocol()
    p.receive_data(BANNER)
    (event,) = p.events()
    assert event == Ready(ev.Banner("1.0", "babeld-1.12.1", "vm", "02:00:00:00:00:00:00:01"))
    assert p.state is State.READY


def test_banner_split_at_every_byte_gives_the_same_result() -> None:
    p = BabelProtocol()
    for i in range(len(BANNER)):
        p.receive_data(BANNER[i : i + 1])
    assert [type(e) for e in p.events()] == [Ready]


def test_unknown_banner_lines_are_kept() -> None:
    p = BabelProtocol()
    p.receive_data(b"BABEL 1.0\nversion babeld-9\nfeatures shiny\nok\n")
    (event,) = p.events()
    assert isinstance(event, Ready) and event.banner.extra == ("features shiny",)


def test_replies_match_commands_in_order() -> None:
    p = ready()
    p.send("dump")
    p.send("flush interface nope")
    p.receive_data(b"add interface wg0 up false\nok\nno No such interface\n")
    events = p.events()
    assert events[0] == ev.InterfaceUpdate(ev.Kind.ADD, "wg0", False)
    assert events[1] == CommandDone("dump", "ok")
    assert events[2] == CommandDone("flush interface nope", "no", "No such interface")
    assert not events[2].ok
    assert p.pending == ()


def test_send_refuses_what_babeld_would_misread() -> None:
    p = ready()
    for bad in ("dump\nquit", "", "frobnicate", "dump\rquit", "dump\x00", "interface wg\t0"):
        with pytest.raises(ValueError):
            p.send(bad)
    assert p.send("  monitor ") == b"monitor\n"
    assert p.send("interface ra\u00e90") == "interface ra\u00e90\n".encode()  # Linux allows UTF-8 names
    assert p.send("quit") == b"quit\n"
    assert p.pending == ("monitor", "interface ra\u00e90")  # quit gets no reply


def test_bad_reply() -> None:
    p = ready()
    p.send("interface wg9")
    p.receive_data(b"bad\n")
    assert p.events() == [CommandDone("interface wg9", "bad")]


def test_reply_without_command_is_malformed_not_fatal() -> None:
    p = ready()
    p.receive_data(b"ok\nadd interface wg0 up false\n")
    events = p.events()
    assert isinstance(events[0], Malformed)
    assert isinstance(events[1], ev.InterfaceUpdate)
    assert p.malformed == 1


def test_malformed_line_in_the_middle_does_not_stop_the_stream() -> None:
    p = ready()
    p.receive_data(b"add route 1 prefix nonsense\nadd interface wg0 up true\n")
    events = p.events()
    assert isinstance(events[0], Malformed)
    assert "prefix" in str(events[0].error)
    assert events[1] == ev.InterfaceUpdate(ev.Kind.ADD, "wg0", True)


def test_overlong_line_is_skipped_to_its_end() -> None:
    p = BabelProtocol(max_line=64)
    p.receive_data(BANNER)
    p.events()
    p.receive_data(b"add route " + b"x" * 100)
    p.receive_data(b"y" * 100)
    p.receive_data(b"\nadd interface wg0 up false\n")
    events = p.events()
    assert [type(e) for e in events] == [Malformed, ev.InterfaceUpdate]


def test_truncated_last_line_at_eof() -> None:
    p = ready()
    p.receive_data(b"add route 1 prefix 10.0.0.0/8 fr")
    p.receive_data(b"")
    events = p.events()
    assert isinstance(events[0], Malformed) and "truncated" in str(events[0].error)
    assert isinstance(events[1], Closed)
    assert p.state is State.CLOSED
    p.receive_data(b"ok\n")  # ignored after close
    assert p.events() == []


def test_real_dump_through_the_protocol(real_dump: bytes) -> None:
    p = BabelProtocol()
    p.send("dump")
    p.receive_data(real_dump)
    events = p.events()
    assert isinstance(events[0], Ready)
    assert events[-1] == CommandDone("dump", "ok")
    assert p.malformed == 0
    assert sum(isinstance(e, ev.RouteUpdate) for e in events) == 16


ROUTE_LINE = (b"route 5565 prefix 10.99.0.1/32 from 0.0.0.0/0 installed yes id 02:00:00:00:00:00:00:02 "
              b"metric 96 refmetric 0 via fe80::2 if wg1\n")


def monitoring() -> BabelProtocol:
    p = ready()
    p.send("monitor")
    p.receive_data(b"add " + ROUTE_LINE + b"ok\n")
    assert [type(e) for e in p.events()] == [ev.RouteUpdate, CommandDone]
    return p


def test_repeats_of_the_last_line_for_an_object_are_dropped_before_parsing() -> None:
    p = monitoring()
    p.receive_data(b"change " + ROUTE_LINE + b"change " + ROUTE_LINE)  # "add" and "change" say the same
    assert p.events() == [] and p.repeats == 2
    p.receive_data(b"change " + ROUTE_LINE.replace(b"metric 96", b"metric 97"))
    assert [e.route.metric for e in p.events()] == [97]  # type: ignore[attr-defined]
    p.receive_data(b"change " + ROUTE_LINE)  # back to 96: not a repeat of the last line
    assert len(p.events()) == 1


def test_a_flushed_object_that_comes_back_is_news() -> None:
    p = monitoring()
    p.receive_data(b"flush " + ROUTE_LINE + b"add " + ROUTE_LINE)
    assert [e.kind for e in p.events()] == [ev.Kind.FLUSH, ev.Kind.ADD]  # type: ignore[attr-defined]
    assert p.repeats == 0


def test_the_table_a_dump_answers_with_is_never_dropped() -> None:
    p = monitoring()
    p.send("dump")
    p.receive_data(b"add " + ROUTE_LINE + b"ok\n")
    assert [type(e) for e in p.events()] == [ev.RouteUpdate, CommandDone]
    p.receive_data(b"change " + ROUTE_LINE)  # the dump is answered: repeats are dropped again
    assert p.events() == [] and p.repeats == 1


def test_without_monitor_nothing_is_remembered() -> None:
    """A one-shot dump (topology dump) keeps no per-object memory."""
    p = ready()
    p.send("dump")
    p.receive_data(b"add " + ROUTE_LINE + b"change " + ROUTE_LINE + b"ok\n")
    assert len(p.events()) == 3 and p.repeats == 0 and not p._last


def test_a_malformed_line_is_not_remembered_so_its_repeat_is_counted_again() -> None:
    p = monitoring()
    bad = b"change " + ROUTE_LINE.replace(b"installed yes", b"installed maybe")
    p.receive_data(bad + bad)
    assert [type(e) for e in p.events()] == [Malformed, Malformed] and p.repeats == 0


def test_lines_split_anywhere_give_the_same_events() -> None:
    data = b"add " + ROUTE_LINE + b"change " + ROUTE_LINE.replace(b"96", b"97") + b"x" * 5000 + b"\nok\n"
    whole = ready()
    whole.send("dump")
    whole.receive_data(data)

    def shown(events: list[ev.Event]) -> list[object]:
        return [str(e.error) if isinstance(e, Malformed) else e for e in events]  # errors compare by identity

    expected = shown(whole.events())
    assert len(expected) == 4
    for cut in (1, 7, 100, 4097, len(data) - 1):
        p = ready()
        p.send("dump")
        for i in range(0, len(data), cut):
            p.receive_data(data[i : i + cut])
        assert shown(p.events()) == expected, cut
