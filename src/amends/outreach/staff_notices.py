"""Notices to staff about their own account: an email when the way they sign in to the console changes (their
password, their second step), so that a change they did not make is noticed (OWASP ASVS 2.2.3). Written to the
outbox in the transaction that makes the change, like every message; a person without an email address gets none.
The notice never holds the secret itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from amends.outreach.outbox import ChannelName, Draft, Message, MessageKind, enqueue
from amends.recover.staff import StaffMember
from amends.store import UnitOfWork

__all__ = ["notify_account_change"]


def notify_account_change(
    uow: UnitOfWork, member: StaffMember, *, change: str, company: str, origin: str | None, now: datetime
) -> Message | None:
    """Email `member` that `change` happened to their console sign-in (a sentence: "Your console password was
    changed."); None when they have no email address. One message per change and instant (the key)."""
    if member.email is None:
        return None
    when = f"{now.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    text = (
        f"Hello {member.name},\n\n{change} This was done on {when}"
        + (f" from the address {origin}" if origin else "")
        + ".\n\nIf it was you, there is nothing more to do. If it was not, tell an administrator of the "
        f"{company} console at once: they can set a new password, which ends every session.\n"
    )
    subject = f"{company}: your console sign-in was changed"
    draft = Draft(
        key=f"staff:{member.id}:account:{now.astimezone(UTC).isoformat(timespec='microseconds')}:{_digest(change)}",
        channel=ChannelName.EMAIL,
        kind=MessageKind.ALERT,
        recipient=member.email,
        subject=subject[:200],
        text=text,
        customer_id="-",  # for staff, about no customer (as feedback alerts)
    )
    message, _new = enqueue(uow, draft, now=now)
    return message


def _digest(change: str) -> str:
    return hashlib.blake2b(change.encode(), digest_size=4).hexdigest()
