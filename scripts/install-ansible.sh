#!/usr/bin/env bash
# Real ansible-core from PyPI for tests/ansible_collection.rs, every file pinned by its SHA-256:
#  - DIR/venv: ansible-core 2.19.14 (the newest release whose controller runs on Debian 12's
#    Python 3.11) and its dependencies, installed with --require-hashes;
#  - DIR/wheels and DIR/home: what `ansible-test sanity` installs into its own virtual
#    environments (the tool versions ansible-test 2.19.14 pins for validate-modules, pylint,
#    pep8, yamllint, ansible-doc, import and runtime-metadata), downloaded here with
#    --require-hashes and installed from that folder only: DIR/home is the HOME the test gives
#    ansible-test, its pip.conf allows no index, and its pip bootstrap script (which
#    ansible-test would fetch from a host outside the package registries) is a stand-in that
#    runs pip 24.2 from its hash-checked wheel. The environments are made here
#    (`ansible-test sanity --prime-venvs`), so the test itself downloads nothing.
# Usage: bash scripts/install-ansible.sh [DIR]   (default .cache/ansible; about 25 s and 14 MB
# of downloads from scratch, 1 s when DIR is already right). Then PVEGPU_ANSIBLE=DIR.
# Needs python3 with venv (installed from Debian where missing); the hashes are of the wheels
# for CPython 3.11 on x86_64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/ansible}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
started=$(date +%s)

if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

# Recorded when this script was written (2026-12-03) from the files PyPI served.
CORE='ansible-core==2.19.14 --hash=sha256:d518d0e96fa75bedfe9b0a96d5b158aa712d092961824c115140c8677b88ff06
cffi==2.1.1 --hash=sha256:34e261f78cb6ceaaa36f42f2613f4380d94d9c759a9c73c769ee6e0247364632
cryptography==50.0.2 --hash=sha256:9dab55f57c74c3cad24c323bacbbd04be4705ba6eb0d92e920b1fc4837ed5079
jinja2==3.1.6 --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67
markupsafe==3.0.4 --hash=sha256:6da83a088f8ef93b2d483a8232a4dbf4d69d3d8496b568a03c56becac43e1808
packaging==26.4 --hash=sha256:81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2
pycparser==3.12 --hash=sha256:a076f3f489b39b43ed13563a1dafe42447445bec2e294154ec5c57fcdda4c85e
pyyaml==6.0.4 --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee
resolvelib==1.2.1 --hash=sha256:fb06b66c8da04172d9e72a21d7d06186d8919e32ae5ab5cdf5b9d920be805ac2'
# ansible_test/_data/requirements/sanity.*.txt of ansible-core 2.19.14, and pip 24.2 (the pip
# its sanity environments start from)
SANITY='pip==24.2 --hash=sha256:2cd581cf58ab7fcfca4ce8efa6dcacd0de5bf8d0a3eb9ec927e07405f4d9e2a2
PyYAML==6.0.2 --hash=sha256:3ad2a3decf9aaba3d29c8f537ac4b243e36bef957511b4766cb0057d32b0be85
MarkupSafe==3.0.2 --hash=sha256:a123e330ef0853c6e822384873bef7507557d8e4a082961e1defa947aa59ba84
Jinja2==3.1.6 --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67
packaging==25.0 --hash=sha256:29572ef2b1f17581046b3a2227d5c611fb25ec70ca1ba8554b24b0e69331a484
antsibull-docs-parser==1.0.0 --hash=sha256:397978554bfd58709f2aaa81946d1e31c71d674c411a8a9513d7181843eb1f63
voluptuous==0.15.2 --hash=sha256:016348bc7788a9af9520b1764ebd4de0df41fe2138ebe9e06fa036bf86a65566
pylint==3.3.7 --hash=sha256:43860aafefce92fca4cf6b61fe199cdc5ae54ea28f9bf4cd49de267b5195803d
astroid==3.3.10 --hash=sha256:104fb9cb9b27ea95e847a94c003be03a9e039334a8ebca5ee27dafaf5c5711eb
dill==0.4.0 --hash=sha256:44f54bf6412c2c8464c14e8243eb163690a9800dbe2c367330883b19c7561049
isort==6.0.1 --hash=sha256:2dc5d7f65c9678d94c88dfc29161a320eec67328bc97aad576874cb4be1e9615
mccabe==0.7.0 --hash=sha256:6c2d30ab6be0e4a46919781807b4f0d834ebdd6c6e3dca0bda5a15f863427b6e
platformdirs==4.3.8 --hash=sha256:ff7059bb7eb1179e2685604f4aaf157cfd9535242bd23742eadc3c13542139b4
tomlkit==0.13.2 --hash=sha256:7a974427f6e119197f670fbbbeae7bef749a6c14e793db934baefc1b5f03efde
pycodestyle==2.13.0 --hash=sha256:35863c5974a271c7a726ed228a14a4f6daf49df369d8c50cd9a6f58a5e143ba9
yamllint==1.37.1 --hash=sha256:364f0d79e81409f591e323725e6a9f4504c8699ddf2d7263d8d2b539cd66a583
pathspec==0.12.1 --hash=sha256:a0d503e138a4c123b27490a4f7beda6a01c6f288df0e4a8b79c7eb0dc7b4cc08'
# the sanity tests the collection runs; each of these with requirements gets its environment
SANITY_TESTS=(ansible-doc import pep8 pylint runtime-metadata validate-modules yamllint)

