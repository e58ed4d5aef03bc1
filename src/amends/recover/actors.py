"""Who is asking: a staff member (through their key or, later, a console session), an integration's key,
or amends itself. Every decision the recovery stage records names its actor."""

from __future__ import annotations

from dataclasses import dataclass, field

from amends.access import Scope
from amends.errors import Forbidden
from amends.recover.roles import Role
from amends.recover.staff import StaffMember

__all__ = ["SYSTEM", "Actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    key_id: str | None
    staff: StaffMember | None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    origin: str | None = None  # the client's address, when the request came over HTTP

    @property
    def label(self) -> str:
        if self.staff is not None:
            return f"staff:{self.staff.id}"
        if self.key_id is not None:
            return f"key:{self.key_id}"
        if self.origin is not None:
            return "anonymous"  # someone on a public page or the login page, known by address only
        return "system"

    def person(self, doing: str) -> StaffMember:
        """The staff member acting; Forbidden for an integration key, which has no authority of its own."""
        if self.staff is None:
            raise Forbidden(f"{doing} needs a staff member's own key; an integration key cannot")
        return self.staff

    def at_least(self, role: Role, doing: str) -> StaffMember:
        """The staff member acting, if their role is `role` or above."""
        member = self.person(doing)
        if not member.role.at_least(role):
            raise Forbidden(f"{doing} needs the role {role.value} or above; {member.id} is {member.role.value}")
        return member


SYSTEM = Actor(None, None)
