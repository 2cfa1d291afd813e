#!/usr/bin/env bash
# The interop checks on graphs exported in this run (not only on the
# committed models): a small autoencoder → classifier → export, then
# tests/interop.py on the three fresh files. Run by `make test`.
# usage: tests/fresh_export.sh DATA_DIR
set -euo pipefail
data=${1:?data dir}
bin=${BIN_DIR:-target/release}
py=${PYTHON:?PYTHON: the venv interpreter}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--images "$data/train-images-idx3-ubyte" --limit 10000 --threads 2 --quiet)
"$bin/train" autoencoder "${common[@]}" --layers 2 --filters 8 --epochs 1 --out "$tmp/ae"
"$bin/train" classifier "${common[@]}" --autoencoder "$tmp/ae" --labels "$data/train-labels-idx1-ubyte" \
  --test-images none --fc-units 16 --frozen-epochs 1 --epochs 2 --out "$tmp/clf"
# int8 too. Ungated: 2 000 validation images cannot show that int8 turns
# at most 0.2 % of them wrong unless it turns none (the gate is tested in
# cargo test); what is checked here is that other runtimes read the graphs.
"$bin/train" export --run "$tmp/clf" --out "$tmp/models" --quiet --int8 --int8-ungated --calibration-images 256
"$py" tests/interop.py "$tmp/models" "$data" 0.8
# The same run as a Triton model repository, served by `infer serve` and
# driven by Triton's own client (HTTP JSON, HTTP binary, gRPC, async).
"$bin/train" export --run "$tmp/clf" --out "$tmp/repo" --layout triton --quiet --int8 --int8-ungated --calibration-images 256
"$py" tests/triton_client.py "$bin/infer" "$tmp/repo" "$data"
# And by KServe's own SDK (REST JSON and binary, gRPC typed and raw contents).
"$py" tests/kserve_client.py "$bin/infer" "$tmp/repo" "$data"
