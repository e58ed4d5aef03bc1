"""The background work of a process: every few seconds, fire the detection deadlines that fell due (and pick
up changed rules), take the new incidents into cases, ask for feedback about new interactions, alert staff of
feedback past its due time, and deliver the messages that are due; once an hour, apply the retention settings.
`amends serve` runs it beside the API, `amends worker` alone."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from amends.detect.service import Detection
from amends.errors import AmendsError
from amends.feedback.asking import Asking
from amends.feedback.service import FeedbackDesk
from amends.outreach.delivery import Delivery
from amends.privacy.retention import Retention
from amends.recover.service import Recovery
from amends.store import Database

__all__ = ["Background"]

log = logging.getLogger(__name__)


class Background:
    def __init__(
        self,
        detection: Detection | None,
        recovery: Recovery | None,
        *,
        seconds: float,
        delivery: Delivery | None = None,
        feedback: tuple[FeedbackDesk, Database] | None = None,
        asking: Asking | None = None,
        retention: Retention | None = None,
    ) -> None:
        self.detection = detection
        self.recovery = recovery
        self.delivery = delivery
        self.feedback = feedback
        self.asking = asking
        self.retention = retention if retention is not None and retention.enabled else None
        self._retained_at: datetime | None = None
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        if self.detection is not None:
            detected = self.detection.tick()
            if detected.opened or detected.resolved_late:
                log.info("sweep: %d incident(s) opened, %d resolved late", detected.opened, detected.resolved_late)
        if self.recovery is not None:
            self.recovery.tick()
        if self.asking is not None:
            self.asking.tick()
        if self.feedback is not None:
            desk, db = self.feedback
            with db.unit_of_work(writes=True) as uow:
                raised = desk.raise_alerts(uow, now=datetime.now(UTC))
                uow.commit()
            if raised:
                log.info("feedback: %d alert(s) of overdue feedback", raised)
        if self.delivery is not None:
            settled = self.delivery.tick()
            if settled.sent or settled.dead:
                log.info("outbox: %d message(s) sent, %d dead", len(settled.sent), len(settled.dead))
        now = datetime.now(UTC)
        if self.retention is not None and (
            self._retained_at is None or now - self._retained_at >= self.retention.every
        ):
            self._retained_at = now  # first: a pass that fails is tried again a period later, not at every tick
            retained = self.retention.run(now)
            if retained.anything:
                log.info("retention: %d event(s) deleted, texts erased: %s", retained.events, retained.erased)

    def start(self) -> None:
        """Run `tick` every `seconds` on a daemon thread until `stop`."""
        if self._thread is not None or not (
            self.detection or self.recovery or self.delivery or self.asking or self.feedback or self.retention
        ):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="amends-background", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        """Run `tick` every `seconds` on this thread until `stop` is set."""
        while not stop.wait(self.seconds):
            try:
                self.tick()
            except AmendsError as exc:  # the database went away, say: try again next time
                log.warning("background work failed; trying again: %s", exc)
            except Exception:  # a bug must not stop intake and sweeps for good while the API goes on
                log.exception("background work failed unexpectedly; trying again")
