// Tracepoints: named events that the layers emit and the simulator records (include/trace/events
// in the kernel). A layer marks an operation with a TraceScope (a complete event with a
// duration) or trace_instant (a point event); nothing is recorded unless a TraceSink is
// installed, and then every event reaches it from whichever thread emitted it.
//
// Cost when no sink is installed: one relaxed atomic load per tracepoint, so hot paths may
// carry them. With a sink installed, the sink decides what to keep (sim/ counts events by name
// and writes Chrome trace-event JSON).
//
// `arg` is one number the event carries: pages for migrations, the address for faults.
// Event names are static strings ("migrate_vma_setup"); the sink may keep the view.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace dpmm {

// The event families, one per layer that emits (the Chrome trace "cat" field).
enum class TraceCategory : uint8_t {
  kFault,     // mm: CPU faults
  kMigrate,   // migrate: migrate_vma, migrate_device
  kHmm,       // hmm: hmm_range_fault, device-exclusive
  kNotifier,  // mm/hmm: MMU-notifier invalidations
  kDevice,    // drivers: device commands and copies
  kSim,       // sim: workload steps
};
std::string_view trace_category_name(TraceCategory c);  // "fault", "migrate", ...

struct TraceEvent {
  std::string_view name;
  TraceCategory category = TraceCategory::kSim;
  uint64_t start_ns = 0;  // trace_clock_ns() at the start
  uint64_t dur_ns = 0;    // 0 for an instant event
  bool instant = false;
  uint64_t arg = 0;
  uint32_t tid = 0;  // a small per-thread number (trace_thread_id)
};

class TraceSink {
 public:
  virtual ~TraceSink() = default;
  // Called concurrently from any thread, possibly with any lock held: must take only a
  // leaf-rank lock and must not emit events itself.
  virtual void record(const TraceEvent& event) = 0;
};

// The installed sink, or null. Install before the traced work starts and remove after it has
// finished (no event may be in flight when the sink is destroyed).
void set_trace_sink(TraceSink* sink);
inline std::atomic<TraceSink*>& trace_sink_slot() {
  static std::atomic<TraceSink*> slot{nullptr};
  return slot;
}
inline TraceSink* trace_sink() { return trace_sink_slot().load(std::memory_order_acquire); }

// Monotonic nanoseconds (CLOCK_MONOTONIC), the trace's time base.
uint64_t trace_clock_ns();
// A small number naming the calling thread, stable for its life (1, 2, ... in first-use order).
uint32_t trace_thread_id();

void trace_instant(std::string_view name, TraceCategory category, uint64_t arg = 0);

// A complete event covering the scope's lifetime.
class TraceScope {
 public:
  TraceScope(std::string_view name, TraceCategory category, uint64_t arg = 0)
      : sink_(trace_sink()), name_(name), category_(category), arg_(arg),
        start_ns_(sink_ != nullptr ? trace_clock_ns() : 0) {}
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
  // The number the event carries, when it is known only at the end (pages migrated).
  void set_arg(uint64_t arg) { arg_ = arg; }

 private:
  TraceSink* sink_;
  std::string_view name_;
  TraceCategory category_;
  uint64_t arg_;
  uint64_t start_ns_;
};

}  // namespace dpmm
