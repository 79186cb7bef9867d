#!/usr/bin/env bash
# Install what kubelab's demo and tests need on a fresh Debian machine:
# system packages (apt) that devcluster uses. Idempotent and quick when all is there.
set -euo pipefail
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v s3fs >/dev/null || need+=(s3fs)
command -v fusermount3 >/dev/null || command -v fusermount >/dev/null || need+=(fuse3)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3 python3-venv)
command -v npm >/dev/null || need+=(npm)
# Browser tests (Playwright drives Debian's chromium; no browser is downloaded by a tool).
[ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "install-deps: need root for apt-get (devcluster needs root anyway)" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "install-deps: Go >= 1.26 is required to build devcluster's control plane" >&2; exit 1; }
