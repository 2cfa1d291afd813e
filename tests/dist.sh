#!/usr/bin/env bash
# The bundle `make dist` built runs on its own: unpacked into a fresh
# directory, started with an empty environment (`env -i`) while the venv is
# moved out of reach, it gives the in-tree binary's report on the MNIST test
# set — and its libonnxruntime is the bundle's.
# usage: tests/dist.sh DIST_DIR|TARBALL VENV DATA (a directory: its newest CPU bundle)
set -euo pipefail
tarball=${1:?dist directory or tarball}
[ -d "$tarball" ] && tarball=$(ls -t "$tarball"/infer-*-linux-x86_64.tar.gz | head -n1)
tarball=$(readlink -f "$tarball"); venv=$(readlink -f "${2:?venv}"); data=$(readlink -f "${3:?data}")
root=$(cd "$(dirname "$0")/.." && pwd)
infer=${BIN_DIR:-$root/target/release}/infer
work=$(mktemp -d)
hidden="$venv.out-of-reach-$$"
restore() {
  [ -d "$hidden" ] && mv "$hidden" "$venv"
  rm -rf "$work"
}
trap restore EXIT

tar -xzf "$tarball" -C "$work"
bundle=$(ls -d "$work"/infer-*)
args=(classify --model "$bundle/models/classifier.onnx" --images "$data/t10k-images-idx3-ubyte"
      --labels "$data/t10k-labels-idx1-ubyte" --quiet)
"$infer" "${args[@]}" > "$work/in-tree.txt"

mv "$venv" "$hidden"
env -i "$bundle/bin/infer" "${args[@]}" > "$work/bundle.txt"
lib=$(env -i ldd "$bundle/bin/infer" | awk '/libonnxruntime/ {print $3}')
int8=$(env -i "$bundle/bin/infer" classify --model "$bundle/models/classifier.int8.onnx" \
  --images "$data/t10k-images-idx3-ubyte" --labels "$data/t10k-labels-idx1-ubyte" --quiet --format json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["report"]["accuracy"])')
# The server, run by `infer serve` from beside infer: it loads the bundle's models and stops cleanly.
env -i "$bundle/bin/infer" serve --models "$bundle/models" --http-port 0 --grpc-port 0 > "$work/serve.txt" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "http://" "$work/serve.txt" && break; sleep 0.1; done
kill -TERM "$server" 2>/dev/null || true
wait "$server" || { cat "$work/serve.txt" >&2; echo "dist: bin/infer serve did not drain" >&2; exit 1; }
grep -q "http://127.0.0.1:" "$work/serve.txt" || { cat "$work/serve.txt" >&2; echo "dist: bin/infer serve did not start" >&2; exit 1; }
mv "$hidden" "$venv"

[ "$(readlink -f "$lib")" = "$(readlink -f "$bundle/lib/libonnxruntime.so.1")" ] ||
  { echo "dist: bin/infer loads $lib, not the bundle's library" >&2; exit 1; }
diff -u "$work/in-tree.txt" "$work/bundle.txt" ||
  { echo "dist: the bundle's report differs from the in-tree binary's" >&2; exit 1; }
grep -q "accuracy" "$work/bundle.txt"
python3 -c "import sys; a = float(sys.argv[1]); sys.exit(0 if a >= 0.99 else f'dist: int8 accuracy {a}')" "$int8"
echo "dist: $(basename "$tarball") ($(du -h "$tarball" | cut -f1)B) runs under env -i without the venv:" \
  "same report as the in-tree binary ($(grep -m1 accuracy "$work/bundle.txt" | tr -s ' ' | sed 's/^ //')), and serves"
