"""The admin service's one service layer: what the admin pages, their JSON API
and the external trigger API do, over the hub's Kubernetes client
(spawner/k8s.py, the hub's ServiceAccount) and the JupyterHub API.

Everything that changes something is checked first (4xx with a one-line
message, nothing half-done) and written to the audit log.
"""
from __future__ import annotations

import asyncio
import os
import re
from types import SimpleNamespace
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from tornado import web
from traitlets.config import Config

from kubelab.core import labels as L
from kubelab.core import workloads as W
from kubelab.core.names import is_dns_label, safe_slug
from kubelab.core.s3layout import user_prefix
from kubelab.spawner import approvals
from kubelab.spawner.k8s import Kube, api_message
from kubelab.spawner.s3broker import S3ConfigError

from . import admin_views as V
from .audit import AuditLog
from .hubapi import AsyncHubAPI, HubAPIError

TRIGGER = "external"
TRIGGERED_BY_ANNOTATION = f"{L.GROUP}/triggered-by"
_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_STATUS = re.compile(r"^[A-Za-z]{0,20}$")


class AdminError(Exception):
    """A request the service refuses; ``message`` is one line, meant for the caller."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def kube_error(e: ApiException, what: str) -> AdminError:
    msg = api_message(e)
    if e.status == 404:
        return AdminError(404, f"{what}: not found")
    if e.status == 403 and "exceeded quota" in msg:
        return AdminError(409, f"{what}: {msg}")
    if e.status in (403, 401):
        return AdminError(502, f"{what}: the hub's ServiceAccount may not do this: {msg}")
    if e.status in (400, 409, 422):
        return AdminError(409, f"{what}: {msg}")
    return AdminError(502, f"{what}: Kubernetes API error {e.status}: {msg}")


def check_username(name: str) -> str:
    if not name or len(name) > 255 or any(ord(c) < 32 or c in "/\\" for c in name):
        raise AdminError(400, f"invalid user name {name[:80]!r}")
    return name


class AdminService:
    def __init__(self, config: Config, hub: AsyncHubAPI, audit: AuditLog, events_limit: int = 200,
                 max_idempotency_key_length: int = 200, storage_max_objects: int = 1_000_000):
        self.config = config
        self.hub = hub
        self.audit = audit
        self.events_limit = events_limit
        self.max_key = max_idempotency_key_length
        self.storage_max_objects = storage_max_objects
        # A spawner configured exactly like the hub's (KubelabSpawner's options), for
        # its resource groups, hub namespace, Kubernetes client and namespace setup.
        self.template = self.spawner_for("kubelab-admin", [])
        self.kube: Kube = self.template.kube
        self.groups = self.template.groups
        self.hub_namespace = self.template.hub_namespace

    def spawner_for(self, username: str, groups: list[str]):
        """KubelabSpawner for ``username`` as the hub configures it (never started)."""
        from kubelab.spawner import KubelabSpawner

        user = SimpleNamespace(name=username, id=0, url=f"/user/{username}/", escaped_name=username,
                               groups=[SimpleNamespace(name=g) for g in groups])
        return KubelabSpawner(config=self.config, user=user, _mock=True)

    async def _call(self, what: str, coro):
        try:
            return await coro
        except ApiException as e:
            raise kube_error(e, what) from None
        except HubAPIError as e:
            raise AdminError(502, str(e)) from None

    async def _user_namespace(self, user: str) -> dict | None:
        candidates = [safe_slug(user)] + ([user] if is_dns_label(user) and user != safe_slug(user) else [])
        for slug in candidates:
            found = await self._call("namespaces", self.kube.list(
                "v1", "Namespace", labelSelector=f"{L.USER}={slug},{L.USER_NAMESPACE}=true"))
            if found:
                return found[0]
        return None

    async def _ns_users(self) -> dict[str, str]:
        nss = await self._call("namespaces", self.kube.list("v1", "Namespace",
                                                            labelSelector=f"{L.USER_NAMESPACE}=true"))
        return {n["metadata"]["name"]: V.namespace_user(n) for n in nss}

    # -- users & namespaces ----------------------------------------------------------------------------
    async def overview(self) -> dict:
        users, namespaces, quotas, cronjobs, jobs, deployments = await self._call("overview", asyncio.gather(
            self.hub.users(),
            self.kube.list("v1", "Namespace", labelSelector=f"{L.USER_NAMESPACE}=true"),
            self.kube.list("v1", "ResourceQuota", labelSelector=f"{L.COMPONENT}=quota"),
            self.kube.list("batch/v1", "CronJob", labelSelector=W.SCHEDULE_LABEL),
            self.kube.list("batch/v1", "Job", labelSelector=L.USER),
            self.kube.list("apps/v1", "Deployment", labelSelector=f"{L.COMPONENT}=inference-service"),
        ))
        rows = V.user_rows(users, namespaces, quotas, cronjobs, jobs, deployments)
        return {"users": rows,
                "totals": {"users": sum(1 for r in rows if r["hub_user"]), "namespaces": len(namespaces),
                           "servers": sum(r["counts"]["servers"] for r in rows),
                           "jobs_running": sum(r["counts"]["jobs_running"] for r in rows),
                           "schedules": len(cronjobs), "services": len(deployments)},
                "storage": "measured per user on request: GET api/users/<user>/storage (one S3 listing of "
                           "users/<user>/, too slow to repeat for every user on every page view)"}

    async def storage(self, user: str) -> dict:
        check_username(user)
        if await self._call("hub user", self.hub.user(user)) is None:
            raise AdminError(404, f"no hub user {user!r}")
        broker = self.template.broker()
        try:
            creds = await broker.assume(user, 900)
        except S3ConfigError as e:
            raise AdminError(409, f"storage not measured: {e}") from None
        prefix = user_prefix(user)
        try:
            total, count, truncated = await asyncio.to_thread(self._sum_prefix, creds, broker.bucket, prefix)
        except Exception as e:  # noqa: BLE001 - boto errors become one line
            raise AdminError(502, f"storage not measured: S3 listing of {prefix} failed: {e}") from None
        return {"user": user, "prefix": f"s3://{broker.bucket}/{prefix}", "bytes": total, "objects": count,
                "truncated": truncated}

    def _sum_prefix(self, creds: dict, bucket: str, prefix: str) -> tuple[int, int, bool]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                          aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"], region_name="us-east-1")
        total = count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                total += obj["Size"]
                count += 1
            if count >= self.storage_max_objects:
                return total, count, True
        return total, count, False

    async def reconcile(self, actor: str, user: str) -> dict:
        """Create or repair the user's namespace with the spawner's own setup code."""
        check_username(user)
        hub_user = await self._call("hub user", self.hub.user(user))
        if hub_user is None:
            raise AdminError(404, f"no hub user {user!r}")
        sp = self.spawner_for(user, list(hub_user.get("groups") or []))
        try:
            await sp._ensure_namespace()
        except web.HTTPError as e:
            self.audit.record(actor, "reconcile", f"user:{user}", result="failed", error=e.log_message)
            raise AdminError(409 if e.status_code == 409 else 502, e.log_message or str(e)) from None
        kinds = [o["kind"] for o in sp.namespace_manifests(None)] + ["Secret"]  # + the renewed S3 credentials
        self.audit.record(actor, "reconcile", f"user:{user}", namespace=sp.namespace)
        return {"user": user, "namespace": sp.namespace, "applied": kinds}

    async def delete_namespace(self, actor: str, user: str, confirm: Any) -> dict:
        check_username(user)
        ns = await self._user_namespace(user)
        if ns is None:
            raise AdminError(404, f"user {user!r} has no namespace")
        name = ns["metadata"]["name"]
        if confirm != name:
            raise AdminError(400, f"to delete namespace {name}, send {{\"confirm\": \"{name}\"}}")
        hub_user = await self._call("hub user", self.hub.user(user))
        if hub_user and any(s.get("ready") or s.get("pending") for s in (hub_user.get("servers") or {}).values()):
            raise AdminError(409, f"{user}'s server is running in {name}; stop it first")
        await self._call(f"namespace {name}", self.kube.delete("v1", "Namespace", name))
        self.audit.record(actor, "namespace.delete", f"namespace:{name}", user=user)
        return {"user": user, "namespace": name, "status": "Terminating"}

    # -- resource groups and capacity ---------------------------------------------------------------------
    async def _nodes_pods(self) -> tuple[list[dict], list[dict]]:
        return await self._call("nodes and pods", asyncio.gather(
            self.kube.list("v1", "Node"),
            self.kube.list("v1", "Pod", fieldSelector="status.phase!=Succeeded,status.phase!=Failed")))

    async def resource_groups(self) -> dict:
        (nodes, pods), ns_users = await asyncio.gather(self._nodes_pods(), self._ns_users())
        return {"groups": [V.group_view(g, nodes, pods, ns_users) for g in self.groups]}

    async def capacity(self) -> dict:
        nodes, pods = await self._nodes_pods()
        return V.capacity_summary([V.group_view(g, nodes, pods, {}) for g in self.groups])

    # -- approvals ----------------------------------------------------------------------------------------
    async def approvals(self) -> dict:
        cms = await self._call("approvals", self.kube.list(
            "v1", "ConfigMap", self.hub_namespace, labelSelector=f"{L.COMPONENT}={approvals.COMPONENT}"))
        return {"approvals": V.approval_rows(cms),
                "groups": [g.name for g in self.groups if g.requires_approval]}

    async def decide(self, actor: str, user: str, group: str, decision: Any, reason: Any) -> dict:
        check_username(user)
        if decision not in ("approve", "deny"):
            raise AdminError(400, "decision must be 'approve' or 'deny'")
        reason = reason or ""
        if not isinstance(reason, str) or len(reason) > 500 or "\n" in reason or "\r" in reason:
            raise AdminError(400, "reason must be one line of at most 500 characters")
        if decision == "deny" and not reason.strip():
            raise AdminError(400, "a denial needs a reason (the user sees it when they try to start)")
        if group not in {g.name for g in self.groups if g.requires_approval}:
            raise AdminError(404, f"no resource group {group!r} that requires approval")
        name = approvals.request_name(user, group)
        cm = await self._call("approval", self.kube.get("v1", "ConfigMap", name, self.hub_namespace))
        if cm is None or (cm.get("data") or {}).get("user") != user:
            raise AdminError(404, f"{user!r} has not asked to use {group!r}")
        d = await self._call("approval", approvals.decide(self.kube, self.hub_namespace, user, group,
                                                          decision == "approve", reason.strip(), actor))
        self.audit.record(actor, f"approval.{decision}", f"user:{user}", group=group, reason=reason.strip())
        return {"user": d.user, "group": d.group, "status": d.status, "reason": d.reason, "decided_by": actor}

    # -- workloads ----------------------------------------------------------------------------------------
    async def workloads(self, user: str = "", kind: str = "", status: str = "") -> dict:
        if kind and kind not in V.WORKLOAD_KINDS:
            raise AdminError(400, f"kind must be one of {', '.join(V.WORKLOAD_KINDS)}")
        if not _STATUS.match(status or ""):
            raise AdminError(400, "status must be a word such as Running")
        if user:
            check_username(user)
        cronjobs, jobs, deployments, pods, ns_users = await self._call("workloads", asyncio.gather(
            self.kube.list("batch/v1", "CronJob", labelSelector=W.SCHEDULE_LABEL),
            self.kube.list("batch/v1", "Job", labelSelector=L.USER),
            self.kube.list("apps/v1", "Deployment", labelSelector=f"{L.COMPONENT}=inference-service"),
            self.kube.list("v1", "Pod", labelSelector=W.JOB_NAME_LABEL),
            self._ns_users()))
        rows = V.workload_rows(cronjobs, jobs, deployments, pods, ns_users)
        return {"workloads": V.filter_workloads(rows, user, kind, status), "total": len(rows)}

    async def stop_job(self, actor: str, namespace: str, name: str) -> dict:
        if not is_dns_label(namespace) or not is_dns_label(name):
            raise AdminError(400, "namespace and job name must be DNS labels")
        ns = await self._call("namespace", self.kube.get("v1", "Namespace", namespace))
        if ns is None or ns["metadata"].get("labels", {}).get(L.USER_NAMESPACE) != "true":
            raise AdminError(404, f"no user namespace {namespace!r}")
        job = await self._call(f"job {name}", self.kube.get("batch/v1", "Job", name, namespace))
        if job is None or L.USER not in job["metadata"].get("labels", {}):
            raise AdminError(404, f"no kubelab job {name!r} in {namespace}")
        st = W.job_status(job)
        if st["status"] in ("Succeeded", "Failed"):
            raise AdminError(409, f"job {name} has already finished ({st['status']})")
        await self._call(f"job {name}", self.kube.patch("batch/v1", "Job", name, W.cancel_patch(actor),
                                                        namespace))
        self.audit.record(actor, "job.stop", f"job:{namespace}/{name}",
                          user=job["metadata"]["labels"].get(L.USER, ""))
        return {"namespace": namespace, "name": name, "status": "Cancelled"}

    # -- events and audit -----------------------------------------------------------------------------------
    async def events(self) -> dict:
        events, ns_users = await asyncio.gather(
            self._call("events", self.kube.list("v1", "Event", fieldSelector="type=Warning")), self._ns_users())
        return {"events": V.event_rows(events, ns_users, self.events_limit)}

    def audit_entries(self, limit: int = 200, action: str | None = None) -> dict:
        return {"entries": self.audit.tail(limit, action), "path": str(self.audit.path)}

    # -- external trigger ----------------------------------------------------------------------------------
    def check_key(self, key: str | None) -> str:
        if not key:
            raise AdminError(400, "the Idempotency-Key header is required (any unique string per intended run)")
        if len(key) > self.max_key or not _KEY.match(key):
            raise AdminError(400, f"Idempotency-Key must be 1 to {self.max_key} printable ASCII characters "
                                  "without spaces")
        return key

    async def _schedule(self, user: str, schedule: str) -> tuple[str, dict]:
        check_username(user)
        try:
            W.check_name(schedule, "schedule", W.MAX_SCHEDULE_NAME)
        except W.WorkloadError as e:
            raise AdminError(400, str(e)) from None
        ns = await self._user_namespace(user)
        cj = None
        if ns is not None:
            cj = await self._call(f"schedule {schedule}", self.kube.get("batch/v1", "CronJob", schedule,
                                                                         ns["metadata"]["name"]))
        if cj is None or cj["metadata"].get("labels", {}).get(W.SCHEDULE_LABEL) != schedule:
            raise AdminError(404, f"user {user!r} has no schedule {schedule!r}")
        return ns["metadata"]["name"], cj

    async def trigger(self, caller: str, user: str, schedule: str, key: str | None,
                      parameters: Any) -> tuple[int, dict]:
        """Start one run of the schedule per idempotency key: (201, run) the first
        time, (200, the same run) for a repeated key."""
        key = self.check_key(key)
        ns, cj = await self._schedule(user, schedule)
        run = W.triggered_run_name(schedule, key)
        digest = W.parameters_digest(parameters)
        try:
            job = W.run_job_from_cronjob(cj, run, TRIGGER, parameters, {
                W.IDEMPOTENCY_ANNOTATION: key, W.PARAMETERS_SHA_ANNOTATION: digest,
                TRIGGERED_BY_ANNOTATION: caller})
        except W.WorkloadError as e:
            raise AdminError(400, str(e)) from None
        try:
            created = await self.kube.create(job)
        except ApiException as e:
            if e.status != 409:
                err = kube_error(e, f"run of {schedule}")
                self.audit.record(caller, "trigger", f"schedule:{user}/{schedule}", result="failed",
                                  error=err.message, idempotency_key=key)
                raise err from None
            existing = await self._call(f"run {run}", self.kube.get("batch/v1", "Job", run, ns))
            ann = (existing or {}).get("metadata", {}).get("annotations", {})
            if existing is None or ann.get(W.IDEMPOTENCY_ANNOTATION) != key:
                raise AdminError(409, f"run {run} exists but was not started with this Idempotency-Key") from None
            if ann.get(W.PARAMETERS_SHA_ANNOTATION) != digest:
                raise AdminError(409, "this Idempotency-Key was already used with different parameters") from None
            self.audit.record(caller, "trigger", f"schedule:{user}/{schedule}", result="replayed", run=run,
                              idempotency_key=key)
            return 200, self._run_view(user, schedule, existing, [])
        self.audit.record(caller, "trigger", f"schedule:{user}/{schedule}", run=run, idempotency_key=key,
                          parameters=parameters or {})
        return 201, self._run_view(user, schedule, created, [])

    def _run_view(self, user: str, schedule: str, job: dict, pods: list[dict]) -> dict:
        view = W.run_view(job, pods)
        ann = job["metadata"].get("annotations", {})
        view.update(run=job["metadata"]["name"], user=user, namespace=job["metadata"]["namespace"],
                    parameters=W.run_parameters(job), idempotency_key=ann.get(W.IDEMPOTENCY_ANNOTATION),
                    triggered_by=ann.get(TRIGGERED_BY_ANNOTATION))
        return view

    async def run_status(self, user: str, schedule: str, run: str) -> dict:
        ns, _ = await self._schedule(user, schedule)
        job = None
        if is_dns_label(run):
            job = await self._call(f"run {run}", self.kube.get("batch/v1", "Job", run, ns))
        if job is None or job["metadata"].get("labels", {}).get(W.SCHEDULE_LABEL) != schedule:
            raise AdminError(404, f"run {run!r} of schedule {schedule!r} not found")
        pods = await self._call("pods", self.kube.list("v1", "Pod", ns, labelSelector=f"{W.JOB_NAME_LABEL}={run}"))
        return self._run_view(user, schedule, job, pods)
