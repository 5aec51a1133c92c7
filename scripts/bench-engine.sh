#!/usr/bin/env bash
# Speed of the built-in engine next to llama2.c's reference run.c on stories260K.
#
# Builds llama2.c's run.c (path in $RUN_C; not vendored) with `gcc -O3 -lm` (no OpenMP: one thread, like
# the engine) and the engine's bench example in release mode (the measurement of
# `sotto model bench`, without building the whole CLI), then runs both ROUNDS times, alternating which goes
# first, with the same work: BOS only (empty prompt), STEPS greedy tokens (`-t 0`). Both rates
# count the tokens after the first over the time after the first, as run.c's
# "achieved tok/s" does. Also checks that both printed the same text, then prints one full
# benchmark report (load time, prompt and generation tok/s, peak RSS).
#
# Usage: RUN_C=llama2.c/run.c scripts/bench-engine.sh   (env: ROUNDS=5 STEPS=256 MODEL_DIR=...)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds="${ROUNDS:-5}"
steps="${STEPS:-256}"
model_dir="$(cd "${MODEL_DIR:-../shared/models/stories260K}" && pwd)"
target="${CARGO_TARGET_DIR:-target}"
work="$target/bench-engine"
mkdir -p "$work"
work="$(cd "$work" && pwd)"   # absolute: run.c runs from the model directory

if [ -z "${RUN_C:-}" ] || [ ! -f "$RUN_C" ]; then
    echo "bench-engine: set RUN_C to llama2.c's run.c, e.g." >&2
    echo "  git clone https://github.com/karpathy/llama2.c && RUN_C=llama2.c/run.c $0" >&2
    echo "(measured with commit bd182289c596fa6059eb7b3b7c8ccd04b5c90fc3; it needs GQA and -z)" >&2
    exit 2
fi
gcc -O3 -o "$work/run" "$RUN_C" -lm
cargo build --release --locked -p sotto-engine --example engine_bench >&2
bench="$target/release/examples/engine_bench"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_c() {
    (cd "$model_dir" && "$work/run" stories260K.bin -z tok512.bin -t 0 -n "$steps") \
        >"$work/runc.txt" 2>"$work/runc.err"
    sed -n 's/^achieved tok\/s: //p' "$work/runc.err" >>"$work/runc.rates"
}

run_sotto() {
    SOTTO_BENCH_TEXT="$work/sotto.txt" "$bench" "$model_dir/stories260K.bin" "$model_dir/tok512.bin" \
        "" "$steps" 1 >"$work/sotto.out"
    sed -n 's/^generation_tok_s: //p' "$work/sotto.out" >>"$work/sotto.rates"
}

: >"$work/runc.rates"
: >"$work/sotto.rates"
for i in $(seq 1 "$rounds"); do
    if [ $((i % 2)) -eq 1 ]; then run_c; run_sotto; else run_sotto; run_c; fi
done

# run.c ends its output with a newline; the engine's text does not.
if [ "$(cat "$work/runc.txt")" != "$(cat "$work/sotto.txt")" ]; then
    echo "bench-engine: run.c and sotto printed different text" >&2
    exit 1
fi

c="$(median <"$work/runc.rates")"
s="$(median <"$work/sotto.rates")"
echo "same text from both: yes ($(wc -c <"$work/sotto.txt") bytes)"
echo "run.c  achieved tok/s: median $c   (runs: $(tr '\n' ' ' <"$work/runc.rates"))"
echo "sotto  generation tok/s: median $s   (runs: $(tr '\n' ' ' <"$work/sotto.rates"))"
awk -v s="$s" -v c="$c" 'BEGIN { printf "ratio sotto / run.c: %.2f\n", s / c }'
echo
prompt="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
echo "engine benchmark (prompt \"$prompt\", $steps tokens, 5 runs on one load):"
"$bench" "$model_dir/stories260K.bin" "$model_dir/tok512.bin" "$prompt" "$steps" 5
