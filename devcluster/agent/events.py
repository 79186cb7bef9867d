"""Kubernetes Events about pods, sent in the background like the kubelet's recorder."""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any

from ..kube import ApiError, Client

log = logging.getLogger(__name__)

AGGREGATE_SECONDS = 600


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EventRecorder:
    """Emits core/v1 Events as component ``kubelet`` of host ``node``.

    Repeats of the same event (same pod, field, reason, message) within ten
    minutes bump its count instead of creating a new object.
    """

    def __init__(self, client: Client, node: str):
        self.client = client
        self.node = node
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, str, str | None]] = queue.Queue(maxsize=1000)
        self._seen: dict[tuple[str, str | None, str, str], tuple[str, int, float]] = {}
        threading.Thread(target=self._run, name=f"events-{node}", daemon=True).start()

    def emit(self, pod: dict[str, Any], type_: str, reason: str, message: str,
             field_path: str | None = None) -> None:
        """Queue an event about ``pod`` (type Normal or Warning); never blocks or raises."""
        try:
            self._queue.put_nowait((pod, type_, reason, message, field_path))
        except queue.Full:
            log.warning("event queue full; dropped %s %s", reason, message)

    def _run(self) -> None:
        while True:
            pod, type_, reason, message, field_path = self._queue.get()
            try:
                self._send(pod, type_, reason, message, field_path)
            except Exception as e:  # events are best effort
                log.debug("event %s for %s not sent: %s", reason, pod["metadata"].get("name"), e)

    def _send(self, pod: dict[str, Any], type_: str, reason: str, message: str, field_path: str | None) -> None:
        meta = pod["metadata"]
        ns = meta["namespace"]
        key = (meta["uid"], field_path, reason, message)
        now = _now()
        seen = self._seen.get(key)
        if seen and time.monotonic() - seen[2] < AGGREGATE_SECONDS:
            name, count, _ = seen
            try:
                self.client.patch(self.client.path("v1", "events", ns, name),
                                  {"count": count + 1, "lastTimestamp": now})
                self._seen[key] = (name, count + 1, time.monotonic())
                return
            except ApiError as e:
                if e.status != 404:
                    raise
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": meta["name"],
                    "uid": meta["uid"], "resourceVersion": meta.get("resourceVersion")}
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason, "message": message, "type": type_,
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet", "reportingInstance": self.node,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": None,
        }
        self.client.create(self.client.path("v1", "events", ns), body)
        self._seen[key] = (name, 1, time.monotonic())
        if len(self._seen) > 5000:
            cutoff = time.monotonic() - AGGREGATE_SECONDS
            self._seen = {k: v for k, v in self._seen.items() if v[2] >= cutoff}

