#!/usr/bin/env bash
# Creates the Python venv that provides libtorch and ONNX Runtime, idempotently.
# usage: scripts/setup.sh VENV REQUIREMENTS_FILE
set -euo pipefail
venv=${1:?venv directory}
req=${2:?requirements file}
py=${BASE_PYTHON:-python3}

stamp="$venv/.stamp-$(basename "$req" .txt)-$(sha256sum "$req" | cut -c1-16)"
# The checks' and benchmarks' shared Python modules (scripts/idx.py) are
# importable from the venv's Python: `import idx`, wherever the script runs.
modules() {
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$(cd "$(dirname "$0")" && pwd)" > "$site/ae_scripts.pth"
}
if [ -f "$stamp" ]; then
  modules
  echo "setup: $venv is up to date with $req"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating venv $venv"
  "$py" -m venv "$venv"
fi
echo "setup: installing $req into $venv (first time: a few minutes)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
capi="$site/onnxruntime/capi"
lib=$(ls "$capi"/libonnxruntime.so.1.* 2>/dev/null | head -n1)
[ -n "$lib" ] || { echo "setup: $capi has no libonnxruntime.so.1.*" >&2; exit 1; }
# The wheel ships only the fully versioned name; the linker wants the bare
# name and the loader wants the SONAME.
ln -sfn "$(basename "$lib")" "$capi/libonnxruntime.so.1"
ln -sfn "$(basename "$lib")" "$capi/libonnxruntime.so"
ln -sfn "$capi" "$venv/ort"
if [ -d "$site/torch/lib" ]; then
  ln -sfn "$site/torch" "$venv/libtorch"
fi
modules
touch "$stamp"
echo "setup: done ($venv)"
