#!/usr/bin/env bash
# Runs every benchmark of a build and prints one table of the results; `make bench` runs it on
# the perf preset's build, then tools/perf_report.py turns what it wrote into
# docs/PERFORMANCE.md.
#
#   bench/run.sh [benchmark flags...]      e.g. bench/run.sh --benchmark_filter=Pfn
#
# What it writes under the output folder:
#   <name>.json        each <build>/bench/*_benchmark binary's Google Benchmark JSON
#   dpmm_bench.json    `dpmm bench --json` (the macro benchmarks), when <build>/dpmm exists
#   profile-*.txt      perf report of the benchmarks whose targets the report checks, when
#                      `perf` works here (flat profile: the top symbols by samples)
#   meta.json          the machine (CPU, cores, RAM, kernel), the date, the commit, the build
#                      and its flags, and the load on the machine before and after the run
#
# The table gives the time per iteration in ns (CPU time; wall time for benchmarks named
# ".../real_time" or ".../manual_time"), the items processed per second and, where the
# benchmark counts them, the bytes per second. The table drops the "/min_time:..." part of
# the names; the JSON keeps Google Benchmark's full names.
#
# Environment: DPMM_BENCH_BUILD_DIR (default build/perf) is the build whose bench/ is run;
# DPMM_BENCH_OUT_DIR (default build/bench) receives the files; DPMM_BENCH_PROFILE=0 skips the
# profiles; DPMM_BENCH_DPMM_ARGS replaces the arguments of `dpmm bench` (default: its own).
# Paths are relative to the repository root. Nothing here checks a time: a run fails only when
# a binary fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${DPMM_BENCH_BUILD_DIR:-build/perf}
out_dir=${DPMM_BENCH_OUT_DIR:-build/bench}
bin_dir=$build_dir/bench

mapfile -t binaries < <(find "$bin_dir" -maxdepth 1 -type f -executable -name '*_benchmark' \
                          2>/dev/null | sort)
