"""kubelab.hub: hub-side config helpers and the admin service. Not built yet."""
