"""Gateway selection: table-driven, fake clock."""

from __future__ import annotations

from meshctl.uplink.policy import CandidateView, Hysteresis, SelectorState, select

P = Hysteresis(margin=32, hold=3.0, warm_age=150.0)


def c(name: str, metric: int, age: float | None = 5.0) -> CandidateView:
    return CandidateView(name, metric, age)


def run(steps: list[tuple[float, list[CandidateView]]], state: SelectorState | None = None) -> tuple[SelectorState, list]:
    state = state or SelectorState()
    switches = []
    for now, cands in steps:
        state, sw, _ = select(state, cands, now, P)
        if sw:
            switches.append((now, sw.old, sw.new))
    return state, switches


def test_initial_choice_is_best_warm() -> None:
    state, sw, deadline = select(SelectorState(), [c("gw1", 200), c("gw2", 100)], 0.0, P)
    assert sw is not None and sw.new == "gw2" and sw.old is None and "initial" in sw.reason
    assert state.chosen == "gw2" and deadline is None


def test_cold_candidates_are_not_chosen_while_a_warm_one_exists() -> None:
    _, sw, _ = select(SelectorState(), [c("gw1", 100, None), c("gw2", 300, 10)], 0.0, P)
    assert sw is not None and sw.new == "gw2"


def test_unreachable_current_is_left_at_once() -> None:
    state = SelectorState(chosen="gw1")
    state, sw, _ = select(state, [c("gw1", 65535), c("gw2", 300)], 10.0, P)
    assert sw is not None and sw.new == "gw2" and "gw1 unreachable (metric 65535)" in sw.reason


def test_current_without_handshake_is_down() -> None:
    state = SelectorState(chosen="gw1")
    _, sw, _ = select(state, [c("gw1", 96, 200.0), c("gw2", 300)], 10.0, P)
    assert sw is not None and "gw1 down (last handshake 200 s ago)" in sw.reason


def test_better_gateway_must_win_by_margin_for_hold() -> None:
    state = SelectorState(chosen="gw1")
    # Better by less than the margin: never.
    state, switches = run([(t, [c("gw1", 130), c("gw2", 100)]) for t in range(0, 20)], state)
    assert switches == []
    # Better by more: only after the hold.
    state, sw, deadline = select(state, [c("gw1", 200), c("gw2", 100)], 20.0, P)
    assert sw is None and deadline == 23.0 and state.challenger == "gw2"
    state, sw, _ = select(state, [c("gw1", 200), c("gw2", 100)], 22.9, P)
    assert sw is None
    state, sw, _ = select(state, [c("gw1", 200), c("gw2", 100)], 23.0, P)
    assert sw is not None and sw.new == "gw2" and "better by 100 (100 vs 200) for 3.0 s" in sw.reason


def test_interrupted_challenge_starts_over() -> None:
    state = SelectorState(chosen="gw1")
    state, _ = run([(0.0, [c("gw1", 200), c("gw2", 100)]), (2.0, [c("gw1", 200), c("gw2", 190)])], state)
    assert state.challenger is None
    state, switches = run([(2.5, [c("gw1", 200), c("gw2", 100)]), (5.0, [c("gw1", 200), c("gw2", 100)])], state)
    assert switches == [] and state.challenger == "gw2"


def test_flapping_primary_costs_one_switch_per_real_failure_and_never_flaps_back() -> None:
    state = SelectorState(chosen="gw1")
    steps = []
    for second in range(60):  # gw1 up one second, down the next, for a minute
        gw1 = c("gw1", 96) if second % 2 == 0 else c("gw1", 65535)
        steps.append((float(second), [gw1, c("gw2", 200)]))
    state, switches = run(steps, state)
    assert switches == [(1.0, "gw1", "gw2")]
    assert state.chosen == "gw2"


def test_nothing_eligible_keeps_current() -> None:
    state = SelectorState(chosen="gw1")
    state, sw, _ = select(state, [c("gw1", 65535), c("gw2", 65535)], 0.0, P)
    assert sw is None and state.chosen == "gw1"


def test_dead_current_and_only_cold_alternative() -> None:
    state = SelectorState(chosen="gw1")
    _, sw, _ = select(state, [c("gw1", 65535), c("gw2", 200, None)], 0.0, P)
    assert sw is not None and sw.new == "gw2" and "cold" in sw.reason


def test_gateway_not_answering_probes_is_left_at_once_even_if_babel_still_reaches_it() -> None:
    state = SelectorState(chosen="gw1")
    dead = CandidateView("gw1", 416, 5.0, alive=False)  # Babel: reachable the long way round
    _, sw, _ = select(state, [dead, c("gw2", 160)], 0.0, P)
    assert sw is not None and sw.new == "gw2" and "gw1 down (not answering probes)" in sw.reason
    _, sw, _ = select(SelectorState(), [dead, c("gw2", 900)], 0.0, P)
    assert sw is not None and sw.new == "gw2"


def test_two_cold_gateways_do_not_trade_places() -> None:
    state = SelectorState(chosen="gw1")
    cands = [c("gw1", 96, None), c("gw2", 160, None)]  # both alive, no handshake seen yet
    for t in range(10):
        state, sw, _ = select(state, cands, float(t), P)
        assert sw is None
    assert state.chosen == "gw1"


def test_candidate_states() -> None:
    assert c("a", 65535).state(P) == "unreachable"
    assert c("a", 1, None).state(P) == "cold"
    assert c("a", 1, 149.0).state(P) == "warm"
    assert c("a", 1, 151.0).state(P) == "cold"
    assert CandidateView("a", 1, 1.0, alive=False).state(P) == "down"
