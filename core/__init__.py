"""kubelab.core: the pure shared model (names, labels, resource groups, manifest builders).

Imported by the hub side and the user-pod side alike; it imports no Jupyter framework.
"""
