#!/usr/bin/env bash
# Runs every benchmark binary of the release build and prints one table of the results.
#
#   bench/run.sh [benchmark flags...]      e.g. bench/run.sh --benchmark_filter=Pfn
#
# Each binary <name> writes build/bench/<name>.json (Google Benchmark's JSON). The table gives
# the time per iteration in ns (CPU time; wall time for benchmarks named ".../real_time", the
# multi-threaded and node-creation ones), the items processed per second and, where the
# benchmark counts them, the bytes per second. The table drops the "/min_time:..." part of
# the names; the JSON keeps Google Benchmark's full names.
#
# Environment: DPMM_BENCH_BUILD_DIR (default build/release) is the build whose bench/ is run;
# DPMM_BENCH_OUT_DIR (default build/bench) receives the JSON files. Paths are relative to the
# repository root. Nothing here checks a time: a run fails only when a binary fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${DPMM_BENCH_BUILD_DIR:-build/release}
out_dir=${DPMM_BENCH_OUT_DIR:-build/bench}
bin_dir=$build_dir/bench

mapfile -t binaries < <(find "$bin_dir" -maxdepth 1 -type f -executable -name '*_benchmark' \
                          2>/dev/null | sort)
if [[ ${#binaries[@]} -eq 0 ]]; then
  echo "run.sh: no *_benchmark binaries in $bin_dir (build the release preset first: make release)" >&2
  exit 1
fi
mkdir -p "$out_dir"

# One row per benchmark run of a Google Benchmark JSON file: name, ns/op, items/s.
table() {
  awk '
    function flush() {
      if (name == "") return
      if (error != "") {
        printf "%-58s %14s  %s\n", name, "ERROR", error
      } else {
        t = (name ~ /\/real_time$/) ? real : cpu
        mult = (unit == "us") ? 1e3 : (unit == "ms") ? 1e6 : (unit == "s") ? 1e9 : 1
        printf "%-58s %14.1f %10s %10s\n", name, t * mult, si(items), si(bytes)
      }
      name = ""; error = ""; items = ""; bytes = ""
    }
    function si(v) {
      if (v == "") return "-"
      if (v >= 1e9) return sprintf("%.2fG", v / 1e9)
      if (v >= 1e6) return sprintf("%.2fM", v / 1e6)
      if (v >= 1e3) return sprintf("%.2fk", v / 1e3)
      return sprintf("%.2f", v)
    }
    function value(line) {
      sub(/^[^:]*:[ \t]*/, "", line); sub(/,[ \t]*$/, "", line); gsub(/"/, "", line)
      return line
    }
    /"benchmarks": \[/ { in_list = 1; next }
    !in_list { next }
    /^[ \t]*"name":/ { flush(); name = value($0); gsub(/\/min_time:[0-9.]+/, "", name) }
    /^[ \t]*"real_time":/ { real = value($0) + 0 }
    /^[ \t]*"cpu_time":/ { cpu = value($0) + 0 }
    /^[ \t]*"time_unit":/ { unit = value($0) }
    /^[ \t]*"items_per_second":/ { items = value($0) + 0 }
    /^[ \t]*"bytes_per_second":/ { bytes = value($0) + 0 }
    /^[ \t]*"error_message":/ { error = value($0) }
    END { flush() }
  ' "$1"
}

status=0
printf '%-58s %14s %10s %10s\n' "benchmark" "ns/op" "items/s" "bytes/s"
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  json=$out_dir/$name.json
  log=$out_dir/$name.log
  if ! "$bin" --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json \
       "$@" >/dev/null 2>"$log"; then
    echo "run.sh: $name failed (stderr in $log):" >&2
    tail -20 "$log" >&2
    status=1
    continue
  fi
  table "$json"
done
exit $status
