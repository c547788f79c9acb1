#!/usr/bin/env bash
# Prepares a machine to develop and test the worker: the project's .venv with the compiled
# fast paths (native/, built with cargo), the PostgreSQL server binaries, a JDK with Maven,
# and the cached Kafka jars. Idempotent: every step is
# skipped when already done, so it is safe to re-run (CI runs it on every job).
#
#   bash scripts/setup.sh
#
# apt is only used when something is missing, and then needs root (or sudo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-${ROOT}/.venv}"
PYTHON="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*"; }

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || { log "ERROR: apt-get not found; install $* by hand"; exit 1; }
    if [[ "${APT_UPDATED}" -eq 0 ]]; then
        log "apt-get update"
        ${SUDO} apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq "$@" >/dev/null
}

have_initdb() {
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        return 0
    fi
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

# --- Python virtualenv ------------------------------------------------------------------------
if [[ ! -x "${VENV}/bin/python" ]]; then
    log "creating ${VENV}"
    "${PYTHON}" -m venv "${VENV}"
fi
log "installing the project into ${VENV} (editable, [dev,fast])"
"${VENV}/bin/python" -m pip install -q -e "${ROOT}[dev,fast]"

# --- The compiled fast paths (native/, a Rust extension; optional at run time) ----------------
# Rebuilt only when its sources change (the hash of native/'s files, kept in the package).
# rustup's cargo first: a distribution's may be too old for Cargo.lock (needs cargo >= 1.78).
if [[ -z "${CARGO:-}" ]]; then
    CARGO="${HOME}/.cargo/bin/cargo"
    [[ -x "${CARGO}" ]] || CARGO="$(command -v cargo || true)"
fi
if [[ -z "${CARGO}" ]]; then
    log "ERROR: cargo not found. Install a Rust toolchain (rustup, Rust >= 1.78), or set CARGO;"
    log "       without one the worker still runs, on its pure Python paths (docs/benchmark.md)"
    exit 1
fi
native_hash="$(cd "${ROOT}/native" && find Cargo.toml Cargo.lock pyproject.toml ./*.pyi src -type f \
    -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
# The hash is kept inside the installed package, so any other install of it (pip install
# ./native by hand) drops the mark and the next run rebuilds.
native_mark() {
    "${VENV}/bin/python" -c 'import os, receipts_native; print(os.path.join(os.path.dirname(receipts_native.__file__), ".source-hash"))' 2>/dev/null
}
mark="$(native_mark || true)"
if [[ -n "${mark}" && "$(cat "${mark}" 2>/dev/null)" == "${native_hash}" ]]; then
    log "receipts_native up to date (${native_hash})"
else
    log "building receipts_native with $("${CARGO}" --version) (≈ 30 s)"
    PATH="$(dirname "${CARGO}"):${PATH}" "${VENV}/bin/python" -m pip install -q "${ROOT}/native"
    echo "${native_hash}" > "$(native_mark)"
fi

# --- PostgreSQL server binaries ---------------------------------------------------------------
if have_initdb; then
    log "PostgreSQL server binaries present"
else
    apt_install postgresql
    # The Debian package creates and starts a system cluster; the tests never use it, but
    # it is left alone rather than stopped because other software may rely on it.
fi

# --- JDK and Maven (Kafka runs from Maven Central jars) ---------------------------------------
missing=()
command -v java >/dev/null || missing+=(default-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_install "${missing[@]}"
fi
log "java: $(java -version 2>&1 | head -n 1)"
log "maven: $(mvn -v 2>/dev/null | head -n 1 | sed 's/\x1b\[[0-9;]*m//g')"

# --- Kafka jars -------------------------------------------------------------------------------
log "fetching Kafka jars (cached after the first run)"
cd "${ROOT}"
"${VENV}/bin/python" -m devstack fetch

log "done. Start a local stack with: ${VENV}/bin/python -m devstack up"
