"""A filter's row estimate is asked of the planner once per ESTIMATE_SECONDS, per filter
and parameters, and the store stays bounded."""

from __future__ import annotations

from tandem.index.filters import FilterEstimates


class Planner:
    def __init__(self) -> None:
        self.asked = 0

    def estimate(self) -> float:
        self.asked += 1
        return 100.0 * self.asked


def test_an_estimate_is_reused_until_it_is_old_then_asked_again() -> None:
    now = [0.0]
    estimates = FilterEstimates(seconds=60.0, clock=lambda: now[0])
    planner = Planner()
    readers: dict[str, object] = {"filter_readers": ["u:1"]}
    assert estimates.rows("c.readers && x", readers, planner.estimate) == 100.0
    now[0] = 59.0
    assert estimates.rows("c.readers && x", readers, planner.estimate) == 100.0
    assert planner.asked == 1
    now[0] = 60.0
    assert estimates.rows("c.readers && x", readers, planner.estimate) == 200.0
    assert planner.asked == 2


def test_other_parameters_or_sql_are_estimated_on_their_own() -> None:
    estimates = FilterEstimates()
    planner = Planner()
    estimates.rows("c.readers && x", {"filter_readers": ["u:1"]}, planner.estimate)
    estimates.rows("c.readers && x", {"filter_readers": ["u:2"]}, planner.estimate)
    estimates.rows("c.source = ANY(x)", {"filter_readers": ["u:2"]}, planner.estimate)
    assert planner.asked == 3


def test_the_oldest_estimates_make_room_for_new_ones() -> None:
    estimates = FilterEstimates(capacity=2)
    planner = Planner()
    for user in ("u:1", "u:2", "u:3"):
        estimates.rows("f", {"r": [user]}, planner.estimate)
    estimates.rows("f", {"r": ["u:3"]}, planner.estimate)  # kept
    assert planner.asked == 3
    estimates.rows("f", {"r": ["u:1"]}, planner.estimate)  # dropped: asked again
    assert planner.asked == 4
