"""Staff roles, from the least to the most trusted. A role says what a person may do; how much they may
grant is the remedy policy's authority table (recover/policy.py)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROLES", "Role"]


class Role(StrEnum):
    AGENT = "agent"  # works cases, grants within their limit
    LEAD = "lead"  # also reassigns cases in their team
    MANAGER = "manager"  # also approves and denies requests above others' limits, reverses ledger entries
    ADMIN = "admin"  # also manages staff

    @property
    def rank(self) -> int:
        return ROLES.index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


ROLES: tuple[Role, ...] = (Role.AGENT, Role.LEAD, Role.MANAGER, Role.ADMIN)
