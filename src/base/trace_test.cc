#include "base/trace.h"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "base/thread.h"

namespace dpmm {
namespace {

class VectorSink : public TraceSink {
 public:
  void record(const TraceEvent& e) override {
    std::lock_guard<std::mutex> g(mu_);
    events_.push_back(e);
  }
  std::vector<TraceEvent> events() {
    std::lock_guard<std::mutex> g(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<TraceEvent> events_;
};

class SinkGuard {
 public:
  explicit SinkGuard(TraceSink* s) { set_trace_sink(s); }
  ~SinkGuard() { set_trace_sink(nullptr); }
};

TEST(Trace, NothingIsRecordedWithoutASink) {
  VectorSink sink;
  { TraceScope scope("before", TraceCategory::kMigrate, 7); }
  trace_instant("before", TraceCategory::kFault);
  SinkGuard guard(&sink);
  EXPECT_TRUE(sink.events().empty());
}

TEST(Trace, ScopeRecordsACompleteEventWithItsArgument) {
  VectorSink sink;
  SinkGuard guard(&sink);
  const uint64_t before = trace_clock_ns();
  {
    TraceScope scope("migrate_vma_setup", TraceCategory::kMigrate, 1);
    scope.set_arg(512);
  }
  trace_instant("fault", TraceCategory::kFault, 0x7000);
  const auto events = sink.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "migrate_vma_setup");
  EXPECT_EQ(events[0].category, TraceCategory::kMigrate);
  EXPECT_EQ(events[0].arg, 512u);
  EXPECT_FALSE(events[0].instant);
  EXPECT_GE(events[0].start_ns, before);
  EXPECT_TRUE(events[1].instant);
  EXPECT_EQ(events[1].dur_ns, 0u);
  EXPECT_EQ(events[1].arg, 0x7000u);
  EXPECT_EQ(events[0].tid, events[1].tid);
  EXPECT_EQ(trace_category_name(events[1].category), "fault");
}

TEST(Trace, EveryThreadGetsItsOwnId) {
  VectorSink sink;
  SinkGuard guard(&sink);
  {
    Thread a("a", [] { trace_instant("x", TraceCategory::kSim); });
    Thread b("b", [] { trace_instant("x", TraceCategory::kSim); });
  }
  trace_instant("x", TraceCategory::kSim);
  const auto events = sink.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_NE(events[0].tid, events[1].tid);
  EXPECT_NE(events[0].tid, events[2].tid);
  EXPECT_NE(events[1].tid, events[2].tid);
}

}  // namespace
}  // namespace dpmm
