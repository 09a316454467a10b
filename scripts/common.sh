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

need_rust() {
    # rustup's default place, for shells that did not source its profile.
    [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "a Rust toolchain (cargo, rustc) is needed: install it with rustup, then run this again"
}

# Packages each nginx flavour needs to build the module.
DISTRO_PACKAGES=(nginx nginx-dev libclang-dev pkg-config)
VENDORED_PACKAGES=(libclang-dev libssl-dev libpcre2-dev zlib1g-dev make pkg-config)
