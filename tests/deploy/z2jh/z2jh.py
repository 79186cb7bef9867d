"""The zero-to-jupyterhub chart's ``z2jh`` helper module, as the hub imports it.

A faithful copy of the behaviour of the chart's files/hub/z2jh.py (chart 4.4.0)
for a test: the chart mounts the rendered values at
``/usr/local/etc/jupyterhub/secret/values.yaml`` and per-key secrets beside it;
here that directory is ``$Z2JH_ETC`` (tests/deploy/z2jh_render.py writes it).
"""
import os
from collections.abc import Mapping
from functools import lru_cache

import yaml

ETC = os.environ.get("Z2JH_ETC", "/usr/local/etc/jupyterhub")


@lru_cache
def _load_config():
    cfg = {}
    for source in ("secret/values.yaml", "existing-secret/values.yaml"):
        path = f"{ETC}/{source}"
        if os.path.exists(path):
            with open(path) as f:
                cfg = _merge_dictionaries(cfg, yaml.safe_load(f))
    return cfg


@lru_cache
def get_secret_value(key, default="never-explicitly-set"):
    for source in ("existing-secret", "secret"):
        path = f"{ETC}/{source}/{key}"
        if os.path.exists(path):
            with open(path) as f:
                return f.read()
    if default != "never-explicitly-set":
        return default
    raise Exception(f"{key} not found in either k8s Secret!")


def _merge_dictionaries(a, b):
    merged = a.copy()
    for key in b:
        if key in a and isinstance(a[key], Mapping) and isinstance(b[key], Mapping):
            merged[key] = _merge_dictionaries(a[key], b[key])
        else:
            merged[key] = b[key]
    return merged


def get_config(key, default=None):
    value = _load_config()
    for level in key.split("."):
        if not isinstance(value, dict):
            return default
        if level not in value:
            return default
        value = value[level]
    return value


def set_config_if_not_none(cparent, name, key):
    data = get_config(key)
    if data is not None:
        setattr(cparent, name, data)
