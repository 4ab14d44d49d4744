#!/usr/bin/env bash
# x.sh: the project's commands.
#   ./x.sh run   builds everything (frontend included) and serves the console in sandbox mode
#                at http://127.0.0.1:8080 (extra arguments go to `imds-console serve`).
#   ./x.sh release  builds target/release/imds-console with the frontend inside (one file to ship).
#   ./x.sh test  runs every test: unit, sandbox-through-SDK, HTTP API and headless-browser suites.
#   ./x.sh image builds the container image from the Dockerfile (buildah, no Docker engine needed) as
#                localhost/imds-console:latest, then runs it with podman and tests it.
#   ./x.sh test --repeat N   runs the end-to-end suites (e2e and the backend's process tests) N times
#                and names every failed test of every round; exits non-zero if any round failed.
# Each installs what it needs on a fresh machine (wasm32 target, the pinned wasm-bindgen CLI,
# Debian's chromium and systemd, boto3, openapi-spec-validator and kubernetes-validate for the tests that use
# them; buildah, podman, runc and mmdebstrap for the image) and skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"

# Must equal the wasm-bindgen crate version pinned in frontend/Cargo.toml.
WASM_BINDGEN_VERSION=0.2.130

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The frontend's WASM builds with a pinned nightly toolchain, for four size options stable Rust lacks
# (BENCHMARKS.md: about 20 KB brotli off every page's first load): the standard library rebuilt with
# the app (-Zbuild-std), panics that abort without formatting a message (-Cpanic=immediate-abort), no
# file and line strings (-Zlocation-detail=none), and Debug formatting compiled out (-Zfmt-debug=none;
# nothing the console shows is Debug output). The server, the build tools and every test stay on stable.
FRONTEND_TOOLCHAIN=nightly-2026-05-20
FRONTEND_RUSTFLAGS="--cfg erase_components -Clink-args=--emit-relocs -Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none -Zfmt-debug=none"

ensure_wasm_tools() {
  # Stable's wasm32 target too, for `cargo clippy -p frontend --target wasm32-unknown-unknown`.
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    log "installing the wasm32 target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! rustup target list --toolchain "$FRONTEND_TOOLCHAIN" --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || ! rustup component list --toolchain "$FRONTEND_TOOLCHAIN" --installed | grep -q '^rust-src' \
    || ! rustup component list --toolchain "$FRONTEND_TOOLCHAIN" --installed | grep -q '^clippy'; then
    log "installing ${FRONTEND_TOOLCHAIN} for the frontend's WASM (about 30 s, once)"
    rustup toolchain install "$FRONTEND_TOOLCHAIN" --profile minimal --component rust-src,clippy \
      --target wasm32-unknown-unknown
  fi
  if ! wasm-bindgen --version 2>/dev/null | grep -q " ${WASM_BINDGEN_VERSION}\$"; then
    log "installing wasm-bindgen-cli ${WASM_BINDGEN_VERSION} (a few minutes, once)"
    # --locked can fail when the registry mirror holds back a very new transitive version.
    # Without CI's lint settings: they are for our crates, and would only rebuild the tool's.
    env -u RUSTC_WORKSPACE_WRAPPER -u RUSTFLAGS \
      cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}" --locked \
      || env -u RUSTC_WORKSPACE_WRAPPER -u RUSTFLAGS \
        cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}"
  fi
}

ensure_browser() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    log "installing Debian's chromium and chromium-driver for the browser tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  # systemd-analyze, for the test of the systemd unit (installed with the other Debian packages).
  if ! command -v systemd-analyze >/dev/null; then
    log "installing Debian's systemd for the systemd unit's test"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  fi
}

# boto3, for the test that reads the standalone sandbox back as the AWS CLI and Python scripts would;
# openapi-spec-validator, for the test that validates the console's OpenAPI document;
# kubernetes-validate (Kubernetes's schemas, offline), for the test of the sample manifests.
BOTO3_VERSION=1.43.11
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
KUBERNETES_VALIDATE_VERSION=1.37.0

# buildah builds the Dockerfile without a Docker engine (none runs on our machines); podman and runc run
# the image for its test; mmdebstrap makes the base images where no registry is reachable.
ensure_image_tools() {
  if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null \
    || ! command -v mmdebstrap >/dev/null; then
    log "installing buildah, podman, runc and mmdebstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc mmdebstrap uidmap >/dev/null
  fi
}

IMAGE=localhost/imds-console:latest

