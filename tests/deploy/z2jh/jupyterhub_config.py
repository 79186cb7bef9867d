"""The zero-to-jupyterhub hub's jupyterhub_config.py, for a test.

It does what the chart's files/hub/jupyterhub_config.py (chart 4.4.0) does with
the values kubelab's deploy/z2jh/values.yaml sets, in the same order: the
chart's own settings (KubeSpawner from ``singleuser.*``, services, roles),
then the ``hub.config`` pass-through, then ``hub.extraConfig`` snippets sorted
by key, exec'd with ``c`` in scope. Left out: what needs the chart's
generated names (proxy and hub service URLs) and the database password.
"""
# ruff: noqa
c = get_config()  # noqa: F821 - provided by traitlets' config loader

import os
import re
import sys

configuration_directory = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, configuration_directory)

from z2jh import get_config, get_secret_value, set_config_if_not_none  # noqa: E402


def camelCaseify(s):
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), s)


c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.ConfigurableHTTPProxy.should_start = False
c.JupyterHub.cleanup_servers = False
c.JupyterHub.last_activity_interval = 60
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

db_type = get_config("hub.db.type")
if db_type == "sqlite-pvc":
    c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
elif db_type == "sqlite-memory":
    c.JupyterHub.db_url = "sqlite://"
else:
    set_config_if_not_none(c.JupyterHub, "db_url", "hub.db.url")

for trait, cfg_key in (
    ("concurrent_spawn_limit", None), ("active_server_limit", None), ("base_url", None),
    ("allow_named_servers", None), ("named_server_limit_per_user", None), ("authenticate_prometheus", None),
    ("redirect_to_server", None), ("shutdown_on_logout", None), ("template_paths", None), ("template_vars", None),
):
    set_config_if_not_none(c.JupyterHub, trait, "hub." + (cfg_key or camelCaseify(trait)))

c.JupyterHub.hub_bind_url = "http://:8081"

common_labels = c.KubeSpawner.common_labels = {}
common_labels["app.kubernetes.io/name"] = common_labels["app"] = get_config(
    "nameOverride", default=get_config("Chart.Name", "jupyterhub"))
release = get_config("Release.Name")
if release:
    common_labels["app.kubernetes.io/instance"] = common_labels["release"] = release
common_labels["app.kubernetes.io/managed-by"] = "kubespawner"

c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")
set_config_if_not_none(c.Spawner, "consecutive_failure_limit", "hub.consecutiveFailureLimit")

for trait, cfg_key in (
    ("pod_name_template", None), ("start_timeout", None), ("image_pull_policy", "image.pullPolicy"),
    ("events_enabled", "events"), ("extra_labels", None), ("extra_annotations", None), ("uid", None),
    ("fs_gid", None), ("service_account", "serviceAccountName"), ("storage_extra_labels", "storage.extraLabels"),
    ("node_selector", None), ("node_affinity_required", "extraNodeAffinity.required"),
    ("node_affinity_preferred", "extraNodeAffinity.preferred"), ("pod_affinity_required", "extraPodAffinity.required"),
    ("pod_affinity_preferred", "extraPodAffinity.preferred"),
    ("pod_anti_affinity_required", "extraPodAntiAffinity.required"),
    ("pod_anti_affinity_preferred", "extraPodAntiAffinity.preferred"), ("lifecycle_hooks", None),
    ("init_containers", None), ("extra_containers", None), ("mem_limit", "memory.limit"),
    ("mem_guarantee", "memory.guarantee"), ("cpu_limit", "cpu.limit"), ("cpu_guarantee", "cpu.guarantee"),
    ("extra_resource_limits", "extraResource.limits"), ("extra_resource_guarantees", "extraResource.guarantees"),
    ("environment", "extraEnv"), ("profile_list", None), ("extra_pod_config", None),
):
    set_config_if_not_none(c.KubeSpawner, trait, "singleuser." + (cfg_key or camelCaseify(trait)))

image = get_config("singleuser.image.name")
if image:
    tag = get_config("singleuser.image.tag")
    if tag:
        image = f"{image}:{tag}"
    c.KubeSpawner.image = image

c.KubeSpawner.allow_privilege_escalation = get_config("singleuser.allowPrivilegeEscalation")

if get_config("scheduling.userScheduler.enabled"):
    c.KubeSpawner.scheduler_name = "user-scheduler"
if get_config("scheduling.podPriority.enabled"):
    c.KubeSpawner.priority_class_name = "priority"

