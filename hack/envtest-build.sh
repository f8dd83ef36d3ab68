#!/usr/bin/env bash
# Builds the control plane that envtest and the local environment run: kube-apiserver,
# kubectl and etcd, compiled from source through the Go module proxy (no prebuilt
# binaries are downloaded). Binaries are kept in a per-user cache keyed by version
# and copied into bin/k8s/<version>; a second run only copies or does nothing.
#
# Usage: hack/envtest-build.sh [dest-dir]   prints the directory holding the binaries.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.1}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/bin/k8s/$KUBE_VERSION-etcd$ETCD_VERSION}"
cache="${XDG_DATA_HOME:-$HOME/.local/share}/apitoken-operator/envtest/$KUBE_VERSION-etcd$ETCD_VERSION"

have_all() { [ -x "$1/kube-apiserver" ] && [ -x "$1/etcd" ] && [ -x "$1/kubectl" ]; }

log() { echo "envtest-build: $*" >&2; }

if have_all "$dest"; then echo "$dest"; exit 0; fi
if ! have_all "$cache"; then
  work="$(mktemp -d)"
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  export GOFLAGS="${GOFLAGS:-} -mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
  mkdir -p "$cache.tmp"

  log "building kube-apiserver and kubectl v$KUBE_VERSION from source (takes several minutes the first time)"
  minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
  mkdir -p "$work/kube" && cd "$work/kube"
  go mod init envtest.local/kube >/dev/null 2>&1
  # k8s.io/kubernetes points its staging modules at ./staging; point them at the
  # matching published v0.N releases instead.
  go mod download "k8s.io/kubernetes@v$KUBE_VERSION"
  modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBE_VERSION.mod"
  {
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 v0.'"${KUBE_VERSION#*.}"'#p' "$modfile"
  } >> go.mod
  go mod download all >/dev/null 2>&1 || true
  ver="-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$KUBE_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w $ver" -o "$cache.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -ldflags "-s -w $ver" -o "$cache.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl

  log "building etcd v$ETCD_VERSION from source"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init envtest.local/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/api/v3@v$ETCD_VERSION" \
    "go.etcd.io/etcd/client/pkg/v3@v$ETCD_VERSION" "go.etcd.io/etcd/client/v3@v$ETCD_VERSION" \
    "go.etcd.io/etcd/pkg/v3@v$ETCD_VERSION" >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$cache.tmp/etcd" go.etcd.io/etcd/server/v3

  rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
mkdir -p "$dest"
cp "$cache/kube-apiserver" "$cache/etcd" "$cache/kubectl" "$dest/"
echo "$dest"
