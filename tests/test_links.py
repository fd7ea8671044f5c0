"""Link automation without I/O: endpoint choice and interface names."""

from __future__ import annotations

from meshctl.links.plan import EndpointState, interface_name, observe

EPS = ("10.250.0.2:52001", "10.250.0.6:52001")


def test_a_tunnel_that_hears_its_neighbour_stays() -> None:
    s = EndpointState(EPS)
    s, move = observe(s, 100, 0.0, 3.0)
    for t in range(1, 10):
        s, move = observe(s, 100 + t * 32, float(t), 3.0)
        assert move is None
    assert s.endpoint == EPS[0]


def test_silence_moves_to_the_next_endpoint_and_waits_before_judging_it() -> None:
    s, _ = observe(EndpointState(EPS), 100, 0.0, 3.0)
    s, move = observe(s, 100, 2.9, 3.0)
    assert move is None
    s, move = observe(s, 100, 3.0, 3.0)
    assert move == EPS[1] and s.endpoint == EPS[1]
    s, move = observe(s, 100, 5.0, 3.0)  # the new endpoint gets its own dead_after
    assert move is None
    s, move = observe(s, 164, 5.5, 3.0)  # it answers
    s, move = observe(s, 164, 8.0, 3.0)
    assert move is None and s.endpoint == EPS[1]


def test_round_robin_and_a_single_endpoint_never_moves() -> None:
    s, _ = observe(EndpointState(EPS), 0, 0.0, 1.0)
    s, a = observe(s, 0, 1.0, 1.0)
    s, b = observe(s, 0, 2.0, 1.0)
    assert (a, b) == (EPS[1], EPS[0])
    one, _ = observe(EndpointState(EPS[:1]), 0, 0.0, 1.0)
    assert observe(one, 0, 100.0, 1.0)[1] is None


def test_a_recreated_device_is_not_silence() -> None:
    s, _ = observe(EndpointState(EPS), 5000, 0.0, 3.0)
    s, move = observe(s, 10, 10.0, 3.0)
    assert move is None and s.heard == 10.0


def test_link_local_addresses_are_stable_and_per_tunnel() -> None:
    import ipaddress

    from meshctl.links.netdev import link_local_for

    a = ipaddress.IPv6Address(link_local_for("a", "b"))
    assert a.is_link_local and str(a) == link_local_for("a", "b")
    assert link_local_for("a", "b") != link_local_for("b", "a")


def test_interface_names() -> None:
    assert interface_name("gw1") == "mc-gw1"
    assert interface_name("a-very-long-neighbour-name") == "mc-a-very-long-"
    assert interface_name("odd name/x") == "mc-odd_name_x"
