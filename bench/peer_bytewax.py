"""The peer of bench/detect.py: amends' absence and count rules written as a Bytewax 0.21.1 dataflow.

It runs in its own virtualenv (bench/.peer-venv, which bench/detect.py creates), so it imports nothing from
amends. It reads a spec (JSON: the rules, the allowed lateness, the watermark, the events file and where to
write its result), loads the events into memory, then times `run_main` over them and writes a JSON result:
seconds, events, incidents per rule and, for absence rules, the keys that fired.

How each kind is written with Bytewax's windowing operators, and where the meaning differs from amends:

- absence: the start and expected events of a key meet in a session window (`fold_window` with a
  `SessionWindower`) whose gap covers the longest wait (deadline offset + `watch_late_for` + the lead time
  of the deadline field); when the session closes, the first start's deadline is read from its data and
  compared with the first expected event from it on. amends fires at the deadline from a timer; here the
  answer comes when the session closes, later, but names the same keys. A key that starts again after its
  expectation ended (a second round) is not modelled: one session, one expectation.
- count: `count_window` over hopping windows (`SlidingWindower`, `within` long, one every `hop`) per key; a
  window holding at least N events is an incident. amends' window slides with every event and an episode
  that goes on is one incident; here a burst is seen by every window that holds it, and a burst that
  straddles window edges may be missed by all of them. So the counts differ by design.
- time: an `EventClock` on the events' time with the same allowed lateness amends uses; events later than
  that go to the operator's `late` stream and are counted, not evaluated.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import (
    EventClock,
    SessionWindower,
    SlidingWindower,
    count_window,
    fold_window,
)
from bytewax.testing import TestingSink, TestingSource, run_main

LEAD = timedelta(days=10)  # longest time from a start event to the instant in its deadline field, assumed


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else None


def _data(event: dict[str, Any], path: str) -> Any:
    """The value at a dotted path `data.a.b` (no list indexes: the rules given to the peer have none)."""
    value: Any = event["data"]
    for step in path.split(".")[1:]:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def _key_of(event: dict[str, Any], path: str) -> str | None:
    """The correlation key as amends reads it: non-empty text or a whole number, else none."""
    value = event["subject"] if path == "subject" else _data(event, path)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def build(spec: dict[str, Any], events: list[dict[str, Any]], out: list[tuple[str, str]]) -> tuple[Dataflow, list]:
    lateness = timedelta(seconds=spec["lateness_seconds"])
    until = datetime.fromisoformat(spec["until"])
    start = datetime.fromisoformat(spec["start"])
    # A replay of past events: windows close as the events' time passes them (and at the end of the input),
    # never by waking up on the system clock, whose "now" is long after every window's close.
    clock = EventClock(lambda event: event["ts"], wait_for_system_duration=lateness, to_system_utc=lambda _: None)
    late: list[Any] = []
    flow = Dataflow("amends_peer")
    source = op.input("events", flow, TestingSource(events))

    for number, rule in enumerate(spec["absence"]):
        step = f"absence{number}"  # a step id has no dots; rule ids may
        rid, after, expect, key = rule["id"], rule["after"], rule["expect"], rule["key"]
        field, offset = rule["deadline_field"], timedelta(seconds=rule["offset_seconds"])
        watch = timedelta(seconds=rule["watch_late_seconds"])

        def relevant(event: dict[str, Any], after: str = after, expect: str = expect, key: str = key) -> Any:
            if event["type"] != after and event["type"] != expect:
                return None
            k = _key_of(event, key)
            return None if k is None else (k, event)

        keyed = op.filter_map(f"{step}_select", source, relevant)

        def fold(state: list, event: dict[str, Any], after: str = after, field: str | None = field) -> list:
            role = 0 if event["type"] == after else 1
            due = None
            if role == 0:
                due = event["ts"] if field is None else _instant(_data(event, field))
            state.append((event["ts"], role, due))
            return state

        windows = fold_window(
            f"{step}_session",
            keyed,
            clock,
            SessionWindower(gap=offset + watch + LEAD),
            list,
            fold,
            lambda a, b: a + b,
        )

        def judge(
            item: tuple[str, tuple[int, list]], rid: str = rid, offset: timedelta = offset, watch: timedelta = watch
        ) -> tuple[str, str] | None:
            k, (_, state) = item
            state.sort(key=lambda entry: (entry[0], entry[1]))
            for index, (at, role, due) in enumerate(state):
                if role != 0:
                    continue
                if due is None:
                    return None  # amends skips a start without a deadline; so does the peer
                deadline = max(due + offset, at)
                if deadline >= until:
                    return None
                expected = next((e for e, r, _ in state[index:] if r == 1), None)
                if expected is not None and expected <= deadline:
                    return None
                resolved = expected is not None and expected <= deadline + watch
                return (rid, k + ("|resolved_late" if resolved else ""))
            return None

        op.output(f"{step}_out", op.filter_map(f"{step}_judge", windows.down, judge), TestingSink(out))
        op.output(f"{step}_late", windows.late, TestingSink(late))

    for number, rule in enumerate(spec["count"]):
        step = f"count{number}"
        rid, on, key, at_least = rule["id"], rule["on"], rule["key"], rule["at_least"]
        within, hop = timedelta(seconds=rule["within_seconds"]), timedelta(seconds=rule["hop_seconds"])
        chosen = op.filter(f"{step}_select", source, lambda event, on=on, key=key: event["type"] == on)
        windows = count_window(
            f"{step}_window",
            chosen,
            clock,
            SlidingWindower(length=within, offset=hop, align_to=start),
            lambda event, key=key: _key_of(event, key) or "",
        )

        def fired(item: tuple[str, tuple[int, int]], rid: str = rid, at_least: int = at_least) -> Any:
            k, (window, count) = item
            return (rid, f"{k}#{window}") if k and count >= at_least else None

        op.output(f"{step}_out", op.filter_map(f"{step}_fired", windows.down, fired), TestingSink(out))
        op.output(f"{step}_late", windows.late, TestingSink(late))
    return flow, late


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak across fork and exec."""
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as file:
        spec = json.load(file)
    events = []
    with open(spec["events"], "rb") as file:
        for line in file:
            event = json.loads(line)
            event["ts"] = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
            events.append(event)
    found: list[tuple[str, str]] = []
    flow, late = build(spec, events, found)
    started = time.perf_counter()
    run_main(flow)
    seconds = time.perf_counter() - started
    incidents: dict[str, int] = {}
    keys: dict[str, list[str]] = {}
    for rule_id, key in found:
        incidents[rule_id] = incidents.get(rule_id, 0) + 1
        keys.setdefault(rule_id, []).append(key)
    result = {
        "seconds": seconds,
        "events": len(events),
        "late": len(late),
        "incidents": incidents,
        "keys": keys,
        "peak_rss_kib": peak_rss_kib(),
    }
    with open(spec["out"], "w", encoding="utf-8") as file:
        json.dump(result, file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
