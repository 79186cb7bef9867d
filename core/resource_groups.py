"""Resource groups: the machine classes a user can pick for a server or a job.

A platform engineer configures them as a list of dicts (traitlets on the hub
side, a ConfigMap on the user side); this module turns that list into checked
objects. Pure: no Kubernetes or Jupyter imports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .names import validate_dns_label

_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number (cpu in cores, memory in bytes).

    >>> parse_quantity("500m"), parse_quantity("2Gi")
    (0.5, 2147483648.0)
    """
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ValueError(f"invalid quantity {value!r}: use e.g. 500m, 2, 512Mi, 4Gi")
    return float(m.group(1)) * _SUFFIX[m.group(3) or ""]


@dataclass(frozen=True)
class Size:
    """One cpu/memory choice inside a resource group."""

    name: str
    cpu: str
    memory: str
    display_name: str = ""

    def __post_init__(self) -> None:
        validate_dns_label(self.name, "size name")
        parse_quantity(self.cpu)
        parse_quantity(self.memory)


@dataclass(frozen=True)
class ResourceGroup:
    name: str
    display_name: str = ""
    description: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    gpu_resource: str = "nvidia.com/gpu"
    gpu_type: str = ""
    max_gpus: int = 0
    sizes: tuple[Size, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    requires_approval: bool = False
    idle_timeout: int = 0  # seconds; 0 = use the hub's default

    def __post_init__(self) -> None:
        validate_dns_label(self.name, "resource group name")
        if self.max_gpus < 0:
            raise ValueError(f"resource group {self.name}: max_gpus must be >= 0")
        if not self.sizes:
            raise ValueError(f"resource group {self.name}: needs at least one size")
        names = [s.name for s in self.sizes]
        if len(set(names)) != len(names):
            raise ValueError(f"resource group {self.name}: duplicate size names {names}")

    @property
    def has_gpus(self) -> bool:
        return self.max_gpus > 0

    def allows(self, user_groups: Iterable[str]) -> bool:
        """May a user in ``user_groups`` (hub group names) use this group?"""
        return not self.allowed_groups or bool(set(self.allowed_groups) & set(user_groups))

    def size(self, name: str | None) -> Size:
        if name is None:
            return self.sizes[0]
        for s in self.sizes:
            if s.name == name:
                return s
        raise ValueError(f"resource group {self.name} has no size {name!r}; choose one of "
                         + ", ".join(s.name for s in self.sizes))

    def check_gpus(self, gpus: int) -> int:
        if gpus < 0 or gpus > self.max_gpus:
            raise ValueError(f"resource group {self.name} allows 0 to {self.max_gpus} GPUs, not {gpus}")
        return gpus

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "display_name": self.display_name or self.name, "description": self.description,
            "node_selector": dict(self.node_selector), "tolerations": [dict(t) for t in self.tolerations],
            "gpu_resource": self.gpu_resource, "gpu_type": self.gpu_type, "max_gpus": self.max_gpus,
            "sizes": [{"name": s.name, "display_name": s.display_name or s.name, "cpu": s.cpu, "memory": s.memory}
                      for s in self.sizes],
            "allowed_groups": list(self.allowed_groups), "requires_approval": self.requires_approval,
            "idle_timeout": self.idle_timeout,
        }


def from_dict(d: dict[str, Any]) -> ResourceGroup:
    """Build a ResourceGroup from its configuration dict (keys as in to_dict)."""
    known = set(ResourceGroup.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"resource group {d.get('name', '?')}: unknown keys {sorted(unknown)}")
    kw = dict(d)
    kw["sizes"] = tuple(Size(**s) for s in d.get("sizes", ()))
    kw["tolerations"] = tuple(d.get("tolerations", ()))
    kw["allowed_groups"] = tuple(d.get("allowed_groups", ()))
    kw["node_selector"] = dict(d.get("node_selector", {}))
    return ResourceGroup(**kw)


def parse(groups: Iterable[dict[str, Any]]) -> list[ResourceGroup]:
    """Check a configured list: valid entries, unique names."""
    out = [from_dict(g) for g in groups]
    names = [g.name for g in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate resource group names: {dupes}")
    return out


def find(groups: Iterable[ResourceGroup], name: str) -> ResourceGroup:
    for g in groups:
        if g.name == name:
            return g
    raise KeyError(f"no resource group {name!r}")


# The default list matches devcluster's nodes; real clusters configure their own.
DEFAULT_GROUPS: list[dict[str, Any]] = [
    {
        "name": "cpu",
        "display_name": "CPU",
        "description": "General-purpose CPU server",
        "node_selector": {"kubelab.io/resource-group": "cpu"},
        "sizes": [
            {"name": "small", "display_name": "Small (1 CPU, 2 GiB)", "cpu": "1", "memory": "2Gi"},
            {"name": "medium", "display_name": "Medium (2 CPU, 4 GiB)", "cpu": "2", "memory": "4Gi"},
        ],
        "idle_timeout": 8 * 3600,
    },
    {
        "name": "gpu-a100",
        "display_name": "NVIDIA A100",
        "description": "A100 GPUs for training and inference",
        "node_selector": {"kubelab.io/resource-group": "gpu-a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "gpu_resource": "nvidia.com/gpu",
        "gpu_type": "NVIDIA-A100-SXM4-40GB",
        "max_gpus": 2,
        "sizes": [{"name": "standard", "display_name": "4 CPU, 8 GiB", "cpu": "4", "memory": "8Gi"}],
        "idle_timeout": 30 * 60,
    },
]
