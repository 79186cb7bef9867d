"""Container environment as the kubelet builds it: envFrom, env with valueFrom,
$(VAR) expansion, and the downward API field values."""
from __future__ import annotations

import base64
import re
from typing import Any, Callable, Protocol

from ..paths import KUBERNETES_SERVICE_IP
from .quantity import resource_field_value

_C_IDENTIFIER = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


class ObjectSource(Protocol):
    """Reads the configMaps and secrets a pod refers to (None when absent)."""

    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` escapes, unknown references stay as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(f"$({name})" if value is None else value)
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def service_env() -> dict[str, str]:
    """The variables of the ``kubernetes`` Service every container gets."""
    host, port = KUBERNETES_SERVICE_IP, "443"
    url = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        "KUBERNETES_PORT_443_TCP": url,
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": port,
        "KUBERNETES_PORT_443_TCP_ADDR": host,
    }


def field_value(pod: dict[str, Any], path: str, pod_ip: str | None, host_ip: str) -> str:
    """A downward API ``fieldRef`` value."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = _FIELD_KEY.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "metadata.labels": format_map(meta.get("labels") or {}),
        "metadata.annotations": format_map(meta.get("annotations") or {}),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip or "",
        "status.podIPs": pod_ip or "",
    }
    if path not in simple:
        raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path])


def format_map(values: dict[str, str]) -> str:
    """Labels/annotations as the downward API writes them: ``key="value"`` lines, sorted."""
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    return "\n".join(f"{k}={quote(str(values[k]))}" for k in sorted(values))


def find_container(pod: dict[str, Any], name: str) -> dict[str, Any] | None:
    spec = pod.get("spec") or {}
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if c.get("name") == name:
            return c
    return None


def resource_ref_value(pod: dict[str, Any], container: dict[str, Any] | None, ref: dict[str, Any],
                       allocatable: dict[str, str]) -> str:
    """A ``resourceFieldRef`` value (``containerName`` picks another container)."""
    target = container
    if ref.get("containerName"):
        target = find_container(pod, ref["containerName"])
    if target is None:
        raise ContainerConfigError(f"resourceFieldRef: container {ref.get('containerName')!r} not found")
    try:
        return resource_field_value(target, str(ref.get("resource", "")), ref.get("divisor"), allocatable)
    except ValueError as e:
        raise ContainerConfigError(str(e)) from e


def decode_secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def resolve_env(pod: dict[str, Any], container: dict[str, Any], objects: ObjectSource,
                pod_ip: str | None, host_ip: str, allocatable: dict[str, str]) -> dict[str, str]:
    """The variables Kubernetes defines for ``container`` (envFrom, env, service variables).

    Raises ContainerConfigError with the kubelet's wording when a referenced
    configMap, secret or key is missing and not optional.
    """
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    defined: dict[str, str] = {}

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if "configMapRef" in src:
            ref = src["configMapRef"]
            obj = objects.configmap(ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'configmap "{ref["name"]}" not found')
            values = {k: str(v) for k, v in (obj.get("data") or {}).items()}
        elif "secretRef" in src:
            ref = src["secretRef"]
            obj = objects.secret(ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'secret "{ref["name"]}" not found')
            values = {k: v.decode("utf-8", "replace") for k, v in decode_secret_data(obj).items()}
        else:
            continue
        for k, v in values.items():
            if _C_IDENTIFIER.match(prefix + k):
                defined[prefix + k] = v

    services = service_env()

    def lookup(name: str) -> str | None:
        return defined.get(name, services.get(name))

    for var in container.get("env") or []:
        name = var["name"]
        if var.get("value"):
            defined[name] = expand(str(var["value"]), lookup)
            continue
        source = var.get("valueFrom")
        if not source:
            defined[name] = ""
            continue
        value = _value_from(pod, container, source, ns, objects, pod_ip, host_ip, allocatable)
        if value is not None:
            defined[name] = value

    return {**{k: v for k, v in services.items() if k not in defined}, **defined}


def _value_from(pod: dict[str, Any], container: dict[str, Any], source: dict[str, Any], ns: str,
                objects: ObjectSource, pod_ip: str | None, host_ip: str,
                allocatable: dict[str, str]) -> str | None:
    """One ``valueFrom``; None means "optional and absent: leave the variable out"."""
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
    if "resourceFieldRef" in source:
        return resource_ref_value(pod, container, source["resourceFieldRef"], allocatable)
    if "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        obj = objects.configmap(ns, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'configmap "{ref["name"]}" not found')
        data = obj.get("data") or {}
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref['name']}")
        return str(data[ref["key"]])
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        obj = objects.secret(ns, ref["name"])
        if obj is None:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f'secret "{ref["name"]}" not found')
        data = decode_secret_data(obj)
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ContainerConfigError(f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
        return data[ref["key"]].decode("utf-8", "replace")
    raise ContainerConfigError(f"unsupported valueFrom {sorted(source)}")


def expand_command(words: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) expansion of command/args against the container's final environment."""
    return [expand(str(w), env.get) for w in words]
