"""kubelab.kernels: the ``%kubelab`` / ``%%kubelab`` magics and their widgets (user-pod side).

Load with ``%load_ext kubelab.kernels``; in a kubelab server it is loaded in
every IPython kernel by ``<sys.prefix>/etc/ipython/ipython_kernel_config.json``
(see ``kernels/etc/``). Loading only registers the magics: the service layer
(settings, Kubernetes client) is created on the first ``%kubelab`` command,
so a server without ``KUBELAB_SETTINGS`` still starts its kernels.
"""
from __future__ import annotations


def load_ipython_extension(ip) -> None:
    from .magics import KubelabMagics

    if any(isinstance(m, KubelabMagics) for m in ip.magics_manager.registry.values()):
        return
    ip.register_magics(KubelabMagics(shell=ip))


def unload_ipython_extension(ip) -> None:
    from .magics import KubelabMagics

    for m in list(ip.magics_manager.registry.values()):
        if isinstance(m, KubelabMagics):
            m.close()
            del ip.magics_manager.registry[m.__class__.__name__]
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("kubelab", None)
