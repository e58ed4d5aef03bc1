"""Rule packs: the rules amends ships for the three sample businesses, as YAML files in this package.

A pack is an ordinary rule file (`shop.yaml`, `airline.yaml`, `car_service.yaml`); rule ids carry the
pack's prefix (`shop-`, `air-`, `car-`) so that any packs load together. Read only the event types and
fields the sample world emits (docs/world.md); docs/rules.md lists what each rule detects.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from amends.errors import InvalidInput

__all__ = ["PACKS", "pack_path", "pack_paths"]

PACKS: tuple[str, ...] = ("shop", "airline", "car_service")


def pack_path(name: str) -> Path:
    """The file of the pack called `name` (`car-service` is accepted for `car_service`).

    Raises InvalidInput naming `rule_packs` and the known packs when there is no such pack.
    """
    normalised = name.strip().lower().replace("-", "_")
    if normalised not in PACKS:
        known = ", ".join(PACKS)
        raise InvalidInput("rule_packs", f"no rule pack called {name!r}; the packs are {known}")
    # The wheel installs the package as plain files, so the resource is a real path on disk.
    return Path(str(resources.files(__name__) / f"{normalised}.yaml"))


def pack_paths(names: Iterable[str]) -> list[Path]:
    """The files of several packs, in the order given, each once."""
    paths: list[Path] = []
    for name in names:
        path = pack_path(name)
        if path not in paths:
            paths.append(path)
    return paths
