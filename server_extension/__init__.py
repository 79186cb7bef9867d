"""kubelab.server_extension: the Jupyter Server extension (user-pod side). Not built yet."""