ensure_python_tools() {
  if ! python3 -c 'import boto3' 2>/dev/null; then
    log "installing boto3 ${BOTO3_VERSION} for the boto3 test"
    python3 -m pip install --quiet "boto3==${BOTO3_VERSION}"
  fi
  if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
    log "installing openapi-spec-validator ${OPENAPI_SPEC_VALIDATOR_VERSION} for the OpenAPI test"
    python3 -m pip install --quiet "openapi-spec-validator==${OPENAPI_SPEC_VALIDATOR_VERSION}"
  fi
  if ! command -v kubernetes-validate >/dev/null; then
    log "installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION} for the Kubernetes manifests' test"
    python3 -m pip install --quiet "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
  fi
}

# PostgreSQL for the store's tests and the replica tests: Debian's server (installed on these machines
# but stopped), a role that may create databases (each test makes its own), and the variable the
# suites read. Databases of earlier runs are dropped; when the suite ends, its databases are dropped
# and a server this script started is stopped cleanly, so that a machine image taken afterwards holds
# neither test data nor a cluster that must recover (a cluster left running, copied and started
# again, spent over a minute fsyncing 115 test databases and outlasted pg_ctl's 60 s wait).
TEST_POSTGRES_URL=postgres://imds_test:imds_test@127.0.0.1:5432/postgres
POSTGRES_CLUSTER=
POSTGRES_STARTED_HERE=

postgres_psql() { as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 "$@"; }

drop_test_databases() {
  postgres_psql -At -c \
    "SELECT 'DROP DATABASE ' || datname || ';' FROM pg_database WHERE datname LIKE 'imds\_test\_%'" \
    | postgres_psql >/dev/null
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then
    log "installing Debian's postgresql for the store's tests"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  POSTGRES_CLUSTER=$(pg_lsclusters --no-header | awk 'NR == 1 {print $1 " " $2}')
  if ! pg_lsclusters --no-header | awk 'NR == 1 {print $4}' | grep -qx online; then
    log "starting PostgreSQL ${POSTGRES_CLUSTER}"
    POSTGRES_STARTED_HERE=1
    # A cluster that was not shut down cleanly recovers first, which can take minutes on a slow
    # disk: wait up to 10 minutes rather than pg_ctl's default 60 s.
    # shellcheck disable=SC2086 # version and name, two words
    as_root pg_ctlcluster $POSTGRES_CLUSTER start -- -t 600
  fi
  postgres_psql <<'SQL'
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'imds_test') THEN
    CREATE ROLE imds_test LOGIN PASSWORD 'imds_test' CREATEDB;
  END IF;
END$$;
SQL
  drop_test_databases
}

# After the suite: its databases dropped, and the server stopped if this script started it.
tidy_postgres() {
  [ -n "$POSTGRES_CLUSTER" ] || return 0
  drop_test_databases || true
  if [ -n "$POSTGRES_STARTED_HERE" ]; then
    # shellcheck disable=SC2086 # version and name, two words
    as_root pg_ctlcluster $POSTGRES_CLUSTER stop -m fast || true
  fi
}

# The frontend builds in its own target directory, so that it can build while cargo builds the server
# in target/ (one cargo cannot wait on another's lock): the big SDK crates compile mostly on one core,
# and the other core does the WASM meanwhile.
WASM_TARGET_DIR=target/wasm

build_frontend() {
  ensure_wasm_tools
  log "building the frontend (wasm32, size-optimised, split at its lazy routes)"
  # --emit-relocs: the splitter follows the linker's relocations to tell each route's code apart.
  # erase_components: Leptos type-erases views, so each page's code is smaller (about 10 % here).
  # CI lints our crates with clippy-driver as their compiler: here, the nightly's own.
  local lint=${RUSTC_WORKSPACE_WRAPPER:-}
  [ -z "$lint" ] || lint=$(rustup which --toolchain "$FRONTEND_TOOLCHAIN" clippy-driver)
  RUSTC_WORKSPACE_WRAPPER="$lint" RUSTFLAGS="${RUSTFLAGS:-} $FRONTEND_RUSTFLAGS" \
    cargo "+$FRONTEND_TOOLCHAIN" build -Zbuild-std=std,panic_abort -p frontend \
    --target wasm32-unknown-unknown --profile wasm-release --target-dir "$WASM_TARGET_DIR"
  cargo build -p split-wasm --release --target-dir "$WASM_TARGET_DIR"
  rm -rf frontend/dist && mkdir -p frontend/dist/pkg
  "$WASM_TARGET_DIR/release/split-wasm" split "$WASM_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm" frontend/dist/pkg
  # The chunks link to the main module by its export names: keep them (lld's, unmangled).
  wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --keep-lld-exports --no-demangle --out-dir frontend/dist/pkg --out-name frontend frontend/dist/pkg/frontend_split.wasm
  rm frontend/dist/pkg/frontend_split.wasm
  cp frontend/index.html frontend/main.js frontend/style.css frontend/favicon.svg frontend/dist/
  fingerprint_assets frontend/dist || return 1
  # name.br and name.gz beside each asset, which the server sends as they are (after the hashes, so
  # the compressed files keep their originals' names).
  "$WASM_TARGET_DIR/release/split-wasm" precompress frontend/dist
}

