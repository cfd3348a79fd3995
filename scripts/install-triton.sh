#!/usr/bin/env bash
# A real Triton Inference Server for tests/verify_triton_server.rs, without a GPU or a
# registry: the `tritonserver` binary (Triton 2.51.0, the server of NGC's 24.10 containers)
# and its Python backend, as NVIDIA ships them inside the nvidia-pytriton wheel on PyPI. The
# server starts on a CPU-only machine (NVML and DCGM fail, and it says so, then serves).
# Usage: bash scripts/install-triton.sh [DIR]   (default .cache/triton; about 20 s when the
# wheel is cached in DIR, 55 MB to download otherwise). Needs python3 with pip for the
# download, and installs the Python backend's own needs (libpython3, numpy) from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/triton}
WHEEL=nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl
# recorded when this script was written (2026-12-03), from the file PyPI served
SHA256=21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
started=$(date +%s)

# The Python backend stub embeds the system's python3 (libpython3.X) and imports numpy.
py=$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
need=()
[ -e "/usr/lib/x86_64-linux-gnu/libpython$py.so.1.0" ] || need+=("libpython$py")
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$DIR"
if ! echo "$SHA256  $DIR/$WHEEL" | sha256sum -c --status 2>/dev/null; then
  rm -f "$DIR/$WHEEL"
  printf 'nvidia-pytriton==0.7.0 --hash=sha256:%s\n' "$SHA256" > "$DIR/requirements.txt"
  python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes \
    -r "$DIR/requirements.txt" -d "$DIR"
fi
rm -rf "$DIR/server"
mkdir -p "$DIR/server"
python3 - "$DIR/$WHEEL" "$DIR/server" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for m in z.infolist():
        if m.filename.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/")):
            z.extract(m, sys.argv[2])
            # zip keeps the mode in the high bits; the binaries must stay executable
            mode = m.external_attr >> 16
            if mode:
                import os
                os.chmod(f"{sys.argv[2]}/{m.filename}", mode)
PY
T=$DIR/server/pytriton/tritonserver
stub=$T/python_backend_stubs/$py/triton_python_backend_stub
[ -x "$stub" ] || { echo "error: the wheel has no Python backend stub for python $py" >&2; exit 1; }
cp "$stub" "$T/backends/python/"
# --help exits 1; what matters is that the binary and its bundled libraries load here
"$T/bin/tritonserver" --help > "$DIR/help.txt" 2>&1 || true
grep -q '^Usage: tritonserver' "$DIR/help.txt" || { cat "$DIR/help.txt" >&2; exit 1; }
echo "[triton] tritonserver 2.51.0 with the Python backend (python $py) in $T: $(( $(date +%s) - started )) s"
