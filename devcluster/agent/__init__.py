"""devcluster's node agent: a Python kubelet that runs pods as local processes.

``python -m devcluster.agent --state-dir DIR --nodes nodes.yaml --images images.yaml``
serves every node of nodes.yaml; ``cleanup(state)`` removes all it left behind.
"""
from __future__ import annotations

from ..paths import State


def cleanup(state: State) -> None:
    """Kill all pod processes, delete netns/veths/cgroups and created mount points."""
    from .cleanup import cleanup as _cleanup  # lazily: keeps ``import devcluster.agent`` light

    _cleanup(state)


__all__ = ["cleanup"]
