"""kubelab.spawner: KubelabSpawner, KubeSpawner with a provisioned namespace per user (hub side)."""
from .spawner import KubelabSpawner

__all__ = ["KubelabSpawner"]
