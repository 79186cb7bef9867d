"""KubelabSpawner: KubeSpawner with a provisioned namespace per user.

Per user: a namespace (ResourceQuota, LimitRange, ServiceAccount + Role +
RoleBinding, NetworkPolicy, scoped S3 credentials), home and datasets as
subPaths of the node-level s3fs mount, and a resource group picked from the
configured list and re-validated on the server.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import os
from typing import Any

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Bool, Dict, Int, List, TraitError, Unicode, default, validate

from kubelab.core import labels as L
from kubelab.core import manifests, names
from kubelab.core import resource_groups as rg
from kubelab.core.s3layout import CREDENTIALS_DIR, CREDENTIALS_DIR_ENV, DATASETS_PREFIX, user_prefix
from kubelab.core.settings import ENV_VAR as SETTINGS_ENV
from kubelab.core.settings import WorkspaceSettings
from kubelab.core.workloads import RUNTIME_DIR
from kubelab.core.spawn_options import ForbiddenGroup, OptionsError, SpawnChoice, resolve

from . import approvals, capacity
from .k8s import Kube, api_message
from .s3broker import Broker, S3ConfigError


class KubelabSpawner(KubeSpawner):
    """Spawn each user's server in their own, fully provisioned namespace."""

    # -- KubeSpawner defaults we change ------------------------------------------
    @default("enable_user_namespaces")
    def _default_enable_user_namespaces(self) -> bool:
        return True

    @default("service_account")
    def _default_service_account(self) -> str:
        return manifests.USER_SERVICE_ACCOUNT

    @default("automount_service_account_token")
    def _default_automount(self) -> bool:
        return True

    @default("working_dir")
    def _default_working_dir(self) -> str:
        # The server's root directory (file browser) is the S3-backed home.
        return self.home_mount_path

    # -- namespaces ---------------------------------------------------------------
    @default("user_namespace_template")
    def _default_user_namespace_template(self) -> str:
        return "kubelab-{username}"

    hub_namespace = Unicode(
        config=True,
        help="""
        Namespace the hub and proxy run in. User namespaces accept ingress from
        it (NetworkPolicy), and spawn approvals are recorded there.

        Example::

            c.KubelabSpawner.hub_namespace = "jhub"
        """,
    )

    @default("hub_namespace")
    def _default_hub_namespace(self) -> str:
        return os.environ.get("POD_NAMESPACE", "kubelab-system")

    hub_pod_labels = Dict(
        {},
        config=True,
        help="""
        Labels selecting the hub and proxy pods inside ``hub_namespace`` that may
        reach user servers. Empty allows the whole hub namespace.

        Example::

            c.KubelabSpawner.hub_pod_labels = {"hub.jupyter.org/network-access-singleuser": "true"}
        """,
    )

    egress_deny_cidrs = List(
        Unicode(),
        list(manifests.METADATA_CIDRS),
        config=True,
        help="""
        Addresses user pods may not reach (the per-user NetworkPolicy's egress
        ``except``). The default blocks the cloud instance-metadata endpoints,
        which hand out the node's own cloud credentials; everything else stays
        reachable. An empty list leaves egress unrestricted.

        Example::

            c.KubelabSpawner.egress_deny_cidrs = ["169.254.169.254/32", "fd00:ec2::254/128", "10.0.0.0/24"]
        """,
    )

    @validate("egress_deny_cidrs")
    def _check_cidrs(self, proposal):
        import ipaddress
        for cidr in proposal["value"]:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise TraitError(f"egress_deny_cidrs: {cidr!r} is not an IP network such as 169.254.169.254/32") from None
        return proposal["value"]

    quota = Dict(
        {
            "requests.cpu": "8", "limits.cpu": "16", "requests.memory": "32Gi", "limits.memory": "64Gi",
            "pods": "30", "persistentvolumeclaims": "5", "requests.storage": "50Gi",
            "count/jobs.batch": "50", "count/cronjobs.batch": "20", "services": "10",
        },
        config=True,
        help="""
        ResourceQuota ``spec.hard`` for every user namespace. GPU quota per
        resource group defaults to the group's ``max_gpus`` on its GPU
        resource (e.g. ``requests.nvidia.com/gpu``); set it here to override.

        Example::

            c.KubelabSpawner.quota = {"requests.cpu": "4", "limits.memory": "16Gi", "requests.nvidia.com/gpu": "1"}
        """,
    )

    quota_group_overrides = Dict(
        {},
        config=True,
        help="""
        Per hub group quota overrides. A key set by any of the user's groups
        replaces the ``quota`` default (so a group can also lower it); if
        several of the user's groups set it, the largest value wins.

        Example::

            c.KubelabSpawner.quota_group_overrides = {"ml-team": {"requests.nvidia.com/gpu": "4"}}
        """,
    )

    limit_range_default = Dict(
        {"cpu": "1", "memory": "2Gi"},
        config=True,
        help="""
        LimitRange default limits for containers that set none (jobs, init
        containers), so they are admitted under the quota.

        Example::

            c.KubelabSpawner.limit_range_default = {"cpu": "2", "memory": "4Gi"}
        """,
    )

    limit_range_default_request = Dict(
        {"cpu": "100m", "memory": "256Mi"},
        config=True,
        help="""
        LimitRange default requests for containers that set none.

        Example::

            c.KubelabSpawner.limit_range_default_request = {"cpu": "250m", "memory": "512Mi"}
        """,
    )

    # -- resource groups -------------------------------------------------------------
    resource_groups = List(
        Dict(),
        config=True,
        help="""
        The machine classes users pick from. Each entry: ``name``,
        ``display_name``, ``description``, ``node_selector``, ``tolerations``,
        ``gpu_resource``, ``gpu_type``, ``max_gpus``, ``sizes`` (list of
        ``{name, display_name, cpu, memory}``), ``allowed_groups`` (hub groups;
        empty = everyone), ``requires_approval`` and ``idle_timeout`` (seconds).

        Example::

            c.KubelabSpawner.resource_groups = [
                {"name": "cpu", "sizes": [{"name": "small", "cpu": "1", "memory": "2Gi"}]},
                {"name": "a100", "node_selector": {"gpu": "a100"}, "max_gpus": 2, "allowed_groups": ["ml"],
                 "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "sizes": [{"name": "std", "cpu": "8", "memory": "32Gi"}]},
            ]
        """,
    )

    @default("resource_groups")
    def _default_resource_groups(self) -> list[dict]:
        return [dict(g) for g in rg.DEFAULT_GROUPS]

    @validate("resource_groups")
    def _validate_resource_groups(self, proposal: Any) -> list[dict]:
        rg.parse(proposal["value"])  # raises a clear ValueError at startup
        return proposal["value"]

    # -- storage ---------------------------------------------------------------------
    s3_mount_host_path = Unicode(
        "/var/lib/kubelab/s3",
        config=True,
        help="""
        Host directory where the s3fs DaemonSet mounts the bucket on every
        node. User pods mount ``users/<user>`` of it as home and ``datasets``
        read-only.

        Example::

            c.KubelabSpawner.s3_mount_host_path = "/mnt/kubelab-s3"
        """,
    )

    home_mount_path = Unicode(
        "/home/jovyan",
        config=True,
        help="""
        Where the user's home (``users/<user>`` in the bucket) is mounted.

        Example::

            c.KubelabSpawner.home_mount_path = "/home/jovyan"
        """,
    )

    seed_home = Bool(
        True,
        config=True,
        help="""
        Copy kubelab's demo notebooks into a new (empty) home once, with an
        init container.

        Example::

            c.KubelabSpawner.seed_home = False
        """,
    )

    s3_endpoint_url = Unicode(
        config=True,
        help="""
        S3 endpoint as user pods reach it (given to pods as ``AWS_ENDPOINT_URL``).
        Defaults to ``$KUBELAB_S3_POD_ENDPOINT`` or ``$AWS_ENDPOINT_URL``.

        Example::

            c.KubelabSpawner.s3_endpoint_url = "https://s3.example.org"
        """,
    )

    @default("s3_endpoint_url")
    def _default_s3_endpoint(self) -> str:
        return os.environ.get("KUBELAB_S3_POD_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL", "")

    s3_sts_endpoint_url = Unicode(
        config=True,
        help="""
        STS endpoint the hub calls for AssumeRole. Defaults to ``$AWS_ENDPOINT_URL``.

        Example::

            c.KubelabSpawner.s3_sts_endpoint_url = "https://sts.example.org"
        """,
    )

    @default("s3_sts_endpoint_url")
    def _default_sts(self) -> str:
        return os.environ.get("AWS_ENDPOINT_URL", "")

    s3_bucket = Unicode(
        config=True,
        help="""
        The kubelab bucket. Defaults to ``$KUBELAB_S3_BUCKET``.

        Example::

            c.KubelabSpawner.s3_bucket = "kubelab"
        """,
    )

    @default("s3_bucket")
    def _default_bucket(self) -> str:
        return os.environ.get("KUBELAB_S3_BUCKET", "")

    s3_broker_access_key_id = Unicode(
        config=True,
        help="""
        Access key of the platform's STS broker identity (stays in the hub).
        Defaults to ``$KUBELAB_S3_BROKER_ACCESS_KEY_ID``.

        Example::

            c.KubelabSpawner.s3_broker_access_key_id = os.environ["BROKER_KEY"]
        """,
    )

    @default("s3_broker_access_key_id")
    def _default_broker_key(self) -> str:
        return os.environ.get("KUBELAB_S3_BROKER_ACCESS_KEY_ID", "")

    s3_broker_secret_access_key = Unicode(
        config=True,
        help="""
        Secret key of the STS broker identity. Defaults to
        ``$KUBELAB_S3_BROKER_SECRET_ACCESS_KEY``.

        Example::

            c.KubelabSpawner.s3_broker_secret_access_key = os.environ["BROKER_SECRET"]
        """,
    )

    @default("s3_broker_secret_access_key")
    def _default_broker_secret(self) -> str:
        return os.environ.get("KUBELAB_S3_BROKER_SECRET_ACCESS_KEY", "")

    s3_role_arn = Unicode(
        "arn:aws:iam::000000000000:role/kubelab-user",
        config=True,
        help="""
        Role ARN for AssumeRole (AWS needs a real role; MinIO ignores it).

        Example::

            c.KubelabSpawner.s3_role_arn = "arn:aws:iam::123456789012:role/kubelab-users"
        """,
    )

    s3_credentials_duration = Int(
        12 * 3600,
        config=True,
        help="""
        Lifetime in seconds of a user's scoped S3 credentials; issued on every
        start and renewed while the server runs (``s3_credentials_renew_before``).

        Example::

            c.KubelabSpawner.s3_credentials_duration = 86400
        """,
    )

    s3_credentials_renew_before = Int(
        3 * 3600,
        config=True,
        help="""
        Renew a running server's S3 credentials when fewer than this many seconds
        of their lifetime are left (checked on the hub's poll of the server). The
        server reads them from the ``kubelab-s3`` Secret mounted as files, so it
        picks the new ones up without a restart. At most half of
        ``s3_credentials_duration`` is used; 0 turns renewal off.

        Example::

            c.KubelabSpawner.s3_credentials_renew_before = 7200
        """,
    )

    fail_fast_unschedulable = Bool(
        True,
        config=True,
        help="""
        Fail a spawn as soon as the scheduler reports the pod cannot be placed
        (no capacity, no matching node), with the scheduler's reason, instead of
        waiting for ``start_timeout``.

        Example::

            c.KubelabSpawner.fail_fast_unschedulable = False
        """,
    )

    # -- state -----------------------------------------------------------------------------
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._choice: SpawnChoice | None = None

    @property
    def groups(self) -> list[rg.ResourceGroup]:
        return rg.parse(self.resource_groups)

    @property
    def kube(self) -> Kube:
        return Kube(self.api.api_client, self.k8s_api_request_timeout)

    def user_group_names(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", [])]

    def broker(self) -> Broker:
        return Broker(self.s3_sts_endpoint_url, self.s3_broker_access_key_id, self.s3_broker_secret_access_key,
                      self.s3_bucket, role_arn=self.s3_role_arn)

    # -- options ----------------------------------------------------------------------------
    async def load_user_options(self) -> None:
        """Validate the options on the server (a hand-made POST gets a 4xx, not a pod)."""
        try:
            self._choice = resolve(self.user_options or {}, self.groups, self.user_group_names())
        except ForbiddenGroup as e:
            raise web.HTTPError(403, str(e)) from None
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        # Record the effective choice: admins and the idle culler read it from the server model.
        self.user_options = {**(self.user_options or {}), **self._choice.to_options()}
        group = self._choice.group
        if group.requires_approval:
            decision = await approvals.ensure_request(self.kube, self.hub_namespace, self.user.name, group.name)
            if decision.status != "approved":
                raise web.HTTPError(403, decision.message())

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """The form has one size (and GPU) field per group; keep the chosen group's."""
        group = (formdata.get("resource_group") or [""])[0]
        out: dict[str, Any] = {"resource_group": group} if group else {}
        for key in ("size", "gpus"):
            value = formdata.get(f"{key}-{group}")
            if value and value[0] != "":
                out[key] = value[0]
        return out

    @default("options_form")
    def _default_options_form(self):
        return self._render_form

    async def _render_form(self, spawner: "KubelabSpawner") -> str:
        allowed = [g for g in self.groups if g.allows(self.user_group_names())]
        if not allowed:
            return "<p>No resource group is available to you; ask an administrator.</p>"
        free = await capacity.free_by_group(self.kube, allowed)
        headroom = await capacity.quota_headroom(self.kube, self.namespace)
        rows = []
        for i, g in enumerate(allowed):
            f = free[g.name]
            gpu = (f" &middot; {f['gpus']} of {f['gpus_total']} GPUs free" if g.has_gpus else "")
            name = html.escape(g.name)
            sizes = "".join(f'<option value="{html.escape(s.name)}">{html.escape(s.display_name or s.name)}</option>'
                            for s in g.sizes)
            gpus = ""
            if g.has_gpus:
                gpus = (f'<label>GPUs <input type="number" name="gpus-{name}" min="0" max="{g.max_gpus}" '
                        f'value="1"></label>')
            approval = " (needs approval)" if g.requires_approval else ""
            rows.append(f"""
            <label class="kubelab-group">
              <input type="radio" name="resource_group" value="{html.escape(g.name)}" {'checked' if i == 0 else ''}>
              <strong>{html.escape(g.display_name or g.name)}</strong>{approval}
              <span class="text-muted">{html.escape(g.description)}</span>
              <span class="kubelab-free">{f['cpu']:.1f} CPU free{gpu}</span>
              <select name="size-{name}" aria-label="size">{sizes}</select> {gpus}
            </label>""")
        quota = "".join(f"<li>{html.escape(k)}: {html.escape(v)} left</li>" for k, v in sorted(headroom.items()))
        return ("<div class='kubelab-form'>" + "".join(rows) + "</div>"
                + (f"<p>Your quota headroom:</p><ul>{quota}</ul>" if quota else ""))

    # -- namespace provisioning -----------------------------------------------------------------
    def merged_quota(self) -> dict[str, str]:
        """``quota`` with the user's group overrides: a key set by any of the user's
        groups replaces the default; if several groups set it, the largest wins."""
        hard = dict(self.quota)
        mine = set(self.user_group_names())
        chosen: dict[str, str] = {}
        for group, overrides in self.quota_group_overrides.items():
            if group not in mine:
                continue
            for k, v in overrides.items():
                if k not in chosen or rg.parse_quantity(v) > rg.parse_quantity(chosen[k]):
                    chosen[k] = str(v)
        hard.update(chosen)
        return hard

    def namespace_manifests(self, s3_creds: dict | None) -> list[dict]:
        ns, user = self.namespace, self.user.name
        objs = [
            manifests.namespace(ns, user, self._expand_all(self.user_namespace_labels),
                                self._expand_all(self.user_namespace_annotations)),
            manifests.resource_quota(ns, user, self.merged_quota(), self.groups),
            manifests.limit_range(ns, user, self.limit_range_default, self.limit_range_default_request),
            manifests.service_account(ns, user),
            manifests.role(ns, user),
            manifests.role_binding(ns, user),
            manifests.network_policy(ns, user, self.hub_namespace, self.hub_pod_labels or None,
                                     self.egress_deny_cidrs),
        ]
        if s3_creds is not None:
            objs.append(self._s3_secret(s3_creds))
        return objs

    def _s3_secret(self, creds: dict) -> dict:
        return manifests.s3_credentials_secret(self.namespace, self.user.name, creds, self.s3_endpoint_url,
                                               self.s3_bucket)

    # -- S3 credentials: issued on every start, renewed while the server runs ---------------------
    _s3_expires: dt.datetime | None = None

    async def _issue_s3_credentials(self) -> dict:
        creds = await self.broker().assume(self.user.name, self.s3_credentials_duration)
        self._s3_expires = _parse_time(creds.get("Expiration"))
        return creds

    def get_state(self):
        state = super().get_state()
        if self._s3_expires is not None:
            state["s3_expires"] = self._s3_expires.isoformat()
        return state

    def load_state(self, state):
        super().load_state(state)
        try:
            self._s3_expires = _parse_time(state.get("s3_expires")) or self._s3_expires
        except ValueError:
            self._s3_expires = None

    def clear_state(self):
        super().clear_state()
        self._s3_expires = None

    async def poll(self):
        status = await super().poll()
        if status is None:
            await self.renew_s3_credentials_if_due()
        return status

    async def renew_s3_credentials_if_due(self, now: dt.datetime | None = None) -> bool:
        """Renew the running server's S3 credentials when they are close to
        expiring; True if it renewed. The expiry is kept in the spawner's state
        (the hub never reads Secrets back); a server started before that is
        renewed once. Failures are logged and retried on the next poll: the old
        credentials keep working until they expire."""
        before = min(self.s3_credentials_renew_before, self.s3_credentials_duration // 2)
        if before <= 0:
            return False
        now = now or dt.datetime.now(dt.timezone.utc)
        if self._s3_expires is not None and not renewal_due(self._s3_expires, now, before):
            return False
        try:
            creds = await self._issue_s3_credentials()
            await self.kube.apply(self._s3_secret(creds))
        except (S3ConfigError, ApiException, ValueError) as e:
            self.log.warning("could not renew the S3 credentials of %s: %s", self.user.name, e)
            return False
        self.log.info("renewed the S3 credentials of %s (until %s)", self.user.name, self._s3_expires)
        return True

    async def _ensure_namespace(self) -> None:
        """Create or repair the whole namespace (idempotent: a half-done provision is completed)."""
        existing = await self.kube.get("v1", "Namespace", self.namespace)
        if existing and existing.get("status", {}).get("phase") == "Terminating":
            since = existing["metadata"].get("deletionTimestamp", "")
            raise web.HTTPError(409, f"namespace {self.namespace} is still being deleted (since {since}); "
                                     "try again when it is gone")
        try:
            creds = await self._issue_s3_credentials()
        except S3ConfigError as e:
            raise web.HTTPError(500, str(e)) from None
        for obj in self.namespace_manifests(creds):
            try:
                await self.kube.apply(obj)
            except ApiException as e:
                raise web.HTTPError(500, f"could not provision {obj['kind']} in {self.namespace}: "
                                         f"{api_message(e)}") from None

    async def delete_forever(self) -> None:
        """The user was deleted from the hub: delete their namespace and everything
        in it, and their spawn approvals (a new user of that name gets none)."""
        await super().delete_forever()
        if not self.name:  # the default server owns the namespace
            await self.kube.delete("v1", "Namespace", self.namespace)
            await approvals.forget(self.kube, self.hub_namespace, self.user.name)

    # -- the pod ------------------------------------------------------------------------------
    async def get_pod_manifest(self):
        pod = await super().get_pod_manifest()
        choice = self._choice or resolve({}, self.groups, self.user_group_names())
        group, size = choice.group, choice.size
        spec = pod.spec
        pod.metadata.labels = {**(pod.metadata.labels or {}), L.RESOURCE_GROUP: group.name,
                               L.USER: names.safe_slug(self.user.name)}
        spec.node_selector = {**(spec.node_selector or {}), **group.node_selector}
        spec.tolerations = list(spec.tolerations or []) + [dict(t) for t in group.tolerations]
        main = spec.containers[0]
        res = {"cpu": size.cpu, "memory": size.memory}
        limits = dict(res)
        if choice.gpus:
            limits[group.gpu_resource] = str(choice.gpus)
        main.resources = {"requests": dict(res), "limits": limits}
        main.env = list(main.env or []) + [
            {"name": SETTINGS_ENV, "value": self.workspace_settings(group, main).to_json()},
            {"name": "KUBELAB_NAMESPACE", "value": self.namespace},
            # Jupyter's runtime files must be private (0600), which the S3-backed home cannot do.
            {"name": "JUPYTER_RUNTIME_DIR", "value": RUNTIME_DIR},
            {"name": "KUBELAB_RESOURCE_GROUP", "value": group.name},
            {"name": "KUBELAB_S3_PREFIX", "value": user_prefix(self.user.name)},
        ]
        # The credentials only as files (renewed in place): never as variables, which would
        # shadow the file for boto3 and could not change under a running server.
        main.env += [{"name": "AWS_ENDPOINT_URL", "value": self.s3_endpoint_url},
                     {"name": "KUBELAB_S3_BUCKET", "value": self.s3_bucket},
                     {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": f"{CREDENTIALS_DIR}/credentials"},
                     {"name": CREDENTIALS_DIR_ENV, "value": CREDENTIALS_DIR}]
        home = user_prefix(self.user.name).rstrip("/")
        spec.volumes = list(spec.volumes or []) + [
            {"name": "kubelab-s3", "hostPath": {"path": self.s3_mount_host_path, "type": "Directory"}},
            # the same Secret as files: a renewal reaches the running server (env vars never change)
            {"name": "kubelab-s3-credentials", "secret": {"secretName": "kubelab-s3", "defaultMode": 0o444}}]
        mounts = [
            {"name": "kubelab-s3", "mountPath": self.home_mount_path, "subPath": home},
            {"name": "kubelab-s3", "mountPath": f"{self.home_mount_path}/datasets",
             "subPath": DATASETS_PREFIX.rstrip("/"), "readOnly": True},
        ]
        main.volume_mounts = list(main.volume_mounts or []) + mounts + [
            {"name": "kubelab-s3-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}]
        if self.seed_home:
            spec.init_containers = list(spec.init_containers or []) + [{
                "name": "seed-home", "image": main.image,
                "command": ["python", "-m", "kubelab.core.seed_home", self.home_mount_path],
                "volumeMounts": [mounts[0]],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
            }]
        return pod

    def workspace_settings(self, group: rg.ResourceGroup, main: Any) -> WorkspaceSettings:
        """What the user's server needs to run workloads like itself: the image,
        mounts, and the groups the user may submit to (approval groups only
        when this server runs in one, i.e. it was approved)."""
        mine = self.user_group_names()
        groups = [g for g in self.groups if g.allows(mine) and (not g.requires_approval or g.name == group.name)]
        sc = main.security_context
        uid = getattr(sc, "run_as_user", None) if sc is not None and not isinstance(sc, dict) else \
            (sc or {}).get("runAsUser")
        gid = getattr(sc, "run_as_group", None) if sc is not None and not isinstance(sc, dict) else \
            (sc or {}).get("runAsGroup")
        return WorkspaceSettings(
            user=self.user.name, namespace=self.namespace, image=main.image, resource_groups=tuple(groups),
            default_group=group.name, home_path=self.home_mount_path, s3_mount_host_path=self.s3_mount_host_path,
            uid=uid, gid=gid, image_pull_policy=main.image_pull_policy or "IfNotPresent")

    # -- start: fail fast, leave nothing behind ---------------------------------------------------
    async def _start(self):
        task = asyncio.ensure_future(super()._start())
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=1.0)
                if done:
                    return task.result()
                reason = self._unschedulable_reason() if self.fail_fast_unschedulable else None
                if reason:
                    task.cancel()
                    raise web.HTTPError(409, f"your server cannot be scheduled: {reason}")
        except ApiException as e:
            msg = api_message(e)
            code = 403 if e.status == 403 and "exceeded quota" in msg else 409 if e.status in (403, 409, 422) else 500
            await self._cleanup_failed_start()
            raise web.HTTPError(code, f"your server could not be created: {msg}") from None
        except web.HTTPError:
            await self._cleanup_failed_start()
            raise
        except asyncio.CancelledError:
            task.cancel()
            raise

    def _unschedulable_reason(self) -> str | None:
        for ev in self.events or []:
            if ev.get("reason") == "FailedScheduling":
                return ev.get("message", "").strip() or "FailedScheduling"
        return None

    async def _cleanup_failed_start(self) -> None:
        try:
            await self.stop(now=True)
        except Exception:  # noqa: BLE001 - best effort; the next start reconciles
            self.log.exception("cleanup after a failed start of %s", self.pod_name)


def renewal_due(expires: dt.datetime, now: dt.datetime, before_seconds: int) -> bool:
    """Whether credentials expiring at ``expires`` are within ``before_seconds`` of it at ``now``."""
    return expires - now <= dt.timedelta(seconds=before_seconds)


def _parse_time(value: Any) -> dt.datetime | None:
    """An STS expiration (ISO 8601, ``Z`` or an offset) as an aware datetime; None if absent."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
