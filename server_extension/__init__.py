"""kubelab.server_extension: the Jupyter Server extension (user-pod side).

REST API under ``{base_url}kubelab/api/`` (OpenAPI spec: ``openapi.yaml``),
over the service layer in ``kubelab.server_extension.services``, which the
``%kubelab`` magics use too.
"""
from __future__ import annotations


def _jupyter_server_extension_points() -> list[dict]:
    from .app import KubelabApp

    return [{"module": "kubelab.server_extension", "app": KubelabApp}]
