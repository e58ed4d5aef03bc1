"""Writing a world to disk: events as JSON Lines, and the ground truth beside them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path

import orjson

from amends.world._business import Business
from amends.world._stream import DEFAULT_MAX_LATENESS, generate_world

__all__ = ["WorldSummary", "truth_path_for", "write_world"]

_TRUTH_SUFFIX = ".truth.jsonl"
_PROGRESS_EVERY = 10_000  # events between two progress calls


@dataclass(frozen=True, slots=True)
class WorldSummary:
    """What `write_world` wrote: where, how many events of each type, and how many customers did what.

    `events` counts lines written, re-sends included; `late` the events held back to arrive late;
    `duplicates` the re-sends.
    """

    business: Business
    path: Path
    truth_path: Path
    seed: int
    start: datetime
    end: datetime
    customers: int
    events: int
    events_by_type: dict[str, int]
    late: int
    duplicates: int
    churned: int
    complained: int


def truth_path_for(path: Path) -> Path:
    """Where the ground truth of an events file goes by default: `<path>.truth.jsonl`."""
    return path.with_name(path.name + _TRUTH_SUFFIX)


def write_world(
    path: str | Path,
    business: str,
    *,
    customers: int,
    days: int,
    seed: int,
    start: datetime | None = None,
    late_share: float = 0.0,
    max_lateness: timedelta = DEFAULT_MAX_LATENESS,
    duplicate_share: float = 0.0,
    truth_path: str | Path | None = None,
    progress: Callable[[int, datetime], None] | None = None,
) -> WorldSummary:
    """Generate a world (see `generate_world`) into a JSON Lines file, and its ground truth beside it.

    Both files are replaced if they exist. The ground truth has one JSON object per customer, in id
    order (the fields of `CustomerTruth`, times in UTC). `progress`, if given, is called after every
    10,000 events written and after the last, with the number of events written so far and the
    simulation's time then (UTC).
    """
    path = Path(path)
    truth = truth_path_for(path) if truth_path is None else Path(truth_path)
    stream = generate_world(
        business,
        customers=customers,
        days=days,
        seed=seed,
        start=start,
        late_share=late_share,
        max_lateness=max_lateness,
        duplicate_share=duplicate_share,
    )
    counts: defaultdict[str, int] = defaultdict(int)  # a Counter costs twice as much per event
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    events = iter(stream)
    written = 0
    with path.open("wb") as out:
        write = out.write
        while True:
            # In slices, so that the loop per event stays as tight as it was without progress.
            for envelope in islice(events, _PROGRESS_EVERY):
                counts[envelope["type"]] += 1
                write(dumps(envelope, option=newline))
            total = sum(counts.values())
            if total == written:
                break
            written = total
            if progress is not None:
                progress(written, stream.now)
    churned = complained = 0
    options = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z
    with truth.open("wb") as out:
        for record in stream.truth():
            churned += record.churned
            complained += record.complained
            out.write(orjson.dumps(record, option=options))
    return WorldSummary(
        business=stream.business,
        path=path,
        truth_path=truth,
        seed=seed,
        start=stream.start,
        end=stream.end,
        customers=customers,
        events=sum(counts.values()),
        events_by_type=dict(sorted(counts.items())),
        late=stream.late,
        duplicates=stream.duplicates,
        churned=churned,
        complained=complained,
    )
