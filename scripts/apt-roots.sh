#!/usr/bin/env bash
# Package lists of each release the guest phase supports, in apt roots of their own (no
# installed system: an empty dpkg status), so `apt-get install --simulate` can resolve the
# exact package sets pvegpu plans against the real archives. Sources as a fresh cloud image
# of each release has them, with the components pvegpu adds (Debian's contrib, non-free,
# non-free-firmware). Ubuntu's archive key comes from Debian's own `ubuntu-keyring` package,
# so both chains of trust start at this machine's debian-archive-keyring.
#
#   scripts/apt-roots.sh [DIR]     (default .cache/apt; about 400 MB; re-run to refresh)
#   PVEGPU_APT_ROOTS=DIR cargo test --test guest_archives
set -euo pipefail
out=$(realpath -m "${1:-.cache/apt}")
debian_key=/usr/share/keyrings/debian-archive-keyring.gpg
debian_components="main contrib non-free non-free-firmware"
ubuntu_components="main restricted universe multiverse"

# apt with only the root's configuration: APT_CONFIG is read before any other file, and it
# moves every other path (apt.conf.d included) into the root.
apt_in() {
    local root=$1
    shift
    APT_CONFIG="$root/apt.conf" apt-get -q "$@"
}

make_root() {
    local name=$1
    shift
    local root=$out/$name
    local started=$SECONDS
    mkdir -p "$root"/etc/apt/{sources.list.d,preferences.d,apt.conf.d,trusted.gpg.d} \
        "$root"/var/lib/apt/lists/partial "$root"/var/cache/apt/archives/partial "$root"/var/lib/dpkg
    : >"$root/var/lib/dpkg/status"
    cat >"$root/apt.conf" <<CONF
Dir "$root/";
Dir::State::status "$root/var/lib/dpkg/status";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
Debug::NoLocking "true";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order { "gz"; };
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
CONF
    printf '%s\n' "$@" >"$root/etc/apt/sources.list"
    apt_in "$root" update >"$root/update.log" 2>&1 || { cat "$root/update.log"; exit 1; }
    echo "[apt-roots] $name: $(ls "$root"/var/lib/apt/lists | grep -c _Packages) package lists in $((SECONDS - started)) s, $(du -sh "$root" | cut -f1)"
}

deb() { echo "deb [signed-by=$2] $1 $3 $4"; }

make_root bookworm \
    "$(deb http://deb.debian.org/debian $debian_key bookworm "$debian_components")" \
    "$(deb http://deb.debian.org/debian $debian_key bookworm-updates "$debian_components")" \
    "$(deb http://deb.debian.org/debian-security $debian_key bookworm-security "$debian_components")"
make_root trixie \
    "$(deb http://deb.debian.org/debian $debian_key trixie "$debian_components")" \
    "$(deb http://deb.debian.org/debian $debian_key trixie-updates "$debian_components")" \
    "$(deb http://deb.debian.org/debian-security $debian_key trixie-security "$debian_components")"

# Ubuntu's key, from Debian's package of it.
keys=$out/ubuntu-keyring
if [ ! -s "$keys/ubuntu-archive-keyring.gpg" ]; then
    rm -rf "$keys" && mkdir -p "$keys/deb"
    (cd "$keys/deb" && apt_in "$out/trixie" download ubuntu-keyring >/dev/null)
    dpkg-deb -x "$keys"/deb/ubuntu-keyring_*.deb "$keys/x"
    cp "$keys/x/usr/share/keyrings/ubuntu-archive-keyring.gpg" "$keys/"
fi
ubuntu_key=$keys/ubuntu-archive-keyring.gpg
for release in jammy noble; do
    make_root $release \
        "$(deb http://archive.ubuntu.com/ubuntu $ubuntu_key $release "$ubuntu_components")" \
        "$(deb http://archive.ubuntu.com/ubuntu $ubuntu_key $release-updates "$ubuntu_components")" \
        "$(deb http://security.ubuntu.com/ubuntu $ubuntu_key $release-security "$ubuntu_components")"
done
