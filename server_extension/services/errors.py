"""Errors the service layer raises; the REST handlers and magics show them as they are."""
from __future__ import annotations

from ..kube import KubeError


class ServiceError(Exception):
    code = 500

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(ServiceError):
    code = 400


class Forbidden(ServiceError):
    code = 403


class NotFound(ServiceError):
    code = 404


class Conflict(ServiceError):
    code = 409


class Unavailable(ServiceError):
    code = 503


def from_kube(e: KubeError, what: str = "") -> ServiceError:
    """The apiserver's answer as a user-facing error (its own message, our status)."""
    prefix = f"{what}: " if what else ""
    if e.status in (400, 422):
        return BadRequest(prefix + e.message)
    if e.status == 403:
        return Forbidden(prefix + e.message)
    if e.status == 404:
        return NotFound(prefix + e.message)
    if e.status == 409:
        return Conflict(prefix + e.message)
    if e.status == 503:
        return Unavailable(prefix + e.message)
    return ServiceError(f"{prefix}the Kubernetes API answered {e.status}: {e.message}", 502)
