#!/bin/sh
# Stand-ins for the guest's package tools, toolkit and GPU commands, for the guest sweep
# (tests/guest_interrupted.rs). Installed in the scratch guest's /usr/local/sbin under each
# command's name; what they change lives where the real ones keep it (/etc, /boot,
# /lib/modules, /usr/share/keyrings) and in a small dpkg database under /var/lib/pvegpu-test
# (status: "<status letters> <package> <version>", holds, the package lists, the running
# Docker daemon's configuration). As dpkg and apt do: packages are unpacked, then configured;
# a run killed in between leaves them unpacked (iU) with dpkg's journal in
# /var/lib/dpkg/updates, and the next apt-get install stops with apt's message until
# `dpkg --configure -a`. PVEGPU_TEST_DIE_MIDWAY=1 kills
# the step's whole process group halfway through the command's work.
set -eu
db=/var/lib/pvegpu-test
K=6.1.0-22-amd64
me=${0##*/}

midway() { if [ -n "${PVEGPU_TEST_DIE_MIDWAY:-}" ]; then kill -KILL 0; sleep 60; fi; }
has() { grep -q "^ii $1 " "$db/status"; }
absent() { echo "sh: 1: $me: not found" >&2; exit 127; }
set_status() { # letters package version
  { grep -v " $2 " "$db/status" || true; echo "$1 $2 $3"; } | sort -k2 > "$db/status.new"
  mv "$db/status.new" "$db/status"
}
# the Docker daemon reads daemon.json when it starts: what it read is what it runs with
start_docker() { cat /etc/docker/daemon.json > "$db/docker.running" 2>/dev/null || echo '{}' > "$db/docker.running"; }

version_of() {
  case $1 in
    linux-headers-$K|linux-headers-amd64) echo 6.1.94-1 ;;
    nvidia-driver|nvidia-smi|nvidia-kernel-dkms|libcuda1|libnvidia-ml1) echo 535.261.03-1 ;;
    firmware-misc-nonfree) echo 20230210-5 ;;
    dkms) echo 3.0.10-8+deb12u1 ;;
    docker.io) echo 20.10.24+dfsg1-1+deb12u1 ;;
    nvidia-container-toolkit|nvidia-container-toolkit-base|libnvidia-container-tools|libnvidia-container1) echo 1.19.0-1 ;;
    *) return 1 ;;
  esac
}
depends() {
  case $1 in
    linux-headers-amd64) echo linux-headers-$K ;;
    nvidia-driver) echo nvidia-kernel-dkms libcuda1 libnvidia-ml1 ;;
    nvidia-kernel-dkms) echo dkms ;;
    nvidia-container-toolkit) echo nvidia-container-toolkit-base libnvidia-container-tools ;;
    libnvidia-container-tools) echo libnvidia-container1 ;;
  esac
}
# the package lists (as of the last apt-get update) carry it
listed() {
  case $1 in
    nvidia-driver|nvidia-smi|nvidia-kernel-dkms|libcuda1|libnvidia-ml1)
      grep -Eq '(^|[[:space:]])non-free([[:space:]]|$)' "$db/lists" ;;
    *container*) grep -q 'nvidia.github.io/libnvidia-container' "$db/lists" ;;
    *) true ;;
  esac
}
build_module() {
  if [ -e "/lib/modules/$K/build/Makefile" ] && has nvidia-kernel-dkms; then
    mkdir -p "/lib/modules/$K/updates/dkms"
    echo "nvidia-current 535.261.03 for $K" > "/lib/modules/$K/updates/dkms/nvidia-current.ko"
  fi
}
configure() { # package: what its maintainer scripts do
  set_status ii "$1" "$(version_of "$1")"
  case $1 in
    linux-headers-$K) mkdir -p "/lib/modules/$K/build"; echo "# headers $K" > "/lib/modules/$K/build/Makefile"; build_module ;;
    nvidia-kernel-dkms) build_module ;;
    nvidia-driver) printf '%s\n' '# You need to run "update-initramfs -u" after editing this file.' '' '# see #580894' 'blacklist nouveau' > /etc/modprobe.d/nvidia-blacklists-nouveau.conf ;;
    docker.io) start_docker ;;
  esac
}
configure_pending() {
  for p in $(awk '$1 == "iU" {print $2}' "$db/status"); do configure "$p"; done
  rm -f /var/lib/dpkg/updates/0000
}

apt_get() {
  case $1 in
    update)
      for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        for key in $(grep -o 'signed-by=[^] ]*' "$f" | cut -d= -f2); do
          [ -e "$key" ] || { echo "E: The repository listed in $f is not signed (no $key)." >&2; exit 100; }
        done
        cat "$f"
      done > "$db/lists.new"
      midway
      mv "$db/lists.new" "$db/lists"
      echo "Reading package lists... Done" ;;
    install)
      shift
      if [ -e /var/lib/dpkg/updates/0000 ]; then
        echo "E: dpkg was interrupted, you must manually run 'dpkg --configure -a' to correct the problem." >&2
        exit 100
      fi
      want=
      for a in "$@"; do
        case $a in -*) continue ;; esac
        p=${a%%=*}
        if ! version_of "$p" >/dev/null || ! listed "$p"; then echo "E: Unable to locate package $p" >&2; exit 100; fi
        want="$want $p $(depends "$p") $(for d in $(depends "$p"); do depends "$d"; done)"
      done
      todo=
      for p in $want; do has "$p" || case " $todo " in *" $p "*) ;; *) todo="$todo $p" ;; esac; done
      [ -n "$todo" ] || { echo "0 upgraded, 0 newly installed"; exit 0; }
      mkdir -p /var/lib/dpkg/updates; echo "$todo" > /var/lib/dpkg/updates/0000
      for p in $todo; do set_status iU "$p" "$(version_of "$p")"; echo "Unpacking $p ..."; done
      midway
      for p in $todo; do echo "Setting up $p ..."; done
      configure_pending ;;
    *) echo "apt-get stand-in: $*: not modelled" >&2; exit 100 ;;
  esac
}

