"""devcluster's node agent: a Python kubelet that runs pods as local processes.

``python -m devcluster.agent --state-dir DIR --nodes nodes.yaml --images images.yaml``
serves every node of nodes.yaml (each with its own identity, kubelet port and
pod CIDR); ``python -m devcluster.agent cleanup --state-dir DIR`` or
``cleanup(state)`` removes everything it left on the machine.

Modules:

- ``agent``      the process: one NodeAgent per node (registration, pod watch, workers, endpoint)
- ``node``       the Node object, its Lease and Ready heartbeat
- ``pods``       one worker per pod: sandbox, volumes, containers, probes, status, deletion
- ``containers`` container runs under shims, observed from their files (adoption after restart)
- ``shim``       the standalone per-container process (namespaces, mounts, logs, exit record)
- ``network``    bridge, netns + veth per pod, pod IP allocation
- ``volumes``    volume contents on the host and each container's bind mounts; node-local host paths
- ``mounts``     host mounts for mountPropagation (shared binds), unmounting for teardown and cleanup
- ``envvars``    env/envFrom/valueFrom and $(VAR) expansion
- ``etcfiles``   per-pod resolv.conf, hosts, hostname
- ``cgroups``    cgroup v1 memory/cpu/pids per container
- ``gpu``        exclusive GPU indices per pod
- ``probes``     liveness/readiness/startup probes and lifecycle hooks
- ``status``     pod phase, conditions and container statuses
- ``logs`` / ``server``  CRI log files and the kubelet HTTPS endpoint (/containerLogs, /healthz)
- ``events``     Events as component kubelet
- ``store``      what is persisted under ``<state>/agent``
- ``cleanup``    ``make cluster-down``'s part: no process, mount, netns, veth or cgroup left
"""
from __future__ import annotations

from ..paths import State


def cleanup(state: State) -> None:
    """Kill all pod processes, delete netns/veths/cgroups and created mount points."""
    from .cleanup import cleanup as _cleanup  # lazily: keeps ``import devcluster.agent`` light

    _cleanup(state)


__all__ = ["cleanup"]
