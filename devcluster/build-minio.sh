#!/usr/bin/env bash
# Build the MinIO server (devcluster's S3) once, cached outside the work tree,
# keyed by its pinned module version. Prints the binary's path.
#
# MinIO's go.mod has no replace directives, so a plain `go install mod@version`
# works (module mode, independent of any GOPATH or of the current directory).
set -euo pipefail
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"   # latest on proxy.golang.org (2026-02-12)
cache="${KUBELAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubelab}"
dir="$cache/minio/$MINIO_VERSION"
out="$dir/minio"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "build-minio: Go is not installed (need go >= 1.24)" >&2; exit 1; }
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "build-minio: building MinIO $MINIO_VERSION (cold builds take 5-20 min)..." >&2
# Run outside any module so the work tree's go.mod (if any) is not consulted.
(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GO111MODULE=on \
  go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION")
mv "$tmp/minio" "$out"
secs=$(( $(date +%s) - start ))
size=$(stat -c %s "$out")
echo "build-minio: built in ${secs}s, $((size / 1048576)) MiB" >&2
printf '{"build_seconds": %d, "binary_bytes": %d, "minio_version": "%s"}\n' "$secs" "$size" "$MINIO_VERSION" > "$dir/build.json"
echo "$out"
