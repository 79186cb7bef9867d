"""The service layer: one per domain, shared by the REST handlers, the magics and the panels.

No Tornado or Jupyter imports here: handlers and magics are thin shells over
these classes. Every call is synchronous; handlers run them in a thread.
"""
from __future__ import annotations

from dataclasses import dataclass

from traitlets.config import Config

from .datasets import DatasetService
from .errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError, Unavailable
from .jobs import JobService
from .models import ModelService
from .resources import ResourceService
from .schedules import ScheduleService
from .serving import ServingService
from .workspace import Workspace

__all__ = ["Services", "BadRequest", "Conflict", "Forbidden", "NotFound", "ServiceError", "Unavailable",
           "Workspace", "ScheduleService", "JobService", "ModelService", "ServingService", "DatasetService",
           "ResourceService"]


@dataclass
class Services:
    workspace: Workspace
    schedules: ScheduleService
    jobs: JobService
    models: ModelService
    serving: ServingService
    datasets: DatasetService
    resources: ResourceService

    @classmethod
    def create(cls, config: Config | None = None, log=None) -> "Services":
        kw = {"config": config} if config is not None else {}
        if log is not None:
            kw["log"] = log
        ws = Workspace(**kw)
        models = ModelService(workspace=ws, **kw)
        return cls(workspace=ws, schedules=ScheduleService(workspace=ws, **kw), jobs=JobService(workspace=ws, **kw),
                   models=models, serving=ServingService(workspace=ws, models=models, **kw),
                   datasets=DatasetService(workspace=ws, **kw),
                   resources=ResourceService(workspace=ws, **kw))

    def info(self) -> dict:
        """Who and where: the user, namespace and the resource groups they may use."""
        s = self.workspace.settings
        return {"user": s.user, "namespace": s.namespace, "image": s.image, "home": s.home_path,
                "default_resource_group": s.default_group or (s.resource_groups[0].name if s.resource_groups else None),
                "resource_groups": [g.to_dict() for g in s.resource_groups]}
