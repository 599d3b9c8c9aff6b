#include "base/trace.h"

#include <time.h>

namespace dpmm {

std::string_view trace_category_name(TraceCategory c) {
  switch (c) {
    case TraceCategory::kFault:
      return "fault";
    case TraceCategory::kMigrate:
      return "migrate";
    case TraceCategory::kHmm:
      return "hmm";
    case TraceCategory::kNotifier:
      return "notifier";
    case TraceCategory::kDevice:
      return "device";
    case TraceCategory::kSim:
      return "sim";
  }
  return "?";
}

void set_trace_sink(TraceSink* sink) { trace_sink_slot().store(sink, std::memory_order_release); }

uint64_t trace_clock_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint32_t trace_thread_id() {
  static std::atomic<uint32_t> next{1};
  thread_local const uint32_t id = next.fetch_add(1, std::memory_order_relaxed);
  return id;
}

void trace_instant(std::string_view name, TraceCategory category, uint64_t arg) {
  TraceSink* sink = trace_sink();
  if (sink == nullptr) return;
  sink->record(TraceEvent{name, category, trace_clock_ns(), 0, true, arg, trace_thread_id()});
}

TraceScope::~TraceScope() {
  if (sink_ == nullptr) return;
  const uint64_t end = trace_clock_ns();
  sink_->record(
      TraceEvent{name_, category_, start_ns_, end - start_ns_, false, arg_, trace_thread_id()});
}

}  // namespace dpmm
