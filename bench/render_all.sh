#!/usr/bin/env bash
# Every report the CLI writes on ../shared/traces and the bundled samples, in md, json and
# term, with their chart files, so that a restructuring can be checked byte for byte:
#
#   SRC=/path/to/old/checkout bench/render_all.sh /tmp/before
#   bench/render_all.sh /tmp/after && diff -r /tmp/before /tmp/after && echo identical
#
# SRC: the checkout whose code renders (default: this one); TRACES: the shared traces
# (default: ../shared/traces beside this checkout); CLI: the module with `entry` (default
# gpu_trace_analyzer.cli, the installed package; analyzer.cli for a checkout older than the
# one import root, run from its folder). Runs two reports at a time.
set -u
OUT=$(realpath -m "$1")
HERE=$(cd "$(dirname "$0")/.." && pwd)
SRC=${SRC:-$HERE}
T=${TRACES:-$(realpath -m "$HERE/../shared/traces")}
CLI=${CLI:-gpu_trace_analyzer.cli}
mkdir -p "$OUT"
cd "$SRC" || exit 2
{
  find "$T" -type f ! -name README.md ! -name '*.sql' ! -name '*.md'
  find "$T" -mindepth 1 -type d
  find sample_traces -type f \( -name '*.json.gz' -o -name '*.sqlite' -o -name '*.txt' \
    -o -name '*.prom.gz' -o -name '*.query_range.json' \)
  echo sample_traces/synthetic_2rank
  echo "sample_traces/synthetic_train.json.gz sample_traces/dcgm/compute_bound.prom.gz"
  echo "$T/nsys/h100_2gpu_1s.sqlite $T/dcgm/exporter/v1.35__rafay__accelator_metrics__block9.prom"
  echo "sample_traces/nsys_sample.sqlite sample_traces/dcgm/throttled.dmon.txt"
} | sort > "$OUT/inputs.txt"
run_one() {
  out=$1
  shift
  key=$(echo "$*" | sed 's#[/ .]#_#g')
  for f in md json term; do
    # shellcheck disable=SC2068
    python -c "from $CLI import entry; entry()" $@ --jobs 1 --format $f \
      -o "$out/$key/report.$f" >"$out/$key.$f.stdout" 2>"$out/$key.$f.stderr"
    echo "rc=$?" >>"$out/$key.$f.stderr"
  done
  # shellcheck disable=SC2068
  python -c "from $CLI import entry; entry()" $@ --jobs 1 --format md \
    >"$out/$key.stdout.md" 2>/dev/null
}
export -f run_one
export CLI
xargs -P 2 -I{} bash -c 'run_one "$0" {}' "$OUT" <"$OUT/inputs.txt"