# The build step's own tests run where it was built (the WASM target directory), beside the server's.
build_and_test_frontend() {
  build_frontend || return 1
  cargo test -q -p split-wasm --release --target-dir "$WASM_TARGET_DIR"
}

# The binary with the frontend inside, in the test build's profile, kept beside target/ for the process
# test that serves from it; the test build's own binary is left as it was. It is built for the same
# packages as the test build (not `-p backend`), so cargo unifies the same dependency features and
# only the server's own crate compiles again, instead of the SDK crates (measured: minutes).
build_one_file_binary() {
  log "building the one-file binary (the frontend inside)"
  cargo build --bins --features backend/embed-frontend
  cp target/debug/imds-console target/imds-console-embedded
  export IMDS_CONSOLE_EMBEDDED_BIN="$PWD/target/imds-console-embedded"
}

# Gives each asset a name that carries a hash of its content and rewrites the references, so the
# server can let browsers keep assets for a year and an upgrade is never served a stale WASM;
# index.html keeps its name and is revalidated on every load. The split WASM bundle (the main module,
# its JS, the route chunks and their loader, which name each other by relative paths) moves whole into
# `pkg-<hash of every file in it>/`; main.js, the stylesheet and the icon get `name-<hash>.ext`.
fingerprint_assets() {
  local dir=$1 name base ext hash
  hashed() {
    [ -f "$dir/$1" ] || { echo "x.sh: $dir/$1 is missing" >&2; return 1; }
    sha256sum "$dir/$1" | cut -c1-16
  }
  for name in frontend.js frontend_bg.wasm __wasm_split.js; do
    [ -f "$dir/pkg/$name" ] || { echo "x.sh: $dir/pkg/$name is missing" >&2; return 1; }
  done
  hash=$(cd "$dir/pkg" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
  mv "$dir/pkg" "$dir/pkg-$hash"
  sed -i "s#\"/frontend.js\"#\"/pkg-$hash/frontend.js\"#; s#\"/frontend_bg.wasm\"#\"/pkg-$hash/frontend_bg.wasm\"#" "$dir/main.js"
  grep -q "/pkg-$hash/frontend.js" "$dir/main.js" || { echo "x.sh: main.js does not name frontend.js" >&2; return 1; }
  for name in main.js style.css favicon.svg; do
    base=${name%.*} ext=${name##*.}
    hash=$(hashed "$name") || return 1
    mv "$dir/$name" "$dir/$base-$hash.$ext"
    sed -i "s#\"/$name\"#\"/$base-$hash.$ext\"#g" "$dir/index.html"
  done
}

# Runs "$@" in the background with its output prefixed; `wait_for` collects its exit status.
in_background() {
  local name=$1
  shift
  ( "$@" 2>&1 | sed -u "s/^/[$name] /"; exit "${PIPESTATUS[0]}" ) &
}

wait_for() {
  local pid=$1 what=$2
  if ! wait "$pid"; then
    echo "x.sh: $what failed" >&2
    exit 1
  fi
}

# Runs the end-to-end suites N times; prints each round's failed tests by name and a tally.
repeat_e2e() {
  local rounds=$1 round failed_rounds=0 out status
  shift
  log "building the end-to-end suites"
  cargo test -p e2e -p backend --test e2e --test process --no-run "$@"
  out=$(mktemp)
  for round in $(seq 1 "$rounds"); do
    local start=$SECONDS
    set +e
    cargo test -p e2e -p backend --test e2e --test process "$@" >"$out" 2>&1
    status=$?
    set -e
    if [ "$status" = 0 ]; then
      echo "round ${round}/${rounds}: passed ($((SECONDS - start)) s)"
    else
      failed_rounds=$((failed_rounds + 1))
      echo "round ${round}/${rounds}: FAILED ($((SECONDS - start)) s):"
      grep -E '^test .* \.\.\. FAILED$' "$out" | sed -E 's/^test (.*) \.\.\. FAILED$/    \1/' || true
      cp "$out" "target/repeat-round-${round}.log"
      echo "    (full output: target/repeat-round-${round}.log)"
    fi
  done
  rm -f "$out"
  echo "repeat: $((rounds - failed_rounds)) of ${rounds} rounds passed"
  [ "$failed_rounds" = 0 ]
}

case "${1:-}" in
  run)
    shift
    build_frontend
    log "building and starting the console (sandbox mode unless you pass --aws)"
    exec cargo run --release -p backend --bin imds-console -- serve --static-dir frontend/dist "$@"
    ;;
  release)
    shift
    build_frontend
    log "building the release binary, the frontend inside"
    cargo build --release --locked -p backend --bin imds-console --features embed-frontend
    echo "x.sh: target/release/imds-console is the whole console (no --static-dir needed)"
    ;;
  image)
    shift
    # Rootful: the test reads the volume's owner as the host sees it (rootless podman would map it).
    [ "$(id -u)" = 0 ] || { echo "x.sh image: run it as root (buildah and podman are used rootful)" >&2; exit 1; }
    ensure_image_tools
    log "the base images (pulled, or made from Debian's packages and rustup where no registry answers)"
    deploy/image/base-images.sh
    log "building ${IMAGE} from the Dockerfile (its build stage runs ./x.sh release: about 15 min on 2 cores)"
    # chroot isolation: the build's RUN steps need no container runtime, cgroups or network namespace.
    buildah bud --isolation chroot --pull=never --layers -t "$IMAGE" .
    buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
    log "testing the image: podman runs it as docker run would"
    IMDS_CONSOLE_IMAGE=$IMAGE cargo test -p backend --test process -- --ignored --exact \
      packaging::the_built_image_serves_the_console_as_its_user_and_keeps_its_store_in_the_volume
    ;;
  test)
    shift
    # The browser (apt), the frontend (wasm-bindgen CLI, WASM build) and the server's test build go
    # on at the same time; the tests start when all three are ready.
    in_background browser ensure_browser
    browser_pid=$!
    in_background python ensure_python_tools
    python_pid=$!
    in_background frontend build_and_test_frontend
    frontend_pid=$!
    # On any exit: let the background jobs finish (an orphaned frontend build would race the next
    # run's build in frontend/dist), then tidy PostgreSQL.
    trap 'wait; tidy_postgres' EXIT
    ensure_postgres
    export IMDS_CONSOLE_TEST_POSTGRES=$TEST_POSTGRES_URL
    # Debian's server speaks TLS with a certificate made for localhost: the TLS test trusts it as its CA.
    export IMDS_CONSOLE_TEST_POSTGRES_CA=/etc/ssl/certs/ssl-cert-snakeoil.pem
    if [ "${1:-}" != "--repeat" ]; then
      log "building the tests"
      # On a failed build, let the background jobs finish before exiting: an orphaned frontend build
      # would race the next run's build in frontend/dist.
      cargo test --no-run "$@" || { wait; exit 1; }
    fi
    wait_for "$browser_pid" "installing chromium"
    wait_for "$python_pid" "installing the Python test tools"
    wait_for "$frontend_pid" "building the frontend"
    build_one_file_binary
    if [ "${1:-}" = "--repeat" ]; then
      rounds="${2:?usage: ./x.sh test --repeat N [cargo test flags...]}"
      shift 2
      repeat_e2e "$rounds" "$@"
      exit $?
    fi
    log "running every test"
    # The default members are every crate but the frontend, whose logic is tested in `shared` and in
    # the browser suite (building Leptos natively would only cost minutes).
    out=$(mktemp)
    set +e
    cargo test --no-fail-fast "$@" 2>&1 | tee "$out"
    status=${PIPESTATUS[0]}
    if [ "$#" = 0 ]; then
      log "running the HTTP API suites again with every console's store in PostgreSQL"
      IMDS_CONSOLE_E2E_STORE=postgres cargo test -p e2e --test e2e --no-fail-fast -- \
        --skip browser:: --skip store:: --skip sandbox_sdk:: 2>&1 | tee -a "$out"
      [ "${PIPESTATUS[0]}" = 0 ] || status=1
    fi
    set -e
    passed=$(grep -Eo '[0-9]+ passed' "$out" | awk '{s+=$1} END {print s+0}')
    failed=$(grep -Eo '[0-9]+ failed' "$out" | awk '{s+=$1} END {print s+0}')
    rm -f "$out"
    echo
    echo "tests: ${passed} passed, ${failed} failed"
    exit "$status"
    ;;
  *)
    echo "usage: ./x.sh run [serve flags...] | ./x.sh release | ./x.sh image | ./x.sh test [cargo test flags...]" >&2
    exit 2
    ;;
esac
