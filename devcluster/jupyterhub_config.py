"""JupyterHub on devcluster with KubelabSpawner (used by `make demo` and the tests).

devcluster/hub.py starts it with the environment it reads here.
"""
import os

c = get_config()  # noqa: F821 - provided by JupyterHub

state = os.environ["KUBELAB_DEVCLUSTER_DIR"]
c.JupyterHub.spawner_class = "kubelab"
c.JupyterHub.bind_url = os.environ.get("KUBELAB_HUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_bind_url = "http://10.244.0.1:8081"  # the pod bridge: user pods reach the hub here
c.JupyterHub.db_url = f"sqlite:///{state}/hub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/hub/cookie_secret"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.ConfigurableHTTPProxy.pid_file = f"{state}/hub/proxy.pid"
c.ConfigurableHTTPProxy.auth_token = os.environ["KUBELAB_PROXY_TOKEN"]
# A hub restart (hub-down + hub-up, a config change) leaves user servers running,
# as on zero-to-jupyterhub; `devcluster down` still stops every pod.
c.JupyterHub.cleanup_servers = False

# Demo login: any user name with the demo password; `admin` is an admin.
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = os.environ.get("KUBELAB_DEMO_PASSWORD", "kubelab")
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True
c.JupyterHub.load_groups = {"gpu-users": {"users": ["alice"]}}

# The tests drive the hub through its REST API with this service's token.
c.JupyterHub.services = [{"name": "kubelab-tests", "api_token": os.environ["KUBELAB_TEST_TOKEN"]}]
c.JupyterHub.load_roles = [{
    "name": "kubelab-tests",
    "scopes": ["admin:users", "admin:servers", "admin:groups", "access:servers", "read:users", "tokens"],
    "services": ["kubelab-tests"],
}]

c.KubelabSpawner.image = "quay.io/jupyter/base-notebook:2026-11-01"
c.KubelabSpawner.cmd = ["jupyterhub-singleuser"]
c.KubelabSpawner.default_url = "/lab"
# The demo platform accepts scikit-learn's pickle-based models, after the
# import-allowlist scan (off by default: see ModelService.allow_pickle).
# The Resources panel and the job form show free GPUs from the admin service's capacity API.
c.KubelabSpawner.args = ["--ModelService.allow_pickle=True",
                         "--ResourceService.capacity_url=http://10.244.0.1:10101/services/kubelab-admin/api/capacity"]
c.KubelabSpawner.start_timeout = 180
c.KubelabSpawner.http_timeout = 120
c.KubelabSpawner.hub_namespace = "kubelab-system"
c.KubelabSpawner.s3_mount_host_path = "/var/lib/kubelab/s3"
c.KubelabSpawner.uid = 1000
c.KubelabSpawner.gid = 100

# Resource groups matching devcluster's nodes: CPU for everyone, A100s for the
# gpu-users group, and an approval-gated A100 group.
c.KubelabSpawner.resource_groups = [
    {"name": "cpu", "display_name": "CPU", "description": "General-purpose CPU server",
     "node_selector": {"kubelab.io/resource-group": "cpu"},
     "sizes": [{"name": "small", "display_name": "Small (0.5 CPU, 1 GiB)", "cpu": "500m", "memory": "1Gi"}],
     "idle_timeout": 8 * 3600},
    {"name": "gpu-a100", "display_name": "NVIDIA A100", "description": "A100 GPUs for training",
     "node_selector": {"kubelab.io/resource-group": "gpu-a100"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "gpu_resource": "nvidia.com/gpu", "gpu_type": "NVIDIA-A100-SXM4-40GB", "max_gpus": 2,
     "allowed_groups": ["gpu-users"],
     "sizes": [{"name": "standard", "display_name": "1 CPU, 2 GiB", "cpu": "1", "memory": "2Gi"}],
     "idle_timeout": 30 * 60},
    {"name": "gpu-a100-approval", "display_name": "NVIDIA A100 (on approval)",
     "description": "A100s for anyone, after an administrator approves",
     "node_selector": {"kubelab.io/resource-group": "gpu-a100"},
     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
     "max_gpus": 1, "requires_approval": True,
     "sizes": [{"name": "standard", "cpu": "500m", "memory": "1Gi"}], "idle_timeout": 30 * 60},
]
c.KubelabSpawner.quota = {
    "requests.cpu": "4", "limits.cpu": "8", "requests.memory": "8Gi", "limits.memory": "16Gi", "pods": "20",
    "persistentvolumeclaims": "5", "requests.storage": "20Gi", "count/jobs.batch": "20",
    "count/cronjobs.batch": "10", "services": "10",
}
c.KubelabSpawner.quota_group_overrides = {"no-gpu-quota": {"requests.nvidia.com/gpu": "0"}}
# Refusals (quota, forbidden group, unschedulable) come back on the spawn request itself.
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 30}

# Idle culling per resource group (GPU servers sooner than CPU servers).
from kubelab.hub.config import culler_service  # noqa: E402

_service, _role = culler_service(c.KubelabSpawner.resource_groups)
c.JupyterHub.services.append(_service)
c.JupyterHub.load_roles.append(_role)

# Admin pages and the schedule trigger API (after all KubelabSpawner settings: it
# hands them to the service). On the pod bridge, so user servers reach it too.
from kubelab.hub.config import admin_service  # noqa: E402

_service, _roles = admin_service(c, url="http://10.244.0.1:10101")
c.JupyterHub.services.append(_service)
c.JupyterHub.load_roles.extend(_roles)

# Benchmarks compare with stock KubeSpawner (user namespaces on) on the same cluster.
if os.environ.get("KUBELAB_HUB_SPAWNER") == "kubespawner":
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.KubeSpawner.enable_user_namespaces = True
    c.KubeSpawner.user_namespace_template = "stock-{username}"
    c.KubeSpawner.image = c.KubelabSpawner.image
    c.KubeSpawner.cmd = c.KubelabSpawner.cmd
    c.KubeSpawner.uid, c.KubeSpawner.gid = 1000, 100
    c.KubeSpawner.start_timeout = 300
    c.KubeSpawner.http_timeout = 240

# Settings a test restarts the hub with (devcluster.hub.up(config=...)), merged last.
if os.environ.get("KUBELAB_HUB_EXTRA_CONFIG", "{}") != "{}":
    import json

    from traitlets.config import Config

    c.merge(Config(json.loads(os.environ["KUBELAB_HUB_EXTRA_CONFIG"])))
