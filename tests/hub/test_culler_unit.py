import datetime as dt

from kubelab.core import resource_groups as rg
from kubelab.hub.config import culler_service, idle_timeouts
from kubelab.hub.culler import servers_to_cull

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def user(name, group, idle_minutes, ready=True):
    last = (NOW - dt.timedelta(minutes=idle_minutes)).isoformat().replace("+00:00", "Z")
    return {"name": name, "servers": {"": {"ready": ready, "pending": None, "last_activity": last,
                                           "user_options": {"resource_group": group}}}}


def test_gpu_servers_are_culled_sooner_than_cpu_servers():
    timeouts = idle_timeouts(rg.DEFAULT_GROUPS)
    assert timeouts == {"cpu": 8 * 3600, "gpu-a100": 1800}
    users = [user("gpu-idle", "gpu-a100", 45), user("cpu-idle", "cpu", 45), user("cpu-long", "cpu", 9 * 60),
             user("gpu-busy", "gpu-a100", 5), user("starting", "gpu-a100", 60, ready=False)]
    culled = {c.user for c in servers_to_cull(users, timeouts, 3600, NOW)}
    assert culled == {"gpu-idle", "cpu-long"}


def test_unknown_group_uses_default_and_zero_means_never():
    users = [user("x", "", 90), user("y", "mystery", 30)]
    assert {c.user for c in servers_to_cull(users, {}, 3600, NOW)} == {"x"}
    assert servers_to_cull(users, {}, 0, NOW) == []


def test_culler_service_definition():
    service, role = culler_service(rg.DEFAULT_GROUPS)
    assert service["name"] == "kubelab-culler" and "kubelab.hub.culler" in service["command"]
    assert '"gpu-a100": 1800' in service["command"][service["command"].index("--timeouts") + 1]
    assert "delete:servers" in role["scopes"]
