"""What amends ships for outreach: message templates for every step that writes to the customer, in English,
German and Spanish, and English ones for the sample businesses' most common incidents. A deployment points
its settings at its own."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["TEMPLATES_DIR"]

# The wheel installs the package as plain files, so the resource is a real path on disk.
TEMPLATES_DIR = Path(str(resources.files(__package__))) / "templates"
