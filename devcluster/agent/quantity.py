"""Kubernetes resource quantities ("100m", "1Gi", "2e3") and container resource lookups."""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


def parse_quantity(value: str | int | float) -> Decimal:
    """The numeric value of a quantity; raises ValueError when malformed."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"invalid quantity {value!r}")
    number, suffix = m.groups()
    try:
        base = Decimal(number)
    except InvalidOperation as e:
        raise ValueError(f"invalid quantity {value!r}") from e
    if suffix[:1] in ("e", "E"):
        return base * (Decimal(10) ** int(suffix[1:]))
    return base * _SUFFIXES[suffix]


def container_resource(container: dict[str, Any], kind: str, resource: str) -> Decimal | None:
    """``resources.<kind>.<resource>`` of a container (requests default to limits)."""
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    return None if value is None else parse_quantity(value)


def resource_field_value(container: dict[str, Any], resource: str, divisor: str | None,
                         allocatable: dict[str, str]) -> str:
    """The value of a ``resourceFieldRef`` as the kubelet renders it.

    Unset limits fall back to the node's allocatable; the result is rounded up
    to whole divisors (a divisor of 0 or none means 1).
    """
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ValueError(f"unsupported resource {resource!r}")
    value = container_resource(container, kind, name)
    if value is None:
        value = parse_quantity(allocatable.get(name, "0")) if kind == "limits" else Decimal(0)
    div = parse_quantity(divisor) if divisor else Decimal(0)
    if div < 0:
        raise ValueError(f"invalid divisor {divisor!r}")
    if div == 0:  # the API defaults an unset divisor to "0", meaning 1
        div = Decimal(1)
    return str(math.ceil(value / div))
