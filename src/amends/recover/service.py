"""Recovery as a running part of a process: the playbooks, the remedy policy and the assignment strategy
the settings name, checked at start, and the intake that turns new incidents into cases on every tick."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from amends.config import Settings
from amends.recover.assign import Assigner
from amends.recover.holdout import HoldoutPlan, close_silent
from amends.recover.intake import Intake, Taken, incident_horizon
from amends.recover.playbooks import PlaybookSet, load_playbooks, shipped_playbooks
from amends.recover.policy import RemedyPolicy, load_policy, shipped_policy
from amends.store import Database

__all__ = ["Recovery"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    db: Database
    intake: Intake
    policy: RemedyPolicy

    @property
    def playbooks(self) -> PlaybookSet:
        return self.intake.playbooks

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> Recovery:
        """Raises PlaybookSetError, PolicyError or InvalidInput when what the settings name has problems."""
        playbooks = load_playbooks([settings.playbooks_dir]) if settings.playbooks_dir else shipped_playbooks()
        policy = load_policy(settings.remedy_policy_file) if settings.remedy_policy_file else shipped_policy()
        assigner = Assigner.from_texts(settings.assign_served_by, settings.assign_teams)
        intake = Intake(
            playbooks,
            assigner,
            settings.complaint_playbook,
            settings.recover_open_backfilled,
            HoldoutPlan.from_settings(settings),
        )
        return cls(db, intake, policy)

    def tick(self, now: datetime | None = None, *, batch: int = 1_000) -> Taken:
        """Take every incident not yet taken, a batch per transaction."""
        opened = joined = passed = 0
        horizon = incident_horizon(self.db)
        while True:
            with self.db.unit_of_work(writes=True) as uow:
                taken = self.intake.take_incidents(uow, now=now or datetime.now(UTC), up_to=horizon, limit=batch)
                uow.commit()
            opened, joined, passed = opened + taken.opened, joined + taken.joined, passed + taken.passed_over
            if taken.incidents < batch:
                break
        if opened or joined:
            log.info("intake: %d case(s) opened, %d incident(s) joined an open case", opened, joined)
        with self.db.unit_of_work(writes=True) as uow:
            self.intake.release_raised(uow, now=now or datetime.now(UTC))
            closed = close_silent(uow, self.intake.holdout, now=now or datetime.now(UTC))
            uow.commit()
        if closed:
            log.info("holdout: %d held-out case(s) nobody raised closed", closed)
        return Taken(opened, joined, passed)
