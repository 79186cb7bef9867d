"""What every pod worker of one node shares."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..kube import Client
from .apiobjects import ApiObjects
from .cgroups import Cgroups
from .config import ImageCatalog, NodeConfig
from .containers import ContainerRuntime
from .events import EventRecorder
from .gpu import GpuAllocator
from .mounts import SharedMounts
from .network import IpAllocator
from .store import HostPathRegistry, NodeStore
from .volumes import NodeLocalPaths


@dataclass
class NodeContext:
    """One node's identity, stores and allocators (``alloc_lock`` guards the allocators)."""

    config: NodeConfig
    client: Client
    objects: ApiObjects
    store: NodeStore
    runtime: ContainerRuntime
    cgroups: Cgroups
    images: ImageCatalog
    events: EventRecorder
    host_paths: HostPathRegistry
    ips: IpAllocator
    gpus: GpuAllocator
    local_paths: NodeLocalPaths
    shared_mounts: SharedMounts
    alloc_lock: threading.Lock = field(default_factory=threading.Lock)