match_node_purpose = get_config("scheduling.userPods.nodeAffinity.matchNodePurpose")
if match_node_purpose:
    node_selector = dict(matchExpressions=[dict(key="hub.jupyter.org/node-purpose", operator="In", values=["user"])])
    if match_node_purpose == "prefer":
        c.KubeSpawner.node_affinity_preferred.append(dict(weight=100, preference=node_selector))
    elif match_node_purpose == "require":
        c.KubeSpawner.node_affinity_required.append(node_selector)
    elif match_node_purpose != "ignore":
        raise ValueError(f"Unrecognized value for matchNodePurpose: {match_node_purpose}")

tolerations = get_config("scheduling.userPods.tolerations", []) + get_config("singleuser.extraTolerations", [])
if tolerations:
    c.KubeSpawner.tolerations = tolerations

volumes = {}
volume_mounts = {}
storage_type = get_config("singleuser.storage.type")
if storage_type == "dynamic":
    volume_name_template = get_config("singleuser.storage.dynamic.volumeNameTemplate")
    c.KubeSpawner.storage_pvc_ensure = True
    set_config_if_not_none(c.KubeSpawner, "storage_capacity", "singleuser.storage.capacity")
    volumes = {volume_name_template: {"name": volume_name_template,
                                      "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
    volume_mounts = {volume_name_template: {"mountPath": get_config("singleuser.storage.homeMountPath"),
                                            "name": volume_name_template}}
elif storage_type == "static":
    volumes = {"home": {"name": "home", "persistentVolumeClaim": {
        "claimName": get_config("singleuser.storage.static.pvcName")}}}
    volume_mounts = {"home": {"mountPath": get_config("singleuser.storage.homeMountPath"), "name": "home"}}
for volume in get_config("singleuser.storage.extraVolumes", default=[]) or []:
    volumes[volume["name"]] = volume
for idx, volume_mount in enumerate(get_config("singleuser.storage.extraVolumeMounts", default=[]) or []):
    volume_mounts[f"{idx}-{volume_mount['name']}"] = volume_mount
c.KubeSpawner.volumes = volumes
c.KubeSpawner.volume_mounts = volume_mounts

c.JupyterHub.services = []
c.JupyterHub.load_roles = []
if get_config("cull.enabled", False):
    c.JupyterHub.services.append({"name": "jupyterhub-idle-culler",
                                  "command": ["python3", "-m", "jupyterhub_idle_culler"]})
    c.JupyterHub.load_roles.append({"name": "jupyterhub-idle-culler", "services": ["jupyterhub-idle-culler"],
                                    "scopes": ["list:users", "read:users:activity", "read:servers",
                                               "delete:servers"]})
for key, service in get_config("hub.services", {}).items():
    service.setdefault("name", key)
    service.pop("apiToken", None)
    service["api_token"] = get_secret_value(f"hub.services.{key}.apiToken")
    c.JupyterHub.services.append(service)
for key, role in get_config("hub.loadRoles", {}).items():
    role.setdefault("name", key)
    c.JupyterHub.load_roles.append(role)

_unspecified = object()
specified_cmd = get_config("singleuser.cmd", _unspecified)
if specified_cmd is not _unspecified:
    c.Spawner.cmd = specified_cmd
set_config_if_not_none(c.Spawner, "default_url", "singleuser.defaultUrl")

cloud_metadata = get_config("singleuser.cloudMetadata")
if cloud_metadata.get("blockWithIptables") == True:  # noqa: E712 - as the chart writes it
    c.KubeSpawner.init_containers.append({
        "name": "block-cloud-metadata",
        "image": f'{get_config("singleuser.networkTools.image.name")}:{get_config("singleuser.networkTools.image.tag")}',
        "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp", "--destination", cloud_metadata["ip"],
                    "--destination-port", "80", "--jump", "DROP"],
        "securityContext": {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
    })

c.JupyterHub.cookie_secret = get_secret_value("hub.config.JupyterHub.cookie_secret")
c.CryptKeeper.keys = get_secret_value("hub.config.CryptKeeper.keys").split(";")

for section, cfg in get_config("hub.config", {}).items():
    if section == "JupyterHub":
        cfg.pop("proxy_auth_token", None)
        cfg.pop("cookie_secret", None)
        cfg.pop("services", None)
    elif section == "ConfigurableHTTPProxy":
        cfg.pop("auth_token", None)
    elif section == "CryptKeeper":
        cfg.pop("keys", None)
    if not section[:1].isupper():
        print(f"FATAL: Invalid hub.config section name: {section}.", file=sys.stderr)
        sys.exit(1)
    c[section].update(cfg)

for key, config_py in sorted(get_config("hub.extraConfig", {}).items()):
    exec(config_py)
