"""The kubelab Jupyter Server extension: REST API over the service layer."""
from __future__ import annotations

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool

from .datasets_handlers import DATASET_HANDLERS
from .handlers import HANDLERS
from .models_handlers import MODEL_HANDLERS
from .services import Services


def all_handlers() -> list[tuple[str, type]]:
    """Every REST route of the extension (the spec test checks them against openapi.yaml)."""
    return HANDLERS + MODEL_HANDLERS + DATASET_HANDLERS


class KubelabApp(ExtensionApp):
    """Serves ``{base_url}kubelab/api/`` (see ``openapi.yaml``).

    The services are configured as their own classes, e.g.
    ``c.ScheduleService.default_timezone = "Europe/Berlin"`` or
    ``c.Workspace.api_timeout = 10`` in ``jupyter_server_config.py``.
    """

    name = "kubelab"
    load_other_extensions = True

    open_run_outputs = Bool(
        True,
        config=True,
        help="""
        Let the file browser and the panels' links open files under
        ``~/.kubelab`` (where runs write their executed notebooks and HTML):
        sets the contents manager's ``allow_hidden``. Turn off to keep hidden
        files hidden; run outputs are then reachable only from a terminal.

        Example::

            c.KubelabApp.open_run_outputs = False
        """,
    )

    def initialize_settings(self) -> None:
        self.settings["kubelab_services"] = Services.create(self.config, self.log)
        if self.open_run_outputs:
            self.serverapp.contents_manager.allow_hidden = True

    def initialize_handlers(self) -> None:
        self.handlers.extend(all_handlers())
