"""Two evaluators, one meaning: for any history, the streaming evaluator (fed in any arrival order within the
allowed lateness, with re-sent duplicates) and the batch evaluator (the sorted history at once) find the same
incidents, with the same facts, statuses and skips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amends.detect import Evaluator, fold, parse_rules
from amends.detect.batch import evaluate_history, events_frame
from amends.events import Event

T0 = datetime(2025, 1, 1, tzinfo=UTC)
LATENESS = timedelta(hours=6)

RULES = parse_rules(
    [
        (
            None,
            """\
rules:
  - id: late
    kind: absence
    after: order.placed
    expect: order.delivered
    key: data.order_id
    deadline: data.promised_by + 2h
    watch_late_for: 1d
  - id: late-fixed
    kind: absence
    after: order.placed
    expect: order.delivered
    where: {data.total: {gte: 50}}
    key: data.order_id
    deadline: 20h
    cooldown: 12h
  - id: big-delay
    kind: match
    on: flight.arrived
    where: {any: [{data.delay: {gte: 180}}, {data.note: {contains: lost}}], not: {data.delay: {lt: 0}}}
    severity: {by: data.delay, steps: [[180, 2], [360, 3]]}
  - id: delay-per-flight
    kind: match
    on: flight.arrived
    key: data.order_id
    where: {data.delay: {gt: 60}}
    cooldown: 1d
  - id: storm
    kind: count
    on: support.contact
    at_least: 3
    within: 1d
  - id: storm-by-order
    kind: count
    on: support.contact
    where: {data.channel: [phone, email]}
    key: data.order_id
    at_least: 2
    within: 8h
    cooldown: 6h
  - id: rework
    kind: sequence
    first: order.delivered
    then: support.contact
    key: data.order_id
    within: 10h
  - id: repeat
    kind: sequence
    first: support.contact
    then: support.contact
    within: 5h
""",
        )
    ]
)

TYPES = ["order.placed", "order.delivered", "flight.arrived", "support.contact", "other"]
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 500),
    st.floats(-10, 500, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "phone", "email", "lost bag", "O-1", "x"]),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    count = draw(st.integers(0, 40))
    events = []
    for n in range(count):
        # Whole quarter hours, so that instants repeat and ties are exercised.
        at = T0 + timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 4)))
        data: dict[str, Any] = {}
        for name, strategy in (
            ("order_id", st.one_of(st.sampled_from(["O-1", "O-2", "O-3"]), st.integers(1, 2), values)),
            ("promised_by", st.one_of(st.none(), st.just("soon"), st.integers(-48, 96))),
            ("total", values),
            ("delay", values),
            ("note", values),
            ("channel", st.one_of(values, st.lists(st.sampled_from(["phone", "x"]), max_size=2))),
        ):
            if draw(st.booleans()):
                value = draw(strategy)
                if name == "promised_by" and isinstance(value, int):
                    offset = draw(st.sampled_from(["+00:00", "+05:30", "-03:00", "Z"]))
                    local = (at + timedelta(hours=value)).astimezone(UTC)
                    value = local.strftime("%Y-%m-%dT%H:%M:%S") + offset if offset == "Z" else _local(local, offset)
                data[name] = value
        events.append(
            Event(
                id=f"e-{n}",
                source="https://example.com",
                type=draw(st.sampled_from(TYPES)),
                time=at,
                subject=draw(st.sampled_from(["C-1", "C-2"])),
                data=data,
            )
        )
    return events


def _local(instant: datetime, offset: str) -> str:
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    shifted = instant + sign * timedelta(hours=hours, minutes=minutes)
    return shifted.strftime("%Y-%m-%dT%H:%M:%S") + offset


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_streaming_in_any_order_within_the_lateness_equals_batch(history: list[Event], data: st.DataObject) -> None:
    # Arrival order: by time plus a jitter below the allowed lateness, so no event is late; some re-sent.
    jitter = [data.draw(st.integers(0, LATENESS // timedelta(minutes=1) - 1)) for _ in history]
    arrivals = sorted(range(len(history)), key=lambda i: history[i].time + timedelta(minutes=jitter[i]))
    resent = data.draw(st.lists(st.sampled_from(arrivals), max_size=5)) if arrivals else []
    for index in resent:
        arrivals.insert(data.draw(st.integers(arrivals.index(index) + 1, len(arrivals))), index)
    chunks = data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=20))

    evaluator = Evaluator(RULES, lateness=LATENESS)
    stored: set[int] = set()
    findings = []
    position, chunk = 0, 0
    while position < len(arrivals):
        size = chunks[chunk % len(chunks)]
        chunk += 1
        batch = []
        for index in arrivals[position : position + size]:
            if index not in stored:  # the ledger keeps an event once; a re-send is a duplicate
                stored.add(index)
                batch.append(history[index])
        position += size
        findings += evaluator.observe(batch)
        findings += evaluator.advance()
    assert evaluator.late_events == 0

    until = evaluator.watermark or T0
    batch_result = evaluate_history(RULES, events_frame(history), until=until)

    assert fold(findings) == fold(batch_result.findings)
    assert dict(evaluator.skipped) == batch_result.skipped
