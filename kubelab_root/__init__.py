"""kubelab: a one-stop AI platform on Kubernetes, from JupyterHub and JupyterLab."""

__version__ = "0.1.0"
