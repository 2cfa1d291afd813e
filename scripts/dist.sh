#!/usr/bin/env bash
# Builds the self-contained `infer` bundle:
#   OUT/infer-VERSION-linux-x86_64[-cuda].tar.gz
#     bin/infer, bin/infer-serve rpath $ORIGIN/../lib, stripped, no path of this machine
#                                (`infer serve` runs infer-serve from beside infer)
#     lib/libonnxruntime.so*     the ONNX Runtime `infer` was built for (cpu: the venv's
#                                wheel; cuda: the `onnxruntime-gpu` wheel of the same version)
#     models/*.onnx, README.md, LICENSE-onnxruntime, ThirdPartyNotices-onnxruntime.txt
# usage: scripts/dist.sh VENV MODELS OUT cpu|cuda
set -euo pipefail
venv=${1:?venv}; models=${2:?models directory}; out=${3:?output directory}; flavour=${4:-cpu}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}/dist
cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT
case "$flavour" in cpu|cuda) ;; *) echo "dist: flavour must be cpu or cuda, not '$flavour'" >&2; exit 2;; esac

ort_version=$("$venv/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')
capi=$(readlink -f "$venv/ort")   # linked against (same C API and SONAME in both builds)
libs=$capi                         # bundled
if [ "$flavour" = cuda ]; then
  # The GPU build of the same ONNX Runtime version: same C API, plus the
  # CUDA execution provider. The CUDA libraries it loads come from the
  # machine it runs on (see the bundle's README).
  wheels=${XDG_CACHE_HOME:-$HOME/.cache}/ae-toolchain/wheels
  mkdir -p "$wheels"
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$wheels" "onnxruntime-gpu==$ort_version"
  wheel=$(ls "$wheels"/onnxruntime_gpu-"$ort_version"-*manylinux*x86_64.whl | head -n1)
  unpacked=$(mktemp -d)
  cleanup+=("$unpacked")
  "$venv/bin/python" -m zipfile -e "$wheel" "$unpacked"
  libs="$unpacked/onnxruntime/capi"
fi

# A build of its own (own target directory): the rpath points next to the
# binary instead of into the venv, and source paths are remapped.
echo "dist: building infer for the bundle"
INFER_RPATH='$ORIGIN/../lib' \
CARGO_PROFILE_RELEASE_STRIP=symbols \
RUSTFLAGS="--remap-path-prefix=$root=. --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=cargo" \
ORT_LIB_PATH="$capi" ORT_PREFER_DYNAMIC_LINK=1 \
  cargo build --quiet --release -p infer -p serve --target-dir "$target" --manifest-path "$root/Cargo.toml"
bin="$target/release/infer"
version=$(LD_LIBRARY_PATH="$capi" "$bin" --version | awk '{print $2}')
name="infer-$version-linux-x86_64$([ "$flavour" = cuda ] && echo -cuda || true)"

mkdir -p "$out"
stage=$(mktemp -d "$out/.stage-XXXXXX")
cleanup+=("$stage")
dir="$stage/$name"
mkdir -p "$dir/bin" "$dir/lib" "$dir/models"
cp "$bin" "$dir/bin/infer"
cp "$target/release/infer-serve" "$dir/bin/infer-serve"
lib=$(ls "$libs"/libonnxruntime.so.1.* | head -n1)
cp "$lib" "$dir/lib/"
ln -s "$(basename "$lib")" "$dir/lib/libonnxruntime.so.1"
for so in "$libs"/libonnxruntime_providers_*.so; do
  [ -e "$so" ] && cp "$so" "$dir/lib/"
done
cp "$models"/*.onnx "$dir/models/"
site=$(dirname "$libs")
cp "$site/LICENSE" "$dir/LICENSE-onnxruntime"
cp "$site/ThirdPartyNotices.txt" "$dir/ThirdPartyNotices-onnxruntime.txt"
# The newest glibc symbol version either binary needs: the oldest Linux it runs on.
glibc=$(objdump -T "$dir/bin/infer" "$dir/bin/infer-serve" "$dir/lib/$(basename "$lib")" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -n1)
sed -e "s/@GLIBC@/${glibc#GLIBC_}/g" -e "s/@VERSION@/$version/g" -e "s/@ORT@/$ort_version/g" -e "s/@NAME@/$name/g" \
  "$root/scripts/dist-README.md" > "$dir/README.md"
if [ "$flavour" = cuda ]; then
  # What the CUDA provider loads from the machine, read from the library itself.
  needs=$(readelf -d "$dir/lib/libonnxruntime_providers_cuda.so" | sed -n 's/.*NEEDED.*\[\(lib\(cu\|nv\)[^]]*\)\]/\1/p' | paste -sd, - | sed 's/,/, /g')
  cat >> "$dir/README.md" <<TXT

## CUDA build

\`lib/\` holds \`onnxruntime-gpu\` $ort_version's libraries. \`--device auto\` (the default) runs on the GPU
when ONNX Runtime can load its CUDA provider and falls back to the CPU otherwise (the timing line
names the provider that ran); \`--device cuda\` fails instead, saying which library is missing. The
provider needs an NVIDIA driver and, on the loader's path, $needs
(from the CUDA toolkit, or pip's \`nvidia-*\` wheels with their directories in \`LD_LIBRARY_PATH\`).
TXT
fi

for b in infer infer-serve; do
  runpath=$(readelf -d "$dir/bin/$b" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
  [ "$runpath" = '$ORIGIN/../lib' ] || { echo "dist: bin/$b has RUNPATH '$runpath', expected \$ORIGIN/../lib" >&2; exit 1; }
done

# Same bytes for the same inputs: sorted names, fixed owner and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -czf "$stage/$name.tar.gz" "$name"
mv "$stage/$name.tar.gz" "$out/$name.tar.gz"
echo "dist: $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1)B; ONNX Runtime $ort_version, $flavour)"
