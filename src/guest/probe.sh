# pvegpu guest probe: read-only; prints every fact the guest phase needs in one pass.
# Same format as the host probe (src/facts/probe.sh): "### pvegpu <name> [<argument>]", the
# command's output, "### pvegpu exit <rc>". The parsers in src/guest/ read this text; a saved
# guest facts file is this text too. PVEGPU_MODEL_REPOSITORY, when set by the caller, names the
# Triton model repository to list.
# (LC_ALL, PATH and section() come first, from src/probe-prelude.sh)

dump_file() { # path
  if [ -e "$1" ]; then
    echo "### pvegpu file $1 $(stat -L -c 'mode=%a owner=%U:%G mtime=%Y' "$1")"
    cat "$1"
    [ -n "$(tail -c1 "$1")" ] && echo
    echo "### pvegpu exit 0"
  fi
}

# One line per kernel found in /boot or /lib/modules: whether it boots (vmlinuz), whether its
# headers are there (the build link DKMS compiles against), and the NVIDIA module it carries
# (Debian's DKMS package names it nvidia-current.ko, NVIDIA's and Ubuntu's nvidia.ko).
kernels() {
  for v in $( (ls /lib/modules 2>/dev/null; ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p') | sort -u); do
    ko=$(find "/lib/modules/$v" \( -name 'nvidia.ko*' -o -name 'nvidia-current.ko*' \) 2>/dev/null | head -n1)
    signed=none
    if [ -n "$ko" ]; then
      if [ -n "$(modinfo -F sig_id "$ko" 2>/dev/null)" ]; then signed=yes; else signed=no; fi
    fi
    # the image's age tells whether it was built after pvegpu's nouveau blacklist
    initrd=none
    [ -e "/boot/initrd.img-$v" ] && initrd=$(stat -c %Y "/boot/initrd.img-$v")
    printf '%s vmlinuz=%s headers=%s nvidia=%s signed=%s initrd=%s\n' "$v" \
      "$( [ -e "/boot/vmlinuz-$v" ] && echo yes || echo no)" \
      "$( [ -e "/lib/modules/$v/build/Makefile" ] && echo yes || echo no)" \
      "${ko:-none}" "$signed" "$initrd"
  done
}

secure_boot_efivar() {
  f=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  if [ -e "$f" ]; then od -An -tu1 "$f"; elif [ -d /sys/firmware/efi ]; then echo uefi-no-variable; else echo bios; fi
}

mok_keys() {
  for k in /var/lib/dkms/mok.pub /var/lib/shim-signed/mok/MOK.der; do
    [ -e "$k" ] || continue
    echo "key $k: $(mokutil --test-key "$k" 2>&1 | head -n1)"
  done
}

# What an interrupted dpkg run left: its journal (apt refuses to install until `dpkg
# --configure -a` replays it) and the packages `dpkg --audit` finds unpacked but not configured.
dpkg_audit() {
  for f in /var/lib/dpkg/updates/*; do
    case ${f##*/} in *[!0-9]*) continue ;; esac
    [ -e "$f" ] && echo "journal $f"
  done
  dpkg --audit
  return 0
}

packages() {
  dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' \
    'nvidia-*' 'libnvidia-*' 'cuda-*' 'libcuda*' 'linux-image-*' 'linux-headers-*' \
    'linux-modules-nvidia-*' 'firmware-nvidia-*' firmware-misc-nonfree dkms mokutil docker.io docker-ce \
    'docker-compose*' podman curl gpg ca-certificates 2>/dev/null
  return 0
}

cdi_specs() {
  for f in /etc/cdi/*.yaml /etc/cdi/*.json /var/run/cdi/*.yaml /var/run/cdi/*.json; do
    [ -e "$f" ] || continue
    echo "### pvegpu cdi $f mtime=$(stat -c %Y "$f")"
    # the spec is long; its kind and the versioned driver libraries say what it was made for
    grep -E '^[[:space:]]*(cdiVersion|kind):|libcuda\.so\.[0-9]|libnvidia-ml\.so\.[0-9]' "$f" | head -n 20
    echo "### pvegpu exit 0"
  done
}

containers() { # runtime
  "$1" ps -a --format '{{.Names}}\t{{.Image}}\t{{.State}}\t{{.Status}}'
}

# When the running service became active, and whether its unit changed on disk since systemd
# read it: a unit or CDI spec written after that is not in effect (--timestamp=unix needs
# systemd 248; an older one tells the reload flag only).
triton_since() {
  systemctl show -p NeedDaemonReload -p ActiveEnterTimestamp --timestamp=unix pvegpu-triton.service 2>/dev/null \
    || systemctl show -p NeedDaemonReload pvegpu-triton.service
}

model_repository() {
  repo=$PVEGPU_MODEL_REPOSITORY
  [ -n "$repo" ] || return 0
  echo "### pvegpu model-repository $repo"
  if [ -d "$repo" ]; then
    find "$repo" -mindepth 3 -maxdepth 3 -type f -name '*.onnx' -printf '%s %p\n' | sort -k2
    echo "### pvegpu exit 0"
  else
    echo "no such directory"
    echo "### pvegpu exit 2"
  fi
}

echo "### pvegpu facts 1"
section hostname -- hostname
section os-release -- cat /etc/os-release
section uname -- uname -r
section boot-id -- cat /proc/sys/kernel/random/boot_id
section guest-kernels -- kernels
section secure-boot -- mokutil --sb-state
section secure-boot-efivar -- secure_boot_efivar
section mok-keys -- mok_keys
section lspci -- lspci -nnk -D -d 10de:
section proc-modules -- cat /proc/modules
section dkms -- dkms status
section nvidia-smi -- nvidia-smi --query-gpu=pci.bus_id,uuid,name,driver_version,compute_cap --format=csv,noheader
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
         /etc/docker/daemon.json /etc/modprobe.d/*.conf /etc/pvegpu/* /etc/systemd/system/pvegpu-*; do
  dump_file "$f"
done
section keyrings -- ls -1 /usr/share/keyrings /etc/apt/keyrings
section apt-holds -- apt-mark showhold
section packages -- packages
section dpkg-audit -- dpkg_audit
section docker -- docker --version
# the runtimes the running daemon knows: /etc/docker/daemon.json takes effect only at its start
section docker-runtimes -- docker info --format '{{json .Runtimes}}'
section podman -- podman --version
section nvidia-ctk -- nvidia-ctk --version
cdi_specs
section docker-containers -- containers docker
section podman-containers -- containers podman
section triton-service -- systemctl is-active pvegpu-triton.service
section triton-service-since -- triton_since
model_repository
