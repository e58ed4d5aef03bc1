"""Delivery as a running part of a process: the outbox worker loop, with the channels the settings name."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from amends.config import Settings
from amends.outreach.cards import worker_channels
from amends.outreach.outbox import Channel, Settled, deliver_due
from amends.store import Database

__all__ = ["Delivery"]


@dataclass(frozen=True)
class Delivery:
    db: Database
    channels: Mapping[str, Channel]
    batch: int
    lease: timedelta
    max_attempts: int
    backoff_base: timedelta
    backoff_cap: timedelta
    max_batches_per_tick: int = 50

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> Delivery:
        return cls(
            db,
            worker_channels(settings, db),
            batch=settings.outbox_batch,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
            max_attempts=settings.outbox_max_attempts,
            backoff_base=timedelta(seconds=settings.outbox_backoff_base_seconds),
            backoff_cap=timedelta(seconds=settings.outbox_backoff_cap_seconds),
        )

    def tick(self, *, now: datetime | None = None) -> Settled:
        """Deliver due messages a batch at a time until none is left (or a tick's share is done); due as of
        `now`, default the clock's time."""
        sent: list[int] = []
        retrying: list[int] = []
        dead: list[int] = []
        lost: list[int] = []
        for _ in range(self.max_batches_per_tick):
            settled = deliver_due(
                self.db,
                self.channels,
                worker=_worker_name(),
                now=now,
                batch=self.batch,
                lease=self.lease,
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_base,
                backoff_cap=self.backoff_cap,
            )
            sent += settled.sent
            retrying += settled.retrying
            dead += settled.dead
            lost += settled.lost
            if len(settled.sent) + len(settled.retrying) + len(settled.dead) + len(settled.lost) < self.batch:
                break
        return Settled(tuple(sent), tuple(retrying), tuple(dead), tuple(lost))


def _worker_name() -> str:
    """Unique to this loop: the host, the process and the thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
