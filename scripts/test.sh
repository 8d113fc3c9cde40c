#!/usr/bin/env bash
# Runs every test of Roost: lints, unit/scenario/black-box/differential tests
# (cargo), then the interop tests that drive Roost with kazoo, zkCli and the C
# client. Installs what the tests need first (kazoo and pytest from PyPI; the
# Apache ZooKeeper Debian packages when running as root with apt).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Pinned, so every run tests against the same kazoo, pytest and maturin.
KAZOO_VERSION=2.11.0
PYTEST_VERSION=9.2.0
MATURIN_VERSION=1.16.0

ensure_python_packages() {
  if ! python3 -c "import kazoo.version, pytest, sys; sys.exit(kazoo.version.__version__ != '$KAZOO_VERSION' or pytest.__version__ != '$PYTEST_VERSION')" 2>/dev/null; then
    log "installing kazoo $KAZOO_VERSION and pytest $PYTEST_VERSION from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "kazoo==$KAZOO_VERSION" "pytest==$PYTEST_VERSION"
  fi
}

ensure_zookeeper() {
  if [[ -f /usr/share/java/zookeeper.jar && -x /usr/lib/zookeeper/bin/cli_mt ]]; then
    return
  fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing Apache ZooKeeper (Debian packages zookeeper, zookeeper-bin)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zookeeper zookeeper-bin >/dev/null
  else
    echo "Apache ZooKeeper is not installed and cannot be installed here (needs root + apt)." >&2
    echo "Install the zookeeper and zookeeper-bin packages, or set ROOST_SKIP_ZK=1 to skip" >&2
    echo "the comparisons against it." >&2
    [[ -n ${ROOST_SKIP_ZK:-} ]] || exit 1
  fi
}

ensure_python_packages
ensure_zookeeper

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "cargo build --release"
cargo build --release --workspace --quiet

log "cargo test --release"
cargo test --release --workspace --quiet

log "interop tests (kazoo, zkCli, cli_mt) against a standalone server"
ROOST_BIN="$PWD/target/release/roost" python3 -m pytest -q tests/interop

log "interop tests against a 3-server ensemble"
ROOST_BIN="$PWD/target/release/roost" ROOST_INTEROP_SERVERS=3 python3 -m pytest -q tests/interop

log "the Python wheel (maturin) in a fresh virtualenv: its pytest plugin and the dataset-lock example"
wheel_dir=$(mktemp -d)
venv_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir" "$venv_dir"' EXIT
if [[ $(python3 -m maturin --version 2>/dev/null) != "maturin $MATURIN_VERSION" ]]; then
  python3 -m pip install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION"
fi
(cd packaging/python && python3 -m maturin build --release --quiet --out "$wheel_dir")
if ! python3 -m venv "$venv_dir" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check virtualenv
  python3 -m virtualenv --quiet "$venv_dir"
fi
"$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
  "$wheel_dir"/roost_zookeeper-*.whl "kazoo==$KAZOO_VERSION" "pytest==$PYTEST_VERSION"
env -u ROOST_BIN DATASET_LOCK_BIN="$PWD/target/release/dataset-lock" \
  "$venv_dir/bin/python" -m pytest -q -p no:cacheprovider tests/wheel

log "all tests passed"
