#!/usr/bin/env bash
# GPU check, for a CUDA machine: the `paper` preset's training time
# (a few epochs, extrapolated to the preset's 100) and `infer classify
# --device cuda` throughput, printed as a table.
# usage: bench/drivers/gpu-check.sh   (from the repository root; needs pip access
# for torch and onnxruntime-gpu, ~10 minutes; the CUDA libraries the
# bundle's README lists must be on the loader's path)
set -euo pipefail
AE_EPOCHS=${AE_EPOCHS:-3}
make setup data build >/dev/null
python=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
target/release/train autoencoder --preset paper --epochs "$AE_EPOCHS" --device cuda --out runs/gpu/ae --force --quiet
target/release/train classifier --preset paper --autoencoder runs/gpu/ae --frozen-epochs 1 --epochs 2 --device cuda \
  --out runs/gpu/clf --force --quiet --test-images none

# infer as users get it on a GPU machine: the CUDA bundle (`make dist
# CUDA=1`: onnxruntime-gpu's libraries next to the binary), unpacked.
make dist CUDA=1 >/dev/null
rm -rf runs/gpu/bundle && mkdir -p runs/gpu/bundle
tar -xzf "$(ls -t dist/infer-*-linux-x86_64-cuda.tar.gz | head -n1)" -C runs/gpu/bundle --strip-components=1
images=data/mnist/t10k-images-idx3-ubyte labels=data/mnist/t10k-labels-idx1-ubyte
rows=()
for b in 256 1024; do
  line=$(runs/gpu/bundle/bin/infer classify --device cuda --model models/classifier.onnx --images $images \
         --labels $labels --batch-size $b 2>&1 >/dev/null | grep 'images/s')
  rows+=("| infer classify --device cuda, batch $b | $line |")
done
"$python" - "$AE_EPOCHS" <<'PY'
import csv, statistics, sys
n = int(sys.argv[1])
ae = [float(r["seconds"]) for r in csv.DictReader(open("runs/gpu/ae/history.csv"))]
clf = [float(r["seconds"]) for r in csv.DictReader(open("runs/gpu/clf/history.csv"))]
# The first epoch carries CUDA start-up: extrapolate from the later ones.
per_ae = statistics.median(ae[1:] or ae)
per_clf = statistics.median(clf[1:] or clf)
print("| measurement | value |\n|---|---|")
print(f"| paper autoencoder (L4 FS3 FL32 B40), s/epoch | {per_ae:.1f} (100 epochs ≈ {100 * per_ae:.0f} s; reference K80: 1046 s) |")
print(f"| paper classifier (FC32 B64), s/epoch | {per_clf:.1f} (100 epochs ≈ {100 * per_clf:.0f} s) |")
PY
printf '%s\n' "${rows[@]}"
