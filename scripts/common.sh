# Shared by the scripts in this folder (sourced, not run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# Each step says how long the outermost script has run so far (minutes:seconds; the scripts it
# runs count from its start too), so that a CI log shows what each step costs.
export ENTRA_SCRIPTS_STARTED=${ENTRA_SCRIPTS_STARTED:-$(date +%s)}
say() {
    local t=$(($(date +%s) - ENTRA_SCRIPTS_STARTED))
    printf '\033[1m==> [%d:%02d] %s\033[0m\n' $((t / 60)) $((t % 60)) "$*" >&2
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian/Ubuntu packages that are missing.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Puts a copy of $1 at $2 by writing a new file and renaming it over the old one: a running
# nginx that has the old module (or binary) mapped keeps its own inode and never crashes.
replace_file() {
    local tmp
    tmp="$(dirname "$2")/.$(basename "$2").new.$$"
    cp "$1" "$tmp" && mv -f "$tmp" "$2"
}

# Fetches nginx's upstream source $1 as Debian's archive ships it ($3 is the Debian release that
# has it), checks it against the SHA-256 $2 and unpacks it at $4. The archive is the one this
# machine's apt already uses (its Debian site), so no host is named here. Exits 3 when the
# archive has no such file.
fetch_nginx_source() {
    local version=$1 sha256=$2 release=$3 dest=$4 site tarball
    site=$(apt-get indextargets --format '$(SITE)' 'Target-Of: deb' 2>/dev/null | grep -v -- -security | head -n 1)
    [ -n "$site" ] || die "fetching nginx $version: no Debian archive in this machine's apt sources"
    tarball="target/nginx_$version.orig.tar.gz"
    say "fetching nginx $version (Debian $release's source) from $site"
    local status
    status=$(curl -sS -o "$tarball.part" -w '%{http_code}' "$site/pool/main/n/nginx/nginx_$version.orig.tar.gz") ||
        die "fetching nginx $version from $site failed"
    if [ "$status" = 404 ]; then
        rm -f "$tarball.part"
        say "nginx $version: the archive answers 404 for its source"
        exit 3
    fi
    [ "$status" = 200 ] || die "fetching nginx $version from $site: HTTP $status"
    echo "$sha256  $tarball.part" | sha256sum -c --quiet >/dev/null ||
        die "nginx $version: the tarball's SHA-256 is not the one in scripts/nginx-sources"
    mv -f "$tarball.part" "$tarball"
    rm -rf "$dest" && mkdir -p "$dest"
    tar -xzf "$tarball" -C "$dest" --strip-components=1
}

need_rust() {
    # rustup's default place, for shells that did not source its profile.
    [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "a Rust toolchain (cargo, rustc) is needed: install it with rustup, then run this again"
}

# Packages each nginx flavour needs to build the module.
DISTRO_PACKAGES=(nginx nginx-dev libclang-dev pkg-config libssl-dev)
VENDORED_PACKAGES=(libclang-dev libssl-dev libpcre2-dev zlib1g-dev make pkg-config)

# The development IdPs the suites use: a key store for jwks_file providers and a live one (HTTP
# and HTTPS on loopback) for providers that discover their keys; the live one stops with the
# calling script. Exports what the suites read.
start_test_idps() {
    say "development IdP for the suites"
    cargo build -p entra-dev-idp
    export ENTRA_DEV_IDP="$ROOT/target/debug/entra-dev-idp"
    export ENTRA_DEV_IDP_STATE="$ROOT/target/test-idp"
    export TEST_NGINX_ENTRA_JWKS="$ENTRA_DEV_IDP_STATE/jwks.json"
    rm -rf "$ENTRA_DEV_IDP_STATE"
    "$ENTRA_DEV_IDP" init >/dev/null
    "$ENTRA_DEV_IDP" add-key --kind ec >/dev/null
    "$ENTRA_DEV_IDP" add-key --kind ed25519 >/dev/null
    # A key that, like Entra's, names the one issuer it may sign for (another tenant's).
    "$ENTRA_DEV_IDP" add-key --issuer "https://login.microsoftonline.com/0d8e5b2a-7c4f-4e19-b3a6-1f5d9c2e8a70/v2.0" >/dev/null
    "$ENTRA_DEV_IDP" jwks --out "$TEST_NGINX_ENTRA_JWKS"

    # A live IdP for the providers that discover their keys: HTTP and HTTPS on loopback.
    export ENTRA_LIVE_IDP_STATE="$ROOT/target/test-idp-live"
    export TEST_NGINX_IDP_URL="http://127.0.0.1:${TEST_NGINX_IDP_PORT:-1990}"
    export TEST_NGINX_IDP_HTTPS_URL="https://127.0.0.1:$(( ${TEST_NGINX_IDP_PORT:-1990} + 1 ))"
    export TEST_NGINX_IDP_CA="$ENTRA_LIVE_IDP_STATE/ca.pem"
    rm -rf "$ENTRA_LIVE_IDP_STATE"
    "$ENTRA_DEV_IDP" init --state "$ENTRA_LIVE_IDP_STATE" --authority "$TEST_NGINX_IDP_URL" >/dev/null
    "$ENTRA_DEV_IDP" serve --state "$ENTRA_LIVE_IDP_STATE" --listen "${TEST_NGINX_IDP_URL#http://}" \
        --https-listen "${TEST_NGINX_IDP_HTTPS_URL#https://}" >"$ROOT/target/test-idp-live.log" 2>&1 &
    live_idp_pid=$!
    trap 'kill $live_idp_pid 2>/dev/null' EXIT
    for _ in $(seq 500); do
        curl -sf "$TEST_NGINX_IDP_URL/_admin/stats" >/dev/null && break
        sleep 0.02
    done
    curl -sf "$TEST_NGINX_IDP_URL/_admin/stats" >/dev/null && kill -0 "$live_idp_pid" 2>/dev/null ||
        die "the live IdP did not start (port taken? see target/test-idp-live.log)"
}
