"""What amends ships for recovery: the playbooks (one file per sample business, and the default five steps)
and a remedy policy for the three sample businesses. A deployment points its settings at its own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["PLAYBOOKS_DIR", "REMEDY_POLICY_FILE"]

_HERE = Path(str(resources.files(__package__)))
PLAYBOOKS_DIR = _HERE / "playbooks"
REMEDY_POLICY_FILE = _HERE / "remedies.yaml"
