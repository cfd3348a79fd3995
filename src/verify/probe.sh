# pvegpu verify probe for a guest: read-only, one pass. Runs as the SSH user (rootless Podman
# reads that user's view); uses sudo -n only where root is needed to read, and never asks.
# Parameters, set before this text by pvegpu: ENGINE (docker|podman|empty), GPU_FLAGS,
# IMAGE_HINT (a unit file naming the image to probe with), TRITON_PORT, MODEL_REPO, PROBE_PY.
# Sections as in the host probe: "### pvegpu <name> [<arg>]" ... "### pvegpu exit <rc>".
# (LC_ALL, PATH and section() come first, from src/probe-prelude.sh)

echo "### pvegpu facts 1"
section uname -- uname -r
section modules -- cat /proc/modules
section kernels -- sh -c 'ls -1 /boot/vmlinuz-* 2>/dev/null || true'
section nvidia-smi -- nvidia-smi --query-gpu=pci.bus_id,uuid,name,driver_version,compute_cap --format=csv,noheader
section mig -- nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader
section dkms -- dkms status
section driver-version -- cat /proc/driver/nvidia/version
section dev -- sh -c 'ls -ld /dev/nvidia* /dev/nvidia-caps/* 2>/dev/null'
section id -- id
for f in /etc/cdi/*.yaml /etc/cdi/*.json /var/run/cdi/*.yaml /var/run/cdi/*.json \
         "$HOME"/.config/cdi/*.yaml "$HOME"/.config/cdi/*.json; do
  [ -f "$f" ] && section64 cdi "$f" -- dd if="$f" iflag=nofollow,nonblock bs=65536 count=16 status=none
done
# Compose files are in folders other users may write to: only regular files are listed, and
# each is read without following a link or waiting on a FIFO swapped in since (GNU dd), 1 MiB
# at most, and sent base64-encoded (section64) so its lines cannot pose as sections. CDI specs
# under $HOME and model names are the user's too, and go the same way.
find "$HOME" /opt /srv -maxdepth 3 -type f \( -name compose.yaml -o -name compose.yml \
     -o -name docker-compose.yaml -o -name docker-compose.yml \) 2>/dev/null | sort |
while IFS= read -r f; do
  section64 compose "$f" -- dd if="$f" iflag=nofollow,nonblock bs=65536 count=16 status=none
done

if [ -n "$ENGINE" ]; then
  image=
  [ -n "$IMAGE_HINT" ] && [ -r "$IMAGE_HINT" ] && \
    image=$(sed -n 's/.* image inspect \([^ ]*\) .*/\1/p' "$IMAGE_HINT" | head -n1)
  section engine -- sh -c "command -v $ENGINE"
  if [ -n "$image" ] && command -v "$ENGINE" >/dev/null 2>&1; then
    # never pull: verify changes nothing; an image that is not there is reported as such
    section runtime-nvml "$image" -- $ENGINE run --rm --pull=never $GPU_FLAGS "$image" nvidia-smi -L
    section runtime-cuda "$image" -- $ENGINE run --rm --pull=never $GPU_FLAGS "$image" python3 -c "$PROBE_PY"
  fi
fi

if [ -n "$TRITON_PORT" ]; then
  section triton-ready -- curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$TRITON_PORT/v2/health/ready"
  section triton-index -- curl -s --max-time 10 -X POST "http://127.0.0.1:$TRITON_PORT/v2/repository/index"
  section64 models "$MODEL_REPO" -- sh -c "ls -1 \"\$1\" | while read -r m; do [ -d \"\$1/\$m\" ] && echo \"\$m\"; done" sh "$MODEL_REPO"
fi
