# kubelab: `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
# Debian's python3 (world-readable, unlike a per-user pyenv), so devcluster pods
# that run as non-root users (jovyan, uid 1000) can run the virtualenv's tools.
PY ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.kubelab-installed

.PHONY: demo test test-unit bench bench-cluster bench-spawn bench-workloads bench-data deps venv build cluster-up cluster-down cluster-status cluster-purge clean

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml server_extension/etc/kubelab.json kernels/etc/ipython_kernel_config.json
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	# A wheel installs this auto-enable file (data-files); an editable install does not.
	install -D -m 644 server_extension/etc/kubelab.json $(VENV)/etc/jupyter/jupyter_server_config.d/kubelab.json
	install -D -m 644 kernels/etc/ipython_kernel_config.json $(VENV)/etc/ipython/ipython_kernel_config.json
	touch $@

venv: $(STAMP)

# Control-plane binary and MinIO, built once and cached in ~/.cache/kubelab.
build: deps venv
	devcluster/build-clusterbin.sh
	devcluster/build-minio.sh

cluster-up: build
	$(VPY) -m devcluster up

cluster-down: venv
	$(VPY) -m devcluster down

cluster-status: venv
	@$(VPY) -m devcluster status

cluster-purge: venv
	$(VPY) -m devcluster purge

demo: build
	$(VPY) -m devcluster demo

# Unit tests, then end-to-end tests on devcluster (started if it is not up),
# then the teardown test, which runs `down` and checks nothing is left.
test: build
	$(VPY) -m pytest -m "not teardown" $(PYTEST_ARGS)
	$(VPY) -m pytest -m teardown $(PYTEST_ARGS)

test-unit: venv
	$(VPY) -m pytest -m "not e2e and not teardown" $(PYTEST_ARGS)

bench: bench-cluster bench-spawn bench-workloads bench-data

bench-cluster: build
	$(VPY) benchmarks/bench_cluster.py

bench-spawn: build
	$(VPY) benchmarks/bench_spawn.py

bench-workloads: build
	$(VPY) benchmarks/bench_workloads.py

bench-data: build
	$(VPY) benchmarks/bench_data.py

clean: cluster-purge
	rm -rf $(VENV)
