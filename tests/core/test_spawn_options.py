import pytest

from kubelab.core import resource_groups as rg
from kubelab.core.spawn_options import ForbiddenGroup, OptionsError, resolve

GROUPS = rg.parse([rg.DEFAULT_GROUPS[0], {**rg.DEFAULT_GROUPS[1], "allowed_groups": ["gpu-users"]}])


def test_defaults_pick_first_allowed_group():
    c = resolve({}, GROUPS, [])
    assert (c.group.name, c.size.name, c.gpus) == ("cpu", "small", 0)


def test_gpu_group_for_allowed_user_defaults_to_one_gpu():
    c = resolve({"resource_group": ["gpu-a100"]}, GROUPS, ["gpu-users"])
    assert c.gpus == 1 and c.to_options() == {"resource_group": "gpu-a100", "size": "standard", "gpus": 1}


def test_forbidden_group_is_refused_even_by_hand_made_post():
    with pytest.raises(ForbiddenGroup, match="not allowed to use resource group 'gpu-a100'"):
        resolve({"resource_group": "gpu-a100", "gpus": "1"}, GROUPS, ["others"])


@pytest.mark.parametrize("opts, msg", [
    ({"resource_group": "tpu"}, "unknown resource group"),
    ({"resource_group": "gpu-a100", "gpus": "3"}, "0 to 2 GPUs"),
    ({"resource_group": "gpu-a100", "gpus": "-1"}, "0 to 2 GPUs"),
    ({"resource_group": "cpu", "gpus": "1"}, "0 to 0 GPUs"),
    ({"resource_group": "gpu-a100", "gpus": "two"}, "whole number"),
    ({"resource_group": "cpu", "size": "huge"}, "no size 'huge'"),
    ({"image": "evil"}, "unknown spawn options: image"),
])
def test_bad_options_give_clear_errors(opts, msg):
    with pytest.raises(OptionsError, match=msg):
        resolve(opts, GROUPS, ["gpu-users"])