pip_quiet=(-q --disable-pip-version-check)
printf '%s\n' "$CORE" > "$DIR/core.txt"
printf '%s\n' "$SANITY" > "$DIR/sanity.txt"
stamp=$( (echo "$DIR"; cat "$DIR/core.txt" "$DIR/sanity.txt" "$0") | sha256sum | cut -c1-16)
if [ "$(cat "$DIR/done" 2>/dev/null)" = "$stamp" ]; then
  echo "[ansible] ansible-core 2.19.14 and the sanity environments in $DIR are current: $(( $(date +%s) - started )) s"
  exit 0
fi
rm -rf "$DIR/venv" "$DIR/wheels" "$DIR/home" "$DIR/done"

"$PY" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install "${pip_quiet[@]}" --no-deps --only-binary=:all: \
  --require-hashes -r "$DIR/core.txt"
"$DIR/venv/bin/python" -m pip check >/dev/null
"$DIR/venv/bin/python" -m pip download "${pip_quiet[@]}" --no-deps --only-binary=:all: \
  --require-hashes -r "$DIR/sanity.txt" -d "$DIR/wheels"

# ansible-test's HOME: pip finds packages in DIR/wheels only
mkdir -p "$DIR/home/.config/pip" "$DIR/home/.ansible/test/cache"
printf '[global]\nno-index = true\nfind-links = %s\n' "$DIR/wheels" > "$DIR/home/.config/pip/pip.conf"
cat > "$DIR/home/.ansible/test/cache/get_pip_24_2.py" <<PY
"""Stands in for pip's get-pip.py, which ansible-test downloads from a host outside the package
registries: it does the same (pip 24.2 into the interpreter that runs it, from its wheel) with
the wheel that scripts/install-ansible.sh checked against its SHA-256."""
import sys

WHEEL = "$DIR/wheels/pip-24.2-py3-none-any.whl"
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--no-index", "--find-links", "$DIR/wheels"] + args))
PY

# ansible-test works in a collection's folder: prime the environments from a scratch copy
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/ansible_collections/pvegpu"
cp -r ansible/ansible_collections/pvegpu/proxmox "$scratch/ansible_collections/pvegpu/"
tests=()
for t in "${SANITY_TESTS[@]}"; do tests+=(--test "$t"); done
(cd "$scratch/ansible_collections/pvegpu/proxmox" &&
  env -i PATH="$DIR/venv/bin:/usr/bin:/bin" HOME="$DIR/home" \
    "$DIR/venv/bin/ansible-test" sanity --prime-venvs --python 3.11 "${tests[@]}" >"$DIR/prime.log" 2>&1) ||
  { cat "$DIR/prime.log" >&2; exit 1; }

version=$(LC_ALL=C.UTF-8 "$DIR/venv/bin/ansible-playbook" --version)
grep -q '^ansible-playbook \[core 2.19.14\]' <<<"$version" || { echo "$version" >&2; exit 1; }
echo "$stamp" > "$DIR/done"
echo "[ansible] ansible-core 2.19.14 (python $("$DIR/venv/bin/python" -c 'import sys; print(sys.version.split()[0])')) and its sanity environments in $DIR: $(( $(date +%s) - started )) s"
