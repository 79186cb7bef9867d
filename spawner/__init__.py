"""kubelab.spawner: KubelabSpawner (hub side). Not built yet: see the spawner issue."""
