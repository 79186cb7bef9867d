"""kubelab.kernels: %kubelab magics (user-pod side). Not built yet."""
