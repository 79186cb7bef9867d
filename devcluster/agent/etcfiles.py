"""The per-pod /etc/resolv.conf, /etc/hosts and /etc/hostname."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..paths import CLUSTER_DOMAIN, DNS_SERVICE_IP

HOSTS_HEADER = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def pod_hostname(pod: dict[str, Any]) -> str:
    """``spec.hostname`` or the pod name, cut to 63 characters like the kubelet."""
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or pod["metadata"]["name"]
    return name[:63].rstrip("-.")


def _parse_resolv(text: str) -> tuple[list[str], list[str], list[str]]:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver":
            servers += words[1:2]
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return servers, searches, options


def resolv_conf(pod: dict[str, Any], host_resolv: str) -> str:
    """resolv.conf for the pod's dnsPolicy and dnsConfig.

    ClusterFirst gives ``search <ns>.svc.cluster.local svc.cluster.local
    cluster.local`` / ``nameserver 10.96.0.10`` / ``options ndots:5``.
    """
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    ns = pod["metadata"]["namespace"]
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [DNS_SERVICE_IP]
        searches = [f"{ns}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN]
        options = ["ndots:5"]
    elif policy == "Default":
        servers, searches, options = _parse_resolv(host_resolv)
    else:  # None: dnsConfig alone
        servers, searches, options = [], [], []
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    searches += [s for s in cfg.get("searches") or [] if s not in searches]
    merged: dict[str, str | None] = {}
    for opt in options:
        name, _, value = opt.partition(":")
        merged[name] = value or None
    for opt in cfg.get("options") or []:
        merged[opt["name"]] = opt.get("value")
    lines = []
    if searches:
        lines.append("search " + " ".join(searches))
    lines += [f"nameserver {s}" for s in servers]
    if merged:
        lines.append("options " + " ".join(k if v is None else f"{k}:{v}" for k, v in merged.items()))
    return "\n".join(lines) + "\n"


def hosts_file(pod: dict[str, Any], pod_ip: str | None, host_hosts: str) -> str:
    """The pod's /etc/hosts: the host's for hostNetwork pods, else a managed one."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        text = host_hosts
    else:
        text = HOSTS_HEADER
        if pod_ip:
            hostname = pod_hostname(pod)
            if spec.get("subdomain"):
                fqdn = f"{hostname}.{spec['subdomain']}.{pod['metadata']['namespace']}.svc.{CLUSTER_DOMAIN}"
                text += f"{pod_ip}\t{fqdn}\t{hostname}\n"
            else:
                text += f"{pod_ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            text += f"{alias['ip']}\t" + "\t".join(alias.get("hostnames") or []) + "\n"
    return text


def write_etc_files(pod: dict[str, Any], pod_ip: str | None, etc_dir: Path) -> dict[str, str]:
    """Write the pod's etc files; returns {container path: host file} for bind mounting."""
    etc_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "/etc/resolv.conf": resolv_conf(pod, _read("/etc/resolv.conf")),
        "/etc/hosts": hosts_file(pod, pod_ip, _read("/etc/hosts")),
    }
    if not (pod.get("spec") or {}).get("hostNetwork"):
        files["/etc/hostname"] = pod_hostname(pod) + "\n"
    out: dict[str, str] = {}
    for target, content in files.items():
        path = etc_dir / Path(target).name
        path.write_text(content)
        path.chmod(0o644)
        out[target] = str(path)
    return out


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
