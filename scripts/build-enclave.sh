#!/usr/bin/env bash
# Reproducible build of the enclave binary (`sotto`, profile `reproducible`, which inherits
# `release`). Every ingredient is explained in docs/reproducible-build.md.
#
#   scripts/build-enclave.sh                  # build the working tree, print a report
#   scripts/build-enclave.sh --rev v0.2.0     # build a commit (what an auditor does)
#   scripts/build-enclave.sh --print-digest   # stdout: the SHA-256 only (report on stderr)
#
# The source is first exported to <work-dir>/src (git-tracked plus untracked-not-ignored
# files of the working tree, or `git archive REV`), so the build never sees the caller's
# target directories or editor files and its path does not matter. The target directory
# is always fresh. The binary is copied to --out (default <work-dir>/sotto) with a
# `.buildinfo` file beside it.
set -euo pipefail

# ---- what this script pins ------------------------------------------------------------
# Changing the toolchain changes the digest: bump these together with the release notes.
EXPECTED_RUSTC_RELEASE="1.95.0"
EXPECTED_RUSTC_COMMIT="59807616e1fa2540724bfbac14d7976d7e4a3860"
TARGET_TRIPLE="x86_64-unknown-linux-gnu"
# The C side linked into the binary (crt objects, libc_nonshared, libgcc; ring's C code is
# compiled by cc). Releases are built on Debian 12 with these; others only get a warning.
EXPECTED_C_SIDE="libc6-dev=2.36-9+deb12u14 libgcc-12-dev=12.2.0-14+deb12u1"
PROFILE="reproducible"
PACKAGE="sotto"
BIN="sotto"

usage() {
  cat <<EOF
usage: scripts/build-enclave.sh [options]
  --print-digest              print only the binary's SHA-256 (hex) on stdout
  --rev REV                   build the committed tree REV instead of the working tree
  --work-dir DIR              export + build here (default: <repo>/target-repro/build)
  --cargo-home DIR            CARGO_HOME for this build (default: \$CARGO_HOME or ~/.cargo)
  --out FILE                  copy the binary here (default: <work-dir>/$BIN)
  --jobs N                    cargo -j (default: all cores)
  --allow-toolchain-mismatch  warn instead of refusing when rustc is not $EXPECTED_RUSTC_RELEASE
  --save-source-tar FILE      only snapshot the source (tar + FILE.meta) and exit
  --source-tar FILE           build that snapshot instead of exporting from git
Run it under 'nice -n 19' on a shared machine.
EOF
}

print_digest=0 rev="" work_dir="" cargo_home="${CARGO_HOME:-$HOME/.cargo}" out="" jobs=""
allow_mismatch=0 source_tar="" save_source_tar=""
while [ $# -gt 0 ]; do
  case "$1" in
    --print-digest) print_digest=1 ;;
    --rev) rev="$2"; shift ;;
    --work-dir) work_dir="$2"; shift ;;
    --cargo-home) cargo_home="$2"; shift ;;
    --out) out="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    --allow-toolchain-mismatch) allow_mismatch=1 ;;
    --source-tar) source_tar="$(realpath -m -- "$2")"; shift ;;
    --save-source-tar) save_source_tar="$(realpath -m -- "$2")"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-enclave: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# With --print-digest, stdout carries the digest alone: everything else goes to stderr.
