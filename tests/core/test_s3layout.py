import pytest

from kubelab.core.s3layout import user_prefix, user_session_policy


def test_user_session_policy_rejects_unsafe_names():
    policy = user_session_policy("kubelab", "alice")
    resources = [r for st in policy["Statement"] for r in st["Resource"]]
    assert "arn:aws:s3:::kubelab/users/alice/*" in resources
    for bad in ("", "a/b", "*", "a*", "..", "a?", "${aws:username}"):
        with pytest.raises(ValueError):
            user_session_policy("kubelab", bad)


def test_user_prefix_uses_the_collision_free_slug():
    assert user_prefix("alice") == "users/alice/"
    assert user_prefix("Alice").startswith("users/alice---") and user_prefix("Alice") != user_prefix("alice")
