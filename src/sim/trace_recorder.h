// TraceRecorder: the simulator's TraceSink. It counts every event by name (the run's
// statistics: faults, migrations, retries) and, when asked to keep them, stores the events
// for a Chrome trace-event JSON file that Perfetto and chrome://tracing open.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "base/lock.h"
#include "base/trace.h"

namespace dpmm::sim {

enum class KeepEvents : bool { kNo, kYes };

struct EventTotals {
  uint64_t count = 0;
  uint64_t arg_sum = 0;   // e.g. pages, summed over the events
  uint64_t total_ns = 0;  // summed durations of complete events
  bool operator==(const EventTotals&) const = default;
};

class TraceRecorder final : public TraceSink {
 public:
  // `max_events` bounds the kept events (a trace of a long run would not fit in memory); the
  // totals count every event.
  explicit TraceRecorder(KeepEvents keep, size_t max_events = 1'000'000)
      : keep_(keep), max_events_(max_events) {}

  void record(const TraceEvent& event) override EXCLUDES(lock_);

  // Totals by event name, in name order.
  std::map<std::string, EventTotals> totals() const EXCLUDES(lock_);
  EventTotals totals_of(std::string_view name) const EXCLUDES(lock_);
  size_t nr_kept() const EXCLUDES(lock_);
  uint64_t nr_dropped() const EXCLUDES(lock_);

  // The kept events, in recording order.
  std::vector<TraceEvent> kept_events() const EXCLUDES(lock_);

 private:
  const KeepEvents keep_;
  const size_t max_events_;
  mutable Mutex lock_{LockRank::kLeaf};
  std::map<std::string, EventTotals, std::less<>> totals_ GUARDED_BY(lock_);
  std::vector<TraceEvent> events_ GUARDED_BY(lock_);
  uint64_t dropped_ GUARDED_BY(lock_) = 0;
};

// A Chrome trace-event JSON file ({"traceEvents": [...]}) holding several recorders' events
// (one per design in a side-by-side run), each as its own process named by the pair's first
// member: complete events as "X", instant events as "i", timestamps in microseconds from each
// run's first event so the runs line up from zero.
void write_chrome_trace_file(std::ostream& out,
                             const std::vector<std::pair<std::string, const TraceRecorder*>>& runs);

}  // namespace dpmm::sim
