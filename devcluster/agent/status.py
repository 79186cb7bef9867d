"""Pod status as the kubelet computes it: container states, phase, conditions, QoS."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .containers import ExitInfo, RunState
from .logs import parse_rfc3339
from .quantity import container_resource

STATES = ("waiting", "running", "terminated")


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def to_seconds(ts: str | None) -> str | None:
    """An RFC3339Nano time cut to the seconds the API keeps."""
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(parse_rfc3339(ts))))


@dataclass(frozen=True)
class ContainerView:
    """Everything the status of one container is computed from."""

    name: str
    image: str
    image_id: str
    run: RunState | None
    previous_exit: ExitInfo | None
    waiting: tuple[str, str] | None
    ready: bool
    started: bool
    sidecar: bool = False

    @property
    def running(self) -> bool:
        """Started, as the kubelet says it: the process runs (its run.json has
        the start time). A shim still setting up namespaces is ContainerCreating,
        so ``startedAt`` is reported once and never changes afterwards."""
        return self.run is not None and self.run.running and self.run.started_at is not None

    @property
    def exited(self) -> ExitInfo | None:
        """The exit of the latest run, if it ended."""
        return self.run.exit if self.run is not None else None

    @property
    def last_termination(self) -> ExitInfo | None:
        """What lastState shows: the latest exit while waiting to restart, else the one before."""
        if self.run is not None and self.run.exit is not None and self.waiting is not None:
            return self.run.exit
        return self.previous_exit

    @property
    def terminated(self) -> ExitInfo | None:
        """The exit shown as the current state (when not waiting to restart)."""
        if self.running or self.waiting is not None:
            return None
        return self.exited


def _terminated(ex: ExitInfo, container_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"exitCode": ex.exit_code, "reason": ex.reason,
                           "startedAt": to_seconds(ex.started_at), "finishedAt": to_seconds(ex.finished_at)}
    if ex.message:
        out["message"] = ex.message
    if container_id:
        out["containerID"] = container_id
    return out


def _one_state(key: str | None, value: dict[str, Any] | None) -> dict[str, Any]:
    """A state with the other alternatives nulled, so a strategic merge patch drops them."""
    return {k: (value if k == key else None) for k in STATES}


def container_status(v: ContainerView) -> dict[str, Any]:
    """One entry of containerStatuses / initContainerStatuses."""
    cid = f"kubelab://{v.run.container_id}" if v.run is not None else None
    if v.running:
        assert v.run is not None
        state = _one_state("running", {"startedAt": to_seconds(v.run.started_at)})
    elif v.terminated is not None:
        state = _one_state("terminated", _terminated(v.terminated, cid))
    else:
        reason, message = v.waiting or ("ContainerCreating", "")
        waiting = {"reason": reason}
        if message:
            waiting["message"] = message
        state = _one_state("waiting", waiting)
    last = v.last_termination
    previous_id = None
    if last is not None and v.run is not None:
        previous_id = cid if last is v.run.exit else None
    last_state = _one_state("terminated", _terminated(last, previous_id)) if last else _one_state(None, None)
    out: dict[str, Any] = {
        "name": v.name,
        "image": v.image,
        "imageID": v.image_id,
        "containerID": cid,
        "ready": v.ready,
        "started": v.started,
        "restartCount": v.run.attempt if v.run is not None else 0,
        "state": state,
        "lastState": last_state,
    }
    return out


def init_complete(views: list[ContainerView]) -> bool:
    """All regular init containers exited 0 and all sidecars started."""
    for v in views:
        if v.sidecar:
            if not v.started:
                return False
        elif not (v.exited is not None and v.exited.exit_code == 0 and not v.running):
            return False
    return True


def pod_phase(restart_policy: str, init_views: list[ContainerView], app_views: list[ContainerView],
              initialized: bool, deleting: bool = False) -> str:
    """The kubelet's getPhase."""
    pending_init = failed_init = 0
    if not initialized:
        for v in init_views:
            if v.sidecar:
                if not v.started:
                    pending_init += 1
            elif v.running:
                pending_init += 1
            elif v.exited is not None:
                if v.exited.exit_code != 0:
                    failed_init += 1
                elif v.waiting is not None:
                    pending_init += 1
            else:
                pending_init += 1
    running = waiting = stopped = succeeded = 0
    for v in app_views:
        if v.running:
            running += 1
        elif v.terminated is not None:
            stopped += 1
            succeeded += v.terminated.exit_code == 0
        elif v.last_termination is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart_policy == "Never":
        return "Failed"
    if pending_init or failed_init:
        return "Pending"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if deleting:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(type_: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message,
            "lastProbeTime": None}


def pod_conditions(pod: dict[str, Any], phase: str, sandbox_ready: bool, initialized: bool,
                   init_views: list[ContainerView], app_views: list[ContainerView]) -> list[dict[str, Any]]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready (and PodScheduled if absent)."""
    conds = [_condition("PodReadyToStartContainers", sandbox_ready)]
    if initialized:
        conds.append(_condition("Initialized", True, "PodCompleted" if phase == "Succeeded" else None))
    else:
        pending = [v.name for v in init_views if not (v.exited and v.exited.exit_code == 0) and not v.started]
        conds.append(_condition("Initialized", False, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(pending)}]"))
    unready = [v.name for v in app_views if not v.ready]
    unready += [v.name for v in init_views if v.sidecar and not v.ready and v.running]
    if phase == "Succeeded":
        ready = _condition("ContainersReady", False, "PodCompleted")
    elif unready:
        ready = _condition("ContainersReady", False, "ContainersNotReady",
                           f"containers with unready status: [{' '.join(unready)}]")
    else:
        ready = _condition("ContainersReady", True)
    conds.append(ready)
    pod_ready = dict(ready, type="Ready")
    if ready["status"] == "True":
        existing = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        gates = [g["conditionType"] for g in (pod.get("spec") or {}).get("readinessGates") or []]
        missing = [g for g in gates if existing.get(g) != "True"]
        if missing:
            pod_ready = _condition("Ready", False, "ReadinessGatesNotReady",
                                   f"corresponding condition of pod readiness gate \"{missing[0]}\" does not exist.")
    conds.append(pod_ready)
    if not any(c.get("type") == "PodScheduled" for c in (pod.get("status") or {}).get("conditions") or []):
        conds.append(_condition("PodScheduled", True))
    return conds


def with_transition_times(conditions: list[dict[str, Any]], existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep lastTransitionTime of conditions whose status did not change."""
    old = {c.get("type"): c for c in existing or []}
    out = []
    for c in conditions:
        prev = old.get(c["type"])
        if prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            out.append(dict(c, lastTransitionTime=prev["lastTransitionTime"]))
        else:
            out.append(dict(c, lastTransitionTime=now_rfc3339()))
    return out


def qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort."""
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        for res in ("cpu", "memory"):
            req = container_resource(c, "requests", res)
            lim = container_resource(c, "limits", res)
            any_set = any_set or req is not None or lim is not None
            if lim is None or req != lim:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
