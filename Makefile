# dpmm: every target does its own set-up on a fresh Debian machine (installs missing packages,
# configures, builds). `make run` and `make test` are the two entry points.

SHELL := /bin/bash
JOBS ?= 2

# Debian packages the build and tests need.
PACKAGES := cmake ninja-build g++ clang libclang-rt-14-dev pkg-config \
            libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev libcli11-dev \
            libtomlplusplus-dev nlohmann-json3-dev librapidcheck-dev libxxhash-dev

.PHONY: all deps release asan tsan clang run test test-release test-asan test-tsan \
        test-clang fuzz-smoke bench bench-deps clean

all: release

# Installs only what is missing; apt-get update runs only when something must be installed.
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build/%/build.ninja: CMakeLists.txt CMakePresets.json | deps
	cmake --preset $* > /dev/null

release asan tsan clang: %: deps build/%/build.ninja
	cmake --build --preset $@ -j $(JOBS)

run: release
	./build/release/dpmm demo

test-release: release
	ctest --preset release
test-asan: asan
	ctest --preset asan
test-tsan: tsan
	ctest --preset tsan
# The clang build exists to run -Wthread-safety over everything and to build the fuzzers.
test-clang: clang fuzz-smoke

fuzz-smoke: clang
	@for f in build/clang/fuzz/*_fuzz; do \
	  [ -x "$$f" ] || continue; \
	  echo "fuzzing $$f for 20 s"; \
	  "$$f" -max_total_time=20 -rss_limit_mb=2048 -print_final_stats=0 >/dev/null 2>build/clang/$$(basename $$f).log \
	    || { tail -50 build/clang/$$(basename $$f).log; exit 1; }; \
	done

test: test-release test-asan test-tsan test-clang

# The benchmarks' own packages (not `make test`'s): gnuplot draws the report's plots. perf
# (linux-perf) is used for the report's profiles when it works on this kernel; without it the
# report says no profile was recorded.
BENCH_PACKAGES := gnuplot-nox python3

bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Builds the perf preset (-O2 -g -DNDEBUG; dpmm and the benchmarks only), runs every
# benchmark and `dpmm bench` (JSON under build/bench/), then writes docs/PERFORMANCE.md and
# docs/perf/*.svg from that run.
bench: deps bench-deps build/perf/build.ninja
	cmake --build --preset perf -j $(JOBS)
	DPMM_BENCH_COMMAND="make bench" ./bench/run.sh
	python3 tools/perf_report.py --in build/bench --doc docs/PERFORMANCE.md --plots docs/perf

clean:
	rm -rf build
