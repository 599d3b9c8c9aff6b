#include "sim/trace_recorder.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace dpmm::sim {

void TraceRecorder::record(const TraceEvent& event) {
  MutexLocker guard(lock_);
  auto it = totals_.find(event.name);
  if (it == totals_.end()) it = totals_.emplace(std::string(event.name), EventTotals{}).first;
  it->second.count++;
  it->second.arg_sum += event.arg;
  it->second.total_ns += event.dur_ns;
  if (keep_ == KeepEvents::kNo) return;
  if (events_.size() >= max_events_) {
    dropped_++;
    return;
  }
  events_.push_back(event);
}

std::map<std::string, EventTotals> TraceRecorder::totals() const {
  MutexLocker guard(lock_);
  return {totals_.begin(), totals_.end()};
}

EventTotals TraceRecorder::totals_of(std::string_view name) const {
  MutexLocker guard(lock_);
  auto it = totals_.find(name);
  return it == totals_.end() ? EventTotals{} : it->second;
}

size_t TraceRecorder::nr_kept() const {
  MutexLocker guard(lock_);
  return events_.size();
}

std::vector<TraceEvent> TraceRecorder::kept_events() const {
  MutexLocker guard(lock_);
  return events_;
}

uint64_t TraceRecorder::nr_dropped() const {
  MutexLocker guard(lock_);
  return dropped_;
}

namespace {

nlohmann::json events_json(const std::vector<TraceEvent>& events, uint64_t t0, int pid,
                           std::string_view process_name) {
  nlohmann::json out = nlohmann::json::array();
  out.push_back({{"name", "process_name"},
                 {"ph", "M"},
                 {"pid", pid},
                 {"args", {{"name", std::string(process_name)}}}});
  for (const TraceEvent& e : events) {
    nlohmann::json j = {{"name", std::string(e.name)},
                        {"cat", std::string(trace_category_name(e.category))},
                        {"ts", static_cast<double>(e.start_ns - t0) / 1000.0},
                        {"pid", pid},
                        {"tid", e.tid},
                        {"args", {{"arg", e.arg}}}};
    if (e.instant) {
      j["ph"] = "i";
      j["s"] = "t";
    } else {
      j["ph"] = "X";
      j["dur"] = static_cast<double>(e.dur_ns) / 1000.0;
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

void write_chrome_trace_file(
    std::ostream& out, const std::vector<std::pair<std::string, const TraceRecorder*>>& runs) {
  nlohmann::json all = nlohmann::json::array();
  int pid = 1;
  for (const auto& [name, rec] : runs) {
    const std::vector<TraceEvent> events = rec->kept_events();
    uint64_t t0 = UINT64_MAX;
    for (const TraceEvent& e : events) t0 = std::min(t0, e.start_ns);
    if (events.empty()) t0 = 0;
    for (auto& j : events_json(events, t0, pid, name)) all.push_back(std::move(j));
    ++pid;
  }
  out << nlohmann::json{{"traceEvents", all}, {"displayTimeUnit", "ns"}}.dump() << "\n";
}

}  // namespace dpmm::sim
