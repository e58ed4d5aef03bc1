"""Failed sign-ins counted in the database (access/login_attempts.py): by address and by name, within a moving
window, on both engines; what the window has passed is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from amends.access.login_attempts import LoginLimit, name_key
from amends.store import Database, tables

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
KEY = b"a secret key for these tests only"


def test_failures_count_per_address_and_per_name_within_the_window(db: Database) -> None:
    limit = LoginLimit.parse("3/minute")
    assert (limit.attempts, limit.window) == (3, timedelta(minutes=1))
    boss, ana = name_key(KEY, "boss"), name_key(KEY, "ana")
    assert name_key(KEY, " BOSS ") == boss
    assert name_key(b"another key", "boss") != boss

    with db.unit_of_work(writes=True) as uow:
        for second, address in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
            assert limit.allows(uow, address, boss, now=T0 + timedelta(seconds=second))
            limit.failed(uow, address, boss, now=T0 + timedelta(seconds=second))
        uow.commit()
    with db.unit_of_work() as uow:
        assert not limit.allows(uow, "10.0.0.9", boss, now=T0 + timedelta(seconds=10))  # the name is at the limit
        assert limit.allows(uow, "10.0.0.9", ana, now=T0 + timedelta(seconds=10))  # another name from elsewhere
        # The first failure leaves the window at T0 + 60 s: two are left, under the limit.
        assert limit.allows(uow, "10.0.0.9", boss, now=T0 + timedelta(seconds=60))

    with db.unit_of_work(writes=True) as uow:  # one address trying names: the address is what is counted
        for second in range(3):
            limit.failed(uow, "10.0.0.7", name_key(KEY, f"name {second}"), now=T0 + timedelta(seconds=20 + second))
        uow.commit()
    with db.unit_of_work() as uow:
        assert not limit.allows(uow, "10.0.0.7", ana, now=T0 + timedelta(seconds=30))
        assert limit.allows(uow, "10.0.0.8", ana, now=T0 + timedelta(seconds=30))

    with db.unit_of_work(writes=True) as uow:  # a failure long after: the others have left the window and go
        limit.failed(uow, "10.0.0.1", ana, now=T0 + timedelta(hours=1))
        uow.commit()
    with db.unit_of_work() as uow:
        kept = uow.execute(sa.select(tables.login_failures.c.address, tables.login_failures.c.name_key)).all()
    assert [tuple(row) for row in kept] == [("10.0.0.1", ana)]