exec 3>&1
if [ "$print_digest" = 1 ]; then exec 1>&2; fi
log() { printf 'build-enclave: %s\n' "$*"; }
die() { printf 'build-enclave: error: %s\n' "$1" >&2; exit "${2:-1}"; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
[ -n "$work_dir" ] || work_dir="$repo/target-repro/build"
mkdir -p "$work_dir" "$cargo_home"
work_dir="$(cd "$work_dir" && pwd -P)"
cargo_home="$(cd "$cargo_home" && pwd -P)"
[ -n "$out" ] || out="$work_dir/$BIN"
case "$work_dir/" in
  "$repo/target-repro"*/ | /tmp/* | "${TMPDIR:-/tmp}"/*) ;;
  "$repo"/*) die "--work-dir inside the repository must be under $repo/target-repro*" ;;
esac
src="$work_dir/src"
target_dir="$work_dir/target"
tmp_dir="$work_dir/tmp"
home_dir="$work_dir/home"

# ---- 1. export the source ---------------------------------------------------------------
# Writes a tar of the source to stdout and sets commit/source_desc.
export_source() {
  if [ -n "$rev" ]; then
    git -C "$repo" archive --format=tar "$commit"
  else
    # Tracked and untracked-not-ignored files as they are on disk right now; skip tracked
    # files that were deleted in the working tree.
    (cd "$repo" && git ls-files -z -co --exclude-standard --deduplicate |
      while IFS= read -r -d '' f; do
        if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
      done |
      tar --null --verbatim-files-from -T - -cf -)
  fi
}
if [ -n "$source_tar" ]; then
  [ -f "$source_tar" ] && [ -f "$source_tar.meta" ] || die "need $source_tar and $source_tar.meta"
  commit="$(sed -n 's/^commit=//p' "$source_tar.meta")"
  epoch="$(sed -n 's/^epoch=//p' "$source_tar.meta")"
  source_desc="$(sed -n 's/^desc=//p' "$source_tar.meta")"
else
  git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || die "$repo is not a git checkout"
  if [ -n "$rev" ]; then
    commit="$(git -C "$repo" rev-parse --verify "$rev^{commit}")" || die "no such commit: $rev"
    source_desc="$commit (git archive)"
  else
    commit="$(git -C "$repo" rev-parse --verify HEAD)"
    if [ -n "$(git -C "$repo" status --porcelain --untracked-files=normal)" ]; then
      source_desc="$commit + uncommitted changes (working tree)"
    else
      source_desc="$commit (clean working tree)"
    fi
  fi
  # SOURCE_DATE_EPOCH: the commit time, never the wall clock.
  epoch="$(git -C "$repo" log -1 --format=%ct "$commit")"
fi
if [ -n "$save_source_tar" ]; then
  # Snapshot only (used by scripts/reproducible-build.sh so both builds see one source).
  mkdir -p "$(dirname "$save_source_tar")"
  export_source >"$save_source_tar"
  printf 'commit=%s\nepoch=%s\ndesc=%s\n' "$commit" "$epoch" "$source_desc" >"$save_source_tar.meta"
  log "source snapshot: $save_source_tar ($source_desc)"
  exit 0
fi
rm -rf "$src" "$target_dir" "$tmp_dir" "$home_dir"
mkdir -p "$src" "$tmp_dir" "$home_dir"
if [ -n "$source_tar" ]; then
  tar -x -f "$source_tar" -C "$src"
else
  export_source | tar -x -C "$src"
fi
# A digest of the exported tree (paths and contents), so two builders can tell whether
# they built the same source even from a dirty working tree.
tree_sha256="$(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z |
  xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
grep -q '^\[profile\.reproducible\]' "$src/Cargo.toml" ||
  die "the exported Cargo.toml has no [profile.reproducible] (commit too old?)"
[ -f "$src/Cargo.lock" ] || die "the exported tree has no Cargo.lock"

# ---- 2. the toolchain ---------------------------------------------------------------------
# Resolved inside the exported tree, so a rust-toolchain.toml there is honoured by rustup.
toolchain_file="none (the toolchain is pinned by this script)"
for f in rust-toolchain.toml rust-toolchain; do
  if [ -f "$src/$f" ]; then toolchain_file="$f: $(tr '\n' ' ' <"$src/$f")"; fi
done
rustc_vv="$(cd "$src" && rustc -vV)" || die "rustc not found"
rustc_release="$(sed -n 's/^release: //p' <<<"$rustc_vv")"
rustc_commit="$(sed -n 's/^commit-hash: //p' <<<"$rustc_vv")"
rustc_llvm="$(sed -n 's/^LLVM version: //p' <<<"$rustc_vv")"
rustc_host="$(sed -n 's/^host: //p' <<<"$rustc_vv")"
sysroot="$(cd "$src" && rustc --print sysroot)"
rustc_bin="$sysroot/bin/rustc"
cargo_bin="$sysroot/bin/cargo"
[ -x "$cargo_bin" ] || cargo_bin="$(cd "$src" && command -v cargo)"
log "rustc: $(head -1 <<<"$rustc_vv") [commit $rustc_commit, LLVM $rustc_llvm, host $rustc_host]"
log "expected: rustc $EXPECTED_RUSTC_RELEASE [commit $EXPECTED_RUSTC_COMMIT]"
log "rust-toolchain file: $toolchain_file"
if [ "$rustc_release" != "$EXPECTED_RUSTC_RELEASE" ] || [ "$rustc_commit" != "$EXPECTED_RUSTC_COMMIT" ]; then
  if [ "$allow_mismatch" = 1 ]; then
    log "WARNING: toolchain differs from the pinned one: the digest will not match releases"
  else
    die "toolchain differs from the pinned rustc $EXPECTED_RUSTC_RELEASE ($EXPECTED_RUSTC_COMMIT); install it (rustup toolchain install $EXPECTED_RUSTC_RELEASE) or pass --allow-toolchain-mismatch" 3
  fi
fi
[ "$rustc_host" = "$TARGET_TRIPLE" ] || die "host is $rustc_host; this build is defined for $TARGET_TRIPLE"
# The C side that rustc's linker driver pulls in (crt objects, libc, libgcc), found on the
# build's PATH: recorded, trusted.
cc_version="$(PATH="$sysroot/bin:/usr/bin:/bin" cc --version 2>/dev/null | head -1 || echo 'cc: not found')"
binutils_version="$(PATH="$sysroot/bin:/usr/bin:/bin" ar --version 2>/dev/null | head -1 || echo 'ar: not found')"
c_runtime="$( (dpkg-query -W -f='${Package}=${Version}\n' libc6-dev libc6 'libgcc-*-dev' 2>/dev/null || true) |
  grep -v '=$' | tr '\n' ' ' | sed 's/ $//' || true)"
log "C compiler / linker driver: $cc_version; $binutils_version"
log "C runtime linked in: ${c_runtime:-unknown (no dpkg)}"
for want in $EXPECTED_C_SIDE; do
  case " $c_runtime " in
    *" $want "*) ;;
    *) log "WARNING: expected $want (Debian 12): a different C side can change the digest" ;;
  esac
done

for cfg in "$cargo_home/config.toml" "$cargo_home/config"; do
  if [ -f "$cfg" ]; then
    log "WARNING: $cfg exists and is read by cargo; make sure it sets no linker/profile/rustflags"
  fi
done
d="$src"
while [ "$d" != / ]; do
  d="$(dirname "$d")"
  for cfg in "$d/.cargo/config.toml" "$d/.cargo/config"; do
    if [ -f "$cfg" ]; then log "WARNING: $cfg is read by cargo for this build"; fi
  done
done
for cfg in "$src/.cargo/config.toml" "$src/.cargo/config"; do
  if [ -f "$cfg" ]; then log "note: the source's own $cfg is part of the build"; fi
done

# ---- 3. flags ----------------------------------------------------------------------------
# Codegen settings live in [profile.reproducible] (Cargo.toml). Only what a profile cannot
# say goes into rustflags; with an explicit --target they apply to target code only, not to
# build scripts and proc macros. Remaps: the last matching one wins, so the most specific
# (the per-build directories) come last.
rustflags=(
  "--remap-path-prefix=$sysroot=/rustc-sysroot"
  "--remap-path-prefix=$cargo_home=/cargo"
  "--remap-path-prefix=$src=/sotto"
  "--remap-path-prefix=$target_dir=/target"
  "-Clink-arg=-Wl,--build-id=sha1"
)
encoded_rustflags="$(IFS=$'\x1f'; printf '%s' "${rustflags[*]}")"
# The same remaps for C code that build scripts compile with the `cc` crate (ring's C and
# assembly, when it is in the graph): __FILE__ and any debug info lose the build paths.
cflags="-ffile-prefix-map=$cargo_home=/cargo -ffile-prefix-map=$src=/sotto -ffile-prefix-map=$target_dir=/target"
for p in "$src" "$cargo_home" "$target_dir" "$sysroot"; do
  case "$p" in *[[:space:]=]*) die "build paths may not contain spaces or '=': $p" ;; esac
done

# A clean environment: nothing from the caller's shell (RUSTFLAGS, RUSTC_WRAPPER, CC,
# CARGO_PROFILE_*, CARGO_BUILD_*, locale, timezone ...) reaches cargo or rustc.
clean_env=(
  env -i
  "PATH=$sysroot/bin:/usr/bin:/bin"
  "HOME=$home_dir"
  "TMPDIR=$tmp_dir"
  "CARGO_HOME=$cargo_home"
  "CARGO_TARGET_DIR=$target_dir"
  "CARGO_ENCODED_RUSTFLAGS=$encoded_rustflags"
  "CARGO_INCREMENTAL=0"
  "CARGO_TERM_COLOR=never"
  "RUSTC=$rustc_bin"
  "CFLAGS=$cflags"
  "CXXFLAGS=$cflags"
  "SOURCE_DATE_EPOCH=$epoch"
  "LC_ALL=C"
  "TZ=UTC"
)
# The binary records the commit it was built from (`sotto up` puts it in its local release
# manifest) only when the source is exactly that commit.
case "$source_desc" in
  *uncommitted*) ;;
  *) clean_env+=("SOTTO_SOURCE_COMMIT=$commit") ;;
esac
jobs_arg=()
if [ -n "$jobs" ]; then jobs_arg=(-j "$jobs"); fi
build_cmd=("$cargo_bin" build --locked --offline --profile "$PROFILE" --target "$TARGET_TRIPLE"
  -p "$PACKAGE" --bin "$BIN" "${jobs_arg[@]}")

log "source: $source_desc"
log "source tree sha256: $tree_sha256"
log "SOURCE_DATE_EPOCH=$epoch ($(TZ=UTC date -u -d "@$epoch" '+%Y-%m-%dT%H:%M:%SZ'))"
log "exported to: $src"
log "CARGO_HOME=$cargo_home CARGO_TARGET_DIR=$target_dir"
log "rustflags: ${rustflags[*]}"
log "CFLAGS: $cflags"

# ---- 4. fetch (network: crates.io, checked against Cargo.lock), then build offline -----
umask 022
(cd "$src" && "${clean_env[@]}" "$cargo_bin" fetch --locked --target "$TARGET_TRIPLE") ||
  die "cargo fetch failed (crates.io unreachable and $cargo_home has no copy?)"
log "building: ${build_cmd[*]}"
start=$(date +%s)
(cd "$src" && "${clean_env[@]}" "${build_cmd[@]}") || die "cargo build failed"
seconds=$(( $(date +%s) - start ))

binary="$target_dir/$TARGET_TRIPLE/$PROFILE/$BIN"
[ -f "$binary" ] || die "no binary at $binary"
digest="$(sha256sum "$binary" | cut -d' ' -f1)"

# A build path inside the binary is a reproducibility bug (and an information leak).
for p in "$src" "$target_dir" "$cargo_home" "$work_dir" "$home_dir" "$sysroot"; do
  if grep -qaF -- "$p" "$binary"; then log "WARNING: the binary contains the build path $p"; fi
done

mkdir -p "$(dirname "$out")"
if [ "$(readlink -f "$out")" != "$(readlink -f "$binary")" ]; then cp "$binary" "$out"; fi
cat >"$out.buildinfo" <<EOF
binary: $BIN (package $PACKAGE, profile $PROFILE, target $TARGET_TRIPLE)
sha256: $digest
size: $(stat -c %s "$binary")
source: $source_desc
source-tree-sha256: $tree_sha256
SOURCE_DATE_EPOCH: $epoch
rustc: $(head -1 <<<"$rustc_vv") commit $rustc_commit LLVM $rustc_llvm
cargo: $("$cargo_bin" -V)
c-compiler: $cc_version
binutils: $binutils_version
c-runtime: ${c_runtime:-unknown}
rustflags: ${rustflags[*]}
cflags: $cflags
command: ${build_cmd[*]}
build-seconds: $seconds
EOF
log "built in ${seconds}s: $out ($(stat -c %s "$binary") bytes)"
log "sha256: $digest"
if [ "$print_digest" = 1 ]; then printf '%s\n' "$digest" >&3; fi
