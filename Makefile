# kubelab: `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
# Debian's python3 (world-readable, unlike a per-user pyenv), so devcluster pods
# that run as non-root users (jovyan, uid 1000) can run the virtualenv's tools.
PY ?= /usr/bin/python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.kubelab-installed

.PHONY: demo test test-unit bench bench-cluster bench-spawn bench-workloads bench-data bench-hub bench-ui deps venv labext test-labext build cluster-up cluster-down cluster-status cluster-purge clean lint-images locks

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

venv: $(STAMP) labext

# The JupyterLab extension (labextension/): npm packages from the registry with
# jlpm and its lockfile (package cache in ~/.cache/kubelab/yarn), a production
# build in labextension/dist/kubelab, installed into the venv as a wheel would
# install it (share/jupyter/labextensions/kubelab). Rebuilt when its sources change.
JLPM := PATH=$(abspath $(VENV))/bin:$$PATH $(abspath $(VENV))/bin/jlpm
LABEXT_OUT := labextension/dist/kubelab
LABEXT_DEST := $(VENV)/share/jupyter/labextensions/kubelab
LABEXT_MODULES := labextension/node_modules/.yarn-state.yml
LABEXT_SRC := $(shell find labextension/src labextension/style -type f -not -name schema.d.ts 2>/dev/null) \
	labextension/package.json labextension/tsconfig.json labextension/install.json server_extension/openapi.yaml

$(LABEXT_MODULES): labextension/package.json labextension/yarn.lock labextension/.yarnrc.yml | $(STAMP)
	cd labextension && $(JLPM) install --immutable
	touch $@

$(LABEXT_DEST)/package.json: $(LABEXT_SRC) $(LABEXT_MODULES) | $(STAMP)
	cd labextension && $(JLPM) run build:prod
	install -m 644 labextension/install.json $(LABEXT_OUT)/install.json
	rm -rf $(LABEXT_DEST)
	mkdir -p $(dir $(LABEXT_DEST))
	cp -r $(LABEXT_OUT) $(LABEXT_DEST)

labext: $(LABEXT_DEST)/package.json

# The extension's Jest tests (jsdom): components, the cron form, errors, quota bars, the client against openapi.yaml.
test-labext: $(LABEXT_MODULES)
	cd labextension && CI=true $(JLPM) run test

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
test: build test-labext
	$(VPY) -m pytest -m "not teardown" $(PYTEST_ARGS)
	$(VPY) -m pytest -m teardown $(PYTEST_ARGS)

test-unit: venv test-labext
	$(VPY) -m pytest -m "not e2e and not teardown" $(PYTEST_ARGS)

# images/: hadolint every Dockerfile and check the requirement locks (up to date,
# resolvable on PyPI for the images' Python and platform). `make test` runs the same tests.
lint-images: venv
	$(VPY) -m pytest tests/deploy/test_images.py $(PYTEST_ARGS)

# Rewrite images/*/requirements*.txt after editing an .in file or pyproject's extras.
locks: venv
	$(VPY) images/locks.py compile

bench: bench-cluster bench-spawn bench-workloads bench-data bench-hub bench-ui

bench-cluster: build
	$(VPY) benchmarks/bench_cluster.py

bench-spawn: build
	$(VPY) benchmarks/bench_spawn.py

bench-workloads: build
	$(VPY) benchmarks/bench_workloads.py

bench-data: build
	$(VPY) benchmarks/bench_data.py

bench-hub: build
	$(VPY) benchmarks/bench_hub.py

bench-ui: build
	$(VPY) benchmarks/bench_ui.py

clean: cluster-purge
	rm -rf $(VENV)
	rm -rf labextension/node_modules labextension/lib labextension/dist labextension/tsconfig.tsbuildinfo
