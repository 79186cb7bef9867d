import pytest

from kubelab.core import resource_groups as rg


def groups():
    return rg.parse(rg.DEFAULT_GROUPS)


def test_defaults_parse_and_match_devcluster_nodes():
    cpu, gpu = groups()
    assert cpu.name == "cpu" and not cpu.has_gpus
    assert gpu.node_selector == {"kubelab.io/resource-group": "gpu-a100"} and gpu.max_gpus == 2
    assert gpu.tolerations[0]["key"] == "nvidia.com/gpu"


def test_allowed_groups_restrict_users():
    g = rg.from_dict({**rg.DEFAULT_GROUPS[1], "allowed_groups": ["ml-team"]})
    assert g.allows(["ml-team", "x"]) and not g.allows(["x"]) and not g.allows([])
    assert groups()[0].allows([])


def test_gpu_and_size_limits_are_enforced():
    gpu = groups()[1]
    assert gpu.check_gpus(2) == 2
    with pytest.raises(ValueError, match="0 to 2 GPUs"):
        gpu.check_gpus(3)
    with pytest.raises(ValueError, match="no size 'huge'"):
        gpu.size("huge")
    assert gpu.size(None).name == "standard"


@pytest.mark.parametrize("bad, message", [
    ({"name": "Bad_Name", "sizes": [{"name": "s", "cpu": "1", "memory": "1Gi"}]}, "invalid resource group name"),
    ({"name": "ok", "sizes": []}, "needs at least one size"),
    ({"name": "ok", "sizes": [{"name": "s", "cpu": "lots", "memory": "1Gi"}]}, "invalid quantity"),
    ({"name": "ok", "colour": "red", "sizes": [{"name": "s", "cpu": "1", "memory": "1Gi"}]}, "unknown keys"),
])
def test_bad_config_is_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        rg.from_dict(bad)


def test_duplicate_names_refused():
    with pytest.raises(ValueError, match="duplicate"):
        rg.parse([rg.DEFAULT_GROUPS[0], rg.DEFAULT_GROUPS[0]])


def test_quantities():
    assert rg.parse_quantity("250m") == 0.25
    assert rg.parse_quantity("1Gi") == 2**30
    assert rg.parse_quantity(3) == 3.0
