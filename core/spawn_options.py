"""Validate a user's spawn choices against the configured resource groups (pure).

The spawn form is only a convenience: the hub re-checks every option here, so
a hand-made POST cannot pick a forbidden group or exceed a group's limits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .resource_groups import ResourceGroup, Size


class OptionsError(ValueError):
    """The user's options are invalid (HTTP 400)."""


class ForbiddenGroup(OptionsError):
    """The user may not use this resource group (HTTP 403)."""


@dataclass(frozen=True)
class SpawnChoice:
    group: ResourceGroup
    size: Size
    gpus: int

    def to_options(self) -> dict[str, Any]:
        return {"resource_group": self.group.name, "size": self.size.name, "gpus": self.gpus}


def allowed_groups(groups: Iterable[ResourceGroup], user_groups: Iterable[str]) -> list[ResourceGroup]:
    user_groups = list(user_groups)
    return [g for g in groups if g.allows(user_groups)]


def _one(value: Any) -> Any:
    """Form posts give lists of strings; the JSON API gives scalars."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def resolve(options: Mapping[str, Any], groups: Iterable[ResourceGroup], user_groups: Iterable[str]) -> SpawnChoice:
    """Turn raw user options into a checked SpawnChoice.

    Missing options take defaults: the first allowed group, its first size,
    and one GPU for a GPU group (zero otherwise).
    """
    groups = list(groups)
    allowed = allowed_groups(groups, user_groups)
    known = {"resource_group", "size", "gpus", "profile"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionsError(f"unknown spawn options: {', '.join(unknown)}")
    name = _one(options.get("resource_group"))
    if name in (None, ""):
        if not allowed:
            raise ForbiddenGroup("no resource group is available to you; ask an administrator")
        group = allowed[0]
    else:
        matches = [g for g in groups if g.name == str(name)]
        if not matches:
            raise OptionsError(f"unknown resource group {name!r}")
        group = matches[0]
        if group not in allowed:
            raise ForbiddenGroup(f"you are not allowed to use resource group {group.name!r}")
    try:
        size = group.size(_one(options.get("size")) or None)
    except ValueError as e:
        raise OptionsError(str(e)) from None
    raw_gpus = _one(options.get("gpus"))
    if raw_gpus in (None, ""):
        gpus = 1 if group.has_gpus else 0
    else:
        try:
            gpus = int(str(raw_gpus))
        except ValueError:
            raise OptionsError(f"gpus must be a whole number, not {raw_gpus!r}") from None
    try:
        group.check_gpus(gpus)
    except ValueError as e:
        raise OptionsError(str(e)) from None
    return SpawnChoice(group, size, gpus)
