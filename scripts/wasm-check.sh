#!/usr/bin/env bash
# Check that the sans-I/O crates (sotto-wire, sotto-attest, sotto-release, and sotto-log without its
# `std` feature, i.e. everything but the on-disk store) compile for
# wasm32-unknown-unknown.
#
# rustup cannot fetch the wasm32 target here, so this uses Debian's second Rust
# toolchain (rustc-web / cargo-web, 1.96 in bookworm-security) plus its std
# sources (rust-web-src) and builds std for wasm with -Zbuild-std
# (RUSTC_BOOTSTRAP=1). The rustup toolchain in ~/.cargo/bin is left alone: the
# Debian binaries are called by absolute path (/usr/bin/cargo, RUSTC=/usr/bin/rustc).
#
# Lib targets only (no tests, so no dev-dependencies), own target dir
# (target/wasm), --locked so the workspace Cargo.lock is never rewritten.
# Profile is overridden to opt-level 0 / no debuginfo: this is a compile check,
# and it makes the cold build ~30 s instead of ~3.5 min.
# Linking: sotto-attest depends on dcap-qvl (TDX), whose manifest declares
# crate-type = ["cdylib", "staticlib", "rlib"], and Cargo builds every crate type
# of a dependency, so a wasm cdylib gets linked. Debian ships no rust-lld, so this
# installs `lld-22` and links with CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22.
#
# Extra arguments are passed to `cargo build` (e.g. -v).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-unknown-unknown
pkgs=(rustc-web cargo-web rust-web-src)

# Minimum rustc = the workspace's rust-version.
min_rust="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)"
min_rust="${min_rust:-1.95}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pkg_version() { # prints the installed version, or nothing
    { dpkg-query -W -f '${db:Status-Status} ${Version}\n' "$1" 2>/dev/null || true; } |
        awk '$1 == "installed" { print $2 }'
}

need_install=0
for p in "${pkgs[@]}"; do
    v="$(pkg_version "$p")"
    if [ -z "$v" ] || dpkg --compare-versions "$v" lt "$min_rust"; then
        need_install=1
    fi
done

if [ "$need_install" -eq 1 ]; then
    echo "wasm-check: installing ${pkgs[*]} (Debian)" >&2
    log="$(mktemp)"
    if ! { as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "wasm-check: apt-get failed" >&2
        exit 1
    fi
    rm -f "$log"
fi

# The wasm linker (version independent of rustc's).
if [ -z "$(pkg_version lld-22)" ]; then
    echo "wasm-check: installing lld-22 (Debian, for wasm-ld)" >&2
    log="$(mktemp)"
    if ! { as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends lld-22; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "wasm-check: apt-get failed" >&2
        exit 1
    fi
    rm -f "$log"
fi

v_rustc="$(pkg_version rustc-web)"
v_src="$(pkg_version rust-web-src)"
if dpkg --compare-versions "$v_rustc" lt "$min_rust"; then
    echo "wasm-check: Debian rustc-web $v_rustc is older than rust-version $min_rust" >&2
    exit 1
fi
if [ "$v_rustc" != "$v_src" ]; then
    # -Zbuild-std needs std sources from exactly the same compiler.
    echo "wasm-check: rustc-web $v_rustc != rust-web-src $v_src" >&2
    exit 1
fi

# The Debian toolchain, isolated from rustup and from flags meant for the host build.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTDOCFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER \
    RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET CARGO_TARGET_DIR CARGO_BUILD_RUSTC
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22
cargo=/usr/bin/cargo

sel=(-p sotto-wire -p sotto-attest -p sotto-release -p sotto-vault)

# sotto-log's sans-I/O core: the crate without its default `std` feature.
sel_log=(-p sotto-log --no-default-features)

# No crate may pull getrandom (or any OS entropy source) into the wasm build.
for pkgs in "${sel[*]}" "${sel_log[*]}"; do
    read -ra p <<<"$pkgs"
    tree="$("$cargo" tree --locked "${p[@]}" -e normal --target "$target" --prefix none)"
    if grep -qE '^getrandom ' <<<"$tree"; then
        echo "wasm-check: getrandom is in the wasm dependency tree of ${p[*]}:" >&2
        for v in $(sed -n 's/^getrandom v\([^ ]*\).*/\1/p' <<<"$tree" | sort -u); do
            "$cargo" tree --locked "${p[@]}" -e normal --target "$target" -i "getrandom@$v" >&2 || true
        done
        exit 1
    fi
done

for pkgs in "${sel[*]}" "${sel_log[*]}"; do
    read -ra p <<<"$pkgs"
    "$cargo" build --locked "${p[@]}" --lib \
        --target "$target" -Zbuild-std=std,panic_abort \
        --target-dir "$root/target/wasm" \
        --config 'profile.dev.debug=0' \
        --config 'profile.dev.package."*".opt-level=0' \
        "$@"
done

echo "wasm-check: sotto-wire, sotto-attest, sotto-release, sotto-vault and sotto-log (sans-I/O) build for $target" >&2
