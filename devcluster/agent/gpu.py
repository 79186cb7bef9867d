"""Exclusive GPU device indices per pod."""
from __future__ import annotations

from typing import Any

from .quantity import container_resource

GPU_RESOURCE = "nvidia.com/gpu"


class GpuUnavailable(Exception):
    """The node has fewer free GPUs than the pod requests."""


def gpu_request(pod: dict[str, Any]) -> int:
    """GPUs the pod needs: the larger of the app containers' sum and any init container's."""
    spec = pod.get("spec") or {}

    def count(c: dict[str, Any]) -> int:
        value = container_resource(c, "limits", GPU_RESOURCE)
        if value is None:
            value = container_resource(c, "requests", GPU_RESOURCE)
        return int(value or 0)

    app = sum(count(c) for c in spec.get("containers") or [])
    init = max((count(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


def visible_devices_env(indices: list[int]) -> dict[str, str]:
    """The variables a GPU device plugin sets for the allocated devices."""
    if not indices:
        return {}
    value = ",".join(str(i) for i in indices)
    return {"NVIDIA_VISIBLE_DEVICES": value, "CUDA_VISIBLE_DEVICES": value}


class GpuAllocator:
    """The GPU indices of one node and which pod holds each.

    Allocations live in the pod records; the allocator is rebuilt from them.
    """

    def __init__(self, count: int, held: dict[str, list[int]] | None = None):
        self.count = count
        self._by_uid: dict[str, list[int]] = {u: list(ix) for u, ix in (held or {}).items() if ix}

    def free(self) -> list[int]:
        used = {i for ix in self._by_uid.values() for i in ix}
        return [i for i in range(self.count) if i not in used]

    def allocate(self, uid: str, n: int) -> list[int]:
        """``n`` indices for ``uid`` (its existing ones if it already holds them)."""
        if n <= 0:
            return []
        if uid in self._by_uid:
            return self._by_uid[uid]
        free = self.free()
        if len(free) < n:
            raise GpuUnavailable(
                f"Allocate failed due to requested number of devices unavailable for {GPU_RESOURCE}. "
                f"Requested: {n}, Available: {len(free)}")
        self._by_uid[uid] = free[:n]
        return free[:n]

    def release(self, uid: str) -> None:
        self._by_uid.pop(uid, None)
