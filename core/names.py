"""Kubernetes-safe names derived from JupyterHub user names.

Distinct users never map to the same name: a name that is already a valid
DNS-1123 label (and has no ``--``) is kept as it is; any other name is reduced
to its safe characters and gets ``---`` plus a hash of the original, and no
kept name can contain ``---``.
"""
from __future__ import annotations

import hashlib
import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_LABEL = 63


def is_dns_label(name: str, max_len: int = MAX_LABEL) -> bool:
    """True if ``name`` is a DNS-1123 label of at most ``max_len`` characters."""
    return 0 < len(name) <= max_len and bool(DNS1123_LABEL.match(name))


def validate_dns_label(name: str, what: str = "name", max_len: int = MAX_LABEL) -> str:
    """Return ``name`` or raise ValueError with a one-line message a user can act on."""
    if not is_dns_label(name, max_len):
        raise ValueError(
            f"invalid {what} {name!r}: use at most {max_len} lower-case letters, digits and '-', "
            "starting and ending with a letter or digit")
    return name


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def safe_slug(name: str, max_len: int = MAX_LABEL) -> str:
    """A DNS-1123 label for ``name``, unique per distinct ``name``.

    >>> safe_slug("alice")
    'alice'
    >>> safe_slug("Alice@Example.org")
    'alice-example-org---cfd44c4f'
    """
    if is_dns_label(name, max_len) and "--" not in name:
        return name
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    suffix = "---" + _hash(name)
    slug = slug[: max_len - len(suffix)].strip("-")
    return (slug or "x") + suffix


def render(template: str, max_len: int = MAX_LABEL, **fields: str) -> str:
    """Fill ``template`` (e.g. ``kubelab-{username}``) with slugged fields.

    The result is checked; a template that cannot give a valid name raises
    ValueError (a configuration mistake, caught at startup).
    """
    slugged = {k: safe_slug(v, max_len) for k, v in fields.items()}
    name = template.format(**slugged)
    if not is_dns_label(name, max_len):
        # Long user names: keep the result unique by hashing the whole thing.
        name = safe_slug(template.format(**fields), max_len)
    return name
