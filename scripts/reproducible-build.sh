#!/usr/bin/env bash
# Reproducibility check of the enclave binary: builds it twice with scripts/build-enclave.sh
# from one snapshot of the source, in two different directories (different absolute
# paths and path lengths, different target directories, different CARGO_HOMEs: the second
# one is fresh and downloads the crates again), then compares the SHA-256 digests.
# Exit 0 and print the digest when they are identical; exit 1 and show which ELF sections
# differ when they are not. See docs/reproducible-build.md.
#
#   nice -n 19 scripts/reproducible-build.sh              # the working tree as it is
#   nice -n 19 scripts/reproducible-build.sh --rev HEAD   # a commit
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/reproducible-build.sh [--rev REV | --source-tar FILE] [--jobs N] [--shared-cargo-home]
                       [--keep] [--dir-a DIR] [--dir-b DIR] [--allow-toolchain-mismatch]
  --rev REV            build commit REV (default: the working tree, uncommitted changes included)
  --source-tar FILE    build a snapshot made by build-enclave.sh --save-source-tar (FILE + FILE.meta)
  --shared-cargo-home  let build B use the caller's CARGO_HOME too (no second download)
  --keep               keep both build directories (default: keep only the binaries)
  --dir-a / --dir-b    the two work directories (default: <repo>/target-repro/a and
                       /tmp/sotto-repro-b/a-longer/and-deeper/build-path)
EOF
}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
build="$repo/scripts/build-enclave.sh"
dir_a="$repo/target-repro/a"
dir_b="/tmp/sotto-repro-b/a-longer/and-deeper/build-path"
common=() shared_home=0 keep=0 source_tar=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) common+=(--rev "$2"); shift ;;
    --source-tar) source_tar="$(realpath -- "$2")"; shift ;;
    --jobs) common+=(--jobs "$2"); shift ;;
    --allow-toolchain-mismatch) common+=("$1") ;;
    --shared-cargo-home) shared_home=1 ;;
    --keep) keep=1 ;;
    --dir-a) dir_a="$2"; shift ;;
    --dir-b) dir_b="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "reproducible-build: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
log() { printf '\n== reproducible-build: %s\n' "$*"; }

results="$repo/target-repro/results"
mkdir -p "$results"
snapshot="$results/source.tar"
cargo_home_a="${CARGO_HOME:-$HOME/.cargo}"
if [ "$shared_home" = 1 ]; then cargo_home_b="$cargo_home_a"; else cargo_home_b="$dir_b/cargo-home"; fi
rm -rf "$dir_b/cargo-home"

if [ -n "$source_tar" ]; then
  snapshot="$source_tar"
  log "source: $snapshot ($(sed -n 's/^desc=//p' "$snapshot.meta"))"
else
  log "snapshot of the source (both builds use it, so concurrent edits cannot split them)"
  "$build" "${common[@]}" --save-source-tar "$snapshot"
fi

log "build A: $dir_a, CARGO_HOME=$cargo_home_a"
digest_a="$("$build" "${common[@]}" --source-tar "$snapshot" --work-dir "$dir_a" \
  --cargo-home "$cargo_home_a" --out "$results/sotto.a" --print-digest)"

log "build B: $dir_b, CARGO_HOME=$cargo_home_b"
digest_b="$("$build" "${common[@]}" --source-tar "$snapshot" --work-dir "$dir_b" \
  --cargo-home "$cargo_home_b" --out "$results/sotto.b" --print-digest)"

if [ "$keep" = 0 ]; then rm -rf "$dir_a" "$dir_b"; fi

log "result"
sed -n 's/^\(source\|source-tree-sha256\|rustc\|build-seconds\): /  A \1: /p' "$results/sotto.a.buildinfo"
sed -n 's/^\(build-seconds\): /  B \1: /p' "$results/sotto.b.buildinfo"
printf '  A sha256: %s  (%s)\n' "$digest_a" "$dir_a"
printf '  B sha256: %s  (%s)\n' "$digest_b" "$dir_b"
if [ "$digest_a" = "$digest_b" ]; then
  printf 'REPRODUCIBLE: %s  sotto\n' "$digest_a"
  exit 0
fi

printf 'NOT REPRODUCIBLE: the two builds differ. Binaries: %s/sotto.{a,b}\n' "$results"
# Which sections differ (diffoscope, if installed, tells more: diffoscope sotto.a sotto.b).
if command -v readelf >/dev/null && command -v objcopy >/dev/null; then
  cmp_dir="$(mktemp -d)"
  for s in $(readelf -SW "$results/sotto.a" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]\+\) .*/\1/p'); do
    objcopy --dump-section "$s=$cmp_dir/a" "$results/sotto.a" /dev/null 2>/dev/null || true
    objcopy --dump-section "$s=$cmp_dir/b" "$results/sotto.b" /dev/null 2>/dev/null || true
    # Sections without contents (NOBITS) cannot be dumped from either: nothing to compare.
    if [ -e "$cmp_dir/a" ] || [ -e "$cmp_dir/b" ]; then
      cmp -s "$cmp_dir/a" "$cmp_dir/b" || printf '  section %s differs\n' "$s"
    fi
    rm -f "$cmp_dir/a" "$cmp_dir/b"
  done
  rm -rf "$cmp_dir"
  cmp -s <(readelf -hlSW "$results/sotto.a") <(readelf -hlSW "$results/sotto.b") ||
    printf '  ELF headers differ (readelf -hlSW)\n'
fi
exit 1
