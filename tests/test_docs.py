"""Every option has help with an example config line and is in the README."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _configurables():
    from jupyter_server.extension.application import ExtensionApp

    from kubelab.server_extension.app import KubelabApp
    from kubelab.server_extension.services import (DatasetService, JobService, ModelService, ResourceService,
                                                   ScheduleService, ServingService, Workspace)

    out = [(KubelabApp, ExtensionApp), (Workspace, None), (ScheduleService, None), (JobService, None),
           (ModelService, None), (ServingService, None), (DatasetService, None),
           (ResourceService, None)]
    from traitlets.config import Application

    from kubelab.hub.admin import KubelabAdmin
    out.append((KubelabAdmin, Application))
    try:
        from kubelab.kernels.magics import KubelabMagics
        from IPython.core.magic import Magics
        out.append((KubelabMagics, Magics))
    except ImportError:
        pass
    return out


def _section(cls_name: str) -> str:
    m = re.search(rf"^#+ {cls_name} \(`c\.{cls_name}\.\*`\)\n(.*?)(?=^#+ )", README, re.S | re.M)
    assert m, f"the README has no configuration section for {cls_name}"
    return m.group(1)


@pytest.mark.parametrize("cls, base", _configurables(), ids=lambda x: getattr(x, "__name__", ""))
def test_options_have_examples_and_are_documented(cls, base):
    traits = cls.class_traits(config=True)
    if base is not None:
        traits = {k: v for k, v in traits.items() if k not in base.class_traits(config=True)}
    assert traits, f"{cls.__name__} has no options"
    section = _section(cls.__name__)
    for name, trait in traits.items():
        assert trait.help and f"c.{cls.__name__}.{name}" in trait.help, f"{cls.__name__}.{name}: add an example"
        assert f"`{name}`" in section, f"{cls.__name__}.{name} is missing from the README"
