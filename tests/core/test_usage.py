"""The Resources panel's numbers: quota rows, GPUs held, headroom per group (pure)."""
from kubelab.core import resource_groups as rg
from kubelab.core import usage

GROUPS = rg.parse([
    {"name": "cpu", "sizes": [{"name": "s", "cpu": "1", "memory": "1Gi"}]},
    {"name": "a100", "display_name": "A100", "max_gpus": 2, "sizes": [{"name": "s", "cpu": "1", "memory": "1Gi"}]},
])


def quota(hard, used, name="q"):
    return {"metadata": {"name": name}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}


def pod(gpus, phase="Running", limit_only=False):
    res = {"limits": {"nvidia.com/gpu": str(gpus)}} if limit_only else {"requests": {"nvidia.com/gpu": str(gpus)}}
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": res}]},
            "status": {"phase": phase}}


def test_quota_rows_show_used_and_hard_in_kubernetes_and_numeric_form():
    rows = usage.quota_rows([quota({"requests.cpu": "4", "requests.memory": "8Gi"},
                                   {"requests.cpu": "500m", "requests.memory": "1Gi"})])
    assert rows == [
        {"resource": "requests.cpu", "used": "500m", "hard": "4", "used_value": 0.5, "hard_value": 4.0},
        {"resource": "requests.memory", "used": "1Gi", "hard": "8Gi", "used_value": 2.0**30, "hard_value": 8 * 2.0**30},
    ]


def test_the_tightest_of_two_quotas_wins():
    rows = usage.quota_rows([quota({"pods": "20"}, {"pods": "3"}, "a"), quota({"pods": "5"}, {"pods": "3"}, "b")])
    assert rows[0]["hard"] == "5"


def test_gpus_held_count_live_pods_only_and_limits_when_no_request():
    pods = [pod(1), pod(1, limit_only=True), pod(2, phase="Succeeded"), pod(1, phase="Pending")]
    out = usage.usage("ns", GROUPS, [], pods)
    assert out["gpus_in_use"] == 3


def test_headroom_per_gpu_group_from_the_quota_and_free_gpus_from_the_hub():
    q = quota({"requests.nvidia.com/gpu": "2"}, {"requests.nvidia.com/gpu": "1"})
    out = usage.usage("ns", GROUPS, [q], [pod(1)], free_gpus={"a100": 3.0})
    cpu, a100 = out["groups"]
    assert cpu == {"name": "cpu", "display_name": "cpu", "gpu_resource": None, "max_gpus": 0,
                   "gpu_quota_headroom": None, "free_gpus": None}
    assert a100["gpu_quota_headroom"] == 1.0 and a100["free_gpus"] == 3.0 and a100["display_name"] == "A100"


def test_no_gpu_limit_in_the_quota_means_unknown_headroom_not_zero():
    out = usage.usage("ns", GROUPS, [quota({"pods": "5"}, {"pods": "1"})], [])
    assert out["groups"][1]["gpu_quota_headroom"] is None and out["groups"][1]["free_gpus"] is None
