#include "sim/trace_recorder.h"

#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

namespace dpmm::sim {
namespace {

class SinkGuard {
 public:
  explicit SinkGuard(TraceSink* s) { set_trace_sink(s); }
  ~SinkGuard() { set_trace_sink(nullptr); }
};

TEST(TraceRecorder, CountsEveryEventAndKeepsUpToTheLimit) {
  TraceRecorder rec(KeepEvents::kYes, 2);
  {
    SinkGuard guard(&rec);
    trace_instant("fault", TraceCategory::kFault, 0x1000);
    trace_instant("fault", TraceCategory::kFault, 0x2000);
    { TraceScope s("migrate_vma_pages", TraceCategory::kMigrate, 512); }
  }
  EXPECT_EQ(rec.totals_of("fault").count, 2u);
  EXPECT_EQ(rec.totals_of("fault").arg_sum, 0x3000u);
  EXPECT_EQ(rec.totals_of("migrate_vma_pages").arg_sum, 512u);
  EXPECT_EQ(rec.totals_of("nothing"), EventTotals{});
  EXPECT_EQ(rec.nr_kept(), 2u);
  EXPECT_EQ(rec.nr_dropped(), 1u);
  EXPECT_EQ(rec.totals().size(), 2u);
}

TEST(TraceRecorder, WritesChromeTraceJson) {
  TraceRecorder a(KeepEvents::kYes);
  TraceRecorder b(KeepEvents::kYes);
  {
    SinkGuard guard(&a);
    { TraceScope s("migrate_vma_setup", TraceCategory::kMigrate, 3); }
    trace_instant("fault", TraceCategory::kFault, 9);
  }
  std::ostringstream out;
  write_chrome_trace_file(out, {{"legacy", &a}, {"dpas", &b}});
  const auto j = nlohmann::json::parse(out.str());
  const auto& ev = j.at("traceEvents");
  ASSERT_EQ(ev.size(), 4u);  // two process names, two events
  EXPECT_EQ(ev[0].at("ph"), "M");
  EXPECT_EQ(ev[0].at("args").at("name"), "legacy");
  EXPECT_EQ(ev[1].at("name"), "migrate_vma_setup");
  EXPECT_EQ(ev[1].at("ph"), "X");
  EXPECT_EQ(ev[1].at("cat"), "migrate");
  EXPECT_EQ(ev[1].at("ts"), 0.0);
  EXPECT_EQ(ev[1].at("args").at("arg"), 3);
  EXPECT_EQ(ev[2].at("ph"), "i");
  EXPECT_EQ(ev[2].at("pid"), 1);
  EXPECT_EQ(ev[3].at("args").at("name"), "dpas");
  EXPECT_EQ(ev[3].at("pid"), 2);
}

}  // namespace
}  // namespace dpmm::sim