if [[ ${#binaries[@]} -eq 0 ]]; then
  echo "run.sh: no *_benchmark binaries in $bin_dir (build them first: make bench)" >&2
  exit 1
fi
mkdir -p "$out_dir"
rm -f "$out_dir"/*.json "$out_dir"/*.log "$out_dir"/profile-*.txt

# ---- the machine and the run, for the report ----
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
busy_processes() {
  # Processes using CPU now (over 10%), this script's own excluded: who shared the machine.
  ps -eo pid=,ppid=,pcpu=,comm= --sort=-pcpu | awk -v self=$$ '$3 > 10 && $1 != self && $2 != self { printf "%s(%s%%) ", $4, $3 }'
}
start_epoch=$(date +%s)
{
  echo "{"
  echo "  \"date\": $(json_str "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"),"
  echo "  \"commit\": $(json_str "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes')"),"
  echo "  \"command\": $(json_str "${DPMM_BENCH_COMMAND:-bench/run.sh $*}"),"
  echo "  \"cpu\": $(json_str "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"),"
  echo "  \"cores\": $(nproc),"
  echo "  \"ram_kib\": $(awk '/MemTotal/ { print $2 }' /proc/meminfo),"
  echo "  \"kernel\": $(json_str "$(uname -sr)"),"
  echo "  \"build_dir\": $(json_str "$build_dir"),"
  echo "  \"build_type\": $(json_str "$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build_dir/CMakeCache.txt" 2>/dev/null)"),"
  echo "  \"cxx_flags\": $(json_str "$(sed -n 's/^CMAKE_CXX_FLAGS_RELEASE:STRING=//p' "$build_dir/CMakeCache.txt" 2>/dev/null)"),"
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null)
  echo "  \"compiler\": $(json_str "$( ("${cxx:-c++}" --version 2>/dev/null || true) | head -1)"),"
  echo "  \"load_before\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg)"),"
  echo "  \"busy_before\": $(json_str "$(busy_processes)"),"
} > "$out_dir/meta.part"

# One row per benchmark run of a Google Benchmark JSON file: name, ns/op, items/s.
table() {
  awk '
    function flush() {
      if (name == "") return
      # Repeated benchmarks: the mean only; an error row once.
      skip = (rt == "iteration" && reps > 1 && error == "") || (rt == "aggregate" && agg != "mean")
      if (error != "" && seen[name]++) skip = 1
      if (skip) { name = ""; error = ""; items = ""; bytes = ""; agg = ""; return }
      if (error != "") {
        printf "%-58s %14s  %s\n", name, "ERROR", error
      } else {
        t = (name ~ /\/(real|manual)_time/) ? real : cpu
        mult = (unit == "us") ? 1e3 : (unit == "ms") ? 1e6 : (unit == "s") ? 1e9 : 1
        printf "%-58s %14.1f %10s %10s\n", name, t * mult, si(items), si(bytes)
      }
      name = ""; error = ""; items = ""; bytes = ""; agg = ""
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
    /^[ \t]*"run_type":/ { rt = value($0) }
    /^[ \t]*"repetitions":/ { reps = value($0) + 0 }
    /^[ \t]*"aggregate_name":/ { agg = value($0) }
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
  # Repeated benchmarks show their mean only (the JSON has every repetition and aggregate).
  if ! "$bin" --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json \
       --benchmark_report_aggregates_only=false "$@" >/dev/null 2>"$log"; then
    echo "run.sh: $name failed (stderr in $log):" >&2
    tail -20 "$log" >&2
    status=1
    continue
  fi
  table "$json"
done

# ---- the macro benchmarks ----
if [[ -x $build_dir/dpmm ]]; then
  # shellcheck disable=SC2086
  if ! "$build_dir/dpmm" bench --json ${DPMM_BENCH_DPMM_ARGS:-} >"$out_dir/dpmm_bench.json" \
       2>"$out_dir/dpmm_bench.log"; then
    echo "run.sh: dpmm bench failed (stderr in $out_dir/dpmm_bench.log)" >&2
    status=1
  fi
  echo "dpmm bench: $out_dir/dpmm_bench.json"
fi

# ---- profiles of the benchmarks whose targets the report checks ----
# Flat profiles (self time per symbol), so the report can say where the time goes.
profile() {  # profile NAME BINARY FILTER TIMED_PARENT
  local name=$1 bin=$bin_dir/$2 filter=$3 parent=$4 data=$out_dir/perf-$1.data
  [[ -x $bin ]] || return 0
  if perf record -F 10000 -g -o "$data" "$bin" --benchmark_filter="$filter" \
       >/dev/null 2>"$out_dir/profile-$name.log"; then
    perf report -i "$data" --no-children --stdio --sort symbol --percent-limit 0.2 -g none \
      2>/dev/null | grep -v '^$' >"$out_dir/profile-$name.txt" || true
    perf report -i "$data" --children --stdio --sort symbol --percent-limit 5 -g none \
      2>/dev/null | grep -v '^$' >"$out_dir/profile-$name-children.txt" || true
    # The timed part only: samples with TIMED_PARENT on their call chain.
    perf report -i "$data" --no-children --stdio --sort symbol --parent="$parent" -x \
      --percent-limit 0.01 -g none 2>/dev/null | grep -v '^$' \
      >"$out_dir/profile-$name-timed.txt" || true
  fi
  rm -f "$data" "$data.old"
}
if [[ ${DPMM_BENCH_PROFILE:-1} != 0 ]] && perf stat -e instructions true >/dev/null 2>&1; then
  profile migrate-to-device migrate_benchmark 'BM_Migrate/design:1/KiB:16384/dir:0/order:0' \
    'Dmirror::migrate_to_device'
  profile migrate-to-system migrate_benchmark 'BM_Migrate/design:1/KiB:16384/dir:1/order:0' \
    'Dmirror::migrate_to_system'
  profile fault-back migrate_benchmark 'BM_FaultBack/design:1/threads:1/order:0' 'cpu_read_u64'
  profile fault-back-2 migrate_benchmark 'BM_FaultBack/design:1/threads:2/order:0' 'cpu_read_u64'
  profile register devmem_benchmark 'BM_Register/design:0/GiB:256' 'register_pagemap'
  echo "profiles: $out_dir/profile-*.txt"
fi

{
  cat "$out_dir/meta.part"
  echo "  \"load_after\": $(json_str "$(cut -d' ' -f1-3 /proc/loadavg)"),"
  echo "  \"busy_after\": $(json_str "$(busy_processes)"),"
  echo "  \"seconds\": $(( $(date +%s) - start_epoch ))"
  echo "}"
} > "$out_dir/meta.json"
rm -f "$out_dir/meta.part"
echo "run took $(( $(date +%s) - start_epoch )) s; machine and run details: $out_dir/meta.json"
exit $status
