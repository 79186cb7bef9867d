"""devcluster: a real single-machine Kubernetes for kubelab's demo and tests.

Nothing under the product folders imports this package.
"""