case $me in
  apt-get) apt_get "$@" ;;
  dpkg)
    case " $* " in
      *" --configure -a "*) configure_pending ;;
      " --audit ")
        if grep -q '^iU ' "$db/status"; then
          echo "The following packages have been unpacked but not yet configured."
          echo "They must be configured using dpkg --configure or the configure"
          echo "menu option in dselect for them to work:"
          awk '$1 == "iU" {print " " $2}' "$db/status"
        fi ;;
      *) exec /usr/bin/dpkg "$@" ;;
    esac ;;
  dpkg-query)
    fmt=; pats=
    for a in "$@"; do case $a in -W) ;; -f=*) fmt=${a#-f=} ;; *) pats="$pats $a" ;; esac; done
    found=
    set -f
    while read -r st p v; do
      for pat in $pats; do
        case $p in $pat)
          found=1
          case $fmt in *Version*) printf '%s  %s %s\n' "$st" "$p" "$v" ;; *) printf '%s  %s\n' "$st" "$p" ;; esac
          break ;;
        esac
      done
    done < "$db/status"
    [ -n "$found" ] || { echo "dpkg-query: no packages found matching$pats" >&2; exit 1; } ;;
  apt-mark)
    case $1 in
      showhold) sort "$db/holds" ;;
      hold)
        shift; n=0
        for p in "$@"; do
          grep -qx "$p" "$db/holds" || echo "$p" >> "$db/holds"
          echo "$p set on hold."
          n=$((n+1)); if [ $n -eq 1 ]; then midway; fi
        done ;;
      *) exit 1 ;;
    esac ;;
  curl)
    out=; url=
    while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift ;; -*) ;; *) url=$1 ;; esac; shift; done
    printf '%s\n' '-----BEGIN PGP PUBLIC KEY BLOCK-----' > "$out"
    midway
    printf '%s\n' "key of $url" '-----END PGP PUBLIC KEY BLOCK-----' >> "$out" ;;
  gpg)
    out=; in=
    while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift ;; -*) ;; *) in=$1 ;; esac; shift; done
    { echo "dearmored"; cat "$in"; } > "$out" ;;
  update-initramfs)
    for k in $(ls /lib/modules); do
      {
        for f in /etc/modprobe.d/*.conf; do [ -e "$f" ] && echo "etc/modprobe.d/${f##*/}"; done
        [ -e "/lib/modules/$k/updates/dkms/nvidia-current.ko" ] && echo "usr/lib/modules/$k/updates/dkms/nvidia-current.ko"
        true
      } > "/boot/initrd.img-$k.new"
      midway
      mv "/boot/initrd.img-$k.new" "/boot/initrd.img-$k"
      echo "update-initramfs: Generating /boot/initrd.img-$k"
    done ;;
  nvidia-ctk)
    has nvidia-container-toolkit-base || absent
    case $1 in
      --version) echo "NVIDIA Container Toolkit CLI version 1.19.0"; echo "commit: 0000000000000000000000000000000000000000" ;;
      runtime)
        mkdir -p /etc/docker
        printf '%s\n' '{' '    "runtimes": {' '        "nvidia": {' '            "args": [],' '            "path": "nvidia-container-runtime"' '        }' '    }' '}' > /etc/docker/daemon.json
        echo "INFO Wrote updated config to /etc/docker/daemon.json"
        midway ;;
      *) exit 1 ;;
    esac ;;
  systemctl)
    case "$*" in
      "restart docker") has docker.io || { echo "Unit docker.service not found." >&2; exit 5; }; start_docker ;;
      "is-active pvegpu-triton.service") echo inactive; exit 3 ;;
      show*) echo "NeedDaemonReload=no"; echo "ActiveEnterTimestamp=" ;;
      *) ;;
    esac ;;
  docker)
    has docker.io || absent
    case $1 in
      --version) echo "Docker version 20.10.24+dfsg1, build 297e128" ;;
      info)
        if grep -q nvidia-container-runtime "$db/docker.running"; then
          echo '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}'
        else
          echo '{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}}'
        fi ;;
      *) ;;
    esac ;;
  nvidia-smi)
    has nvidia-smi || absent
    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    exit 9 ;;
  dkms)
    has dkms || absent
    if [ -e "/lib/modules/$K/updates/dkms/nvidia-current.ko" ]; then echo "nvidia-current/535.261.03, $K, x86_64: installed"; fi ;;
  podman|mokutil) absent ;;
  *) echo "stand-in $me: unknown" >&2; exit 1 ;;
esac
