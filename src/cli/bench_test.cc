// dpmm bench, run as a user would, on a tiny configuration: what it prints (text and JSON),
// how it exits, and its bad-input errors. No time is asserted: only that the runs happened,
// verified their bytes and counted what they registered.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"

namespace {

using dpmm::cli::testing::CliRun;
using dpmm::cli::testing::dpmm;

int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// 256 MiB of device memory is 65536 pages: 4 MiB of 64-byte descriptors.
constexpr uint64_t kDevice = uint64_t{256} << 20;
constexpr uint64_t kDescriptors = (kDevice >> 12) * 64;
constexpr const char* kTiny = " --duration-ms 20 --buffer 1MiB --device 256MiB";

TEST(CliBench, TextReportsEveryRunAndPasses) {
  const CliRun r = dpmm(std::string("bench --design dpas --threads 1") + kTiny);
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("scaling: mixed migrate/fault workload (1 MiB buffer"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("20 ms per run"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("design     threads        ops        ops/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  dpas             1 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  yes\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory: one device-private pagemap of each size"), std::string::npos);
  EXPECT_NE(r.out.find("  dpas          256 MiB        4.0 MiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("legacy"), std::string::npos) << "only the asked design runs";
  EXPECT_NE(r.out.find("\nPASS\n"), std::string::npos) << r.out;
  // Not a terminal: no progress output.
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(CliBench, JsonHasOneRowPerDesignAndThreadCount) {
  const CliRun r =
      dpmm(std::string("bench --json --design legacy --design dpas-zone --threads 1 --threads 2") +
           kTiny);
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_TRUE(r.err.empty()) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["machine"], "workstation-46bit");
  EXPECT_EQ(j["passed"], true);
  EXPECT_EQ(j["scaling"]["duration_ms"], 20);
  EXPECT_EQ(j["scaling"]["buffer"], uint64_t{1} << 20);
  const auto& runs = j["scaling"]["runs"];
  ASSERT_EQ(runs.size(), 4u);
  const char* designs[] = {"legacy", "legacy", "dpas-zone", "dpas-zone"};
  const unsigned threads[] = {1, 2, 1, 2};
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_EQ(runs[i]["design"], designs[i]);
    EXPECT_EQ(runs[i]["threads"], threads[i]);
    EXPECT_EQ(runs[i]["verified"], true) << runs[i].dump();
    EXPECT_GT(runs[i]["ops"].get<uint64_t>(), 0u);
    EXPECT_GT(runs[i]["ops_per_s"].get<double>(), 0.0);
    EXPECT_GT(runs[i]["workload_ms"].get<double>(), 0.0);
    EXPECT_TRUE(runs[i].contains("cpu_faults"));
    EXPECT_TRUE(runs[i].contains("pages_to_device"));
    EXPECT_TRUE(runs[i].contains("pages_to_system"));
  }
  const auto& mem = j["memory"];
  ASSERT_EQ(mem.size(), 2u);
  EXPECT_EQ(mem[0]["design"], "legacy");
  EXPECT_EQ(mem[1]["design"], "dpas-zone");
  for (const auto& m : mem) {
    EXPECT_EQ(m["ok"], true) << m.dump();
    EXPECT_EQ(m["device_bytes"], kDevice);
    EXPECT_EQ(m["descriptor_bytes"], kDescriptors);
    EXPECT_GT(m["rss_after_bytes"].get<uint64_t>(), 0u);
    EXPECT_EQ(m["rss_growth_bytes"].get<int64_t>(),
              static_cast<int64_t>(m["rss_after_bytes"].get<uint64_t>()) -
                  static_cast<int64_t>(m["rss_before_bytes"].get<uint64_t>()));
    EXPECT_TRUE(m.contains("registration_ms"));
  }
}

TEST(CliBench, SkipsWhatItIsToldTo) {
  const CliRun r = dpmm("bench --json --skip-scaling --skip-memory");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j.contains("scaling"));
  EXPECT_FALSE(j.contains("memory"));
  EXPECT_EQ(j["passed"], true);
}

// A dpas page array is capped by kvzalloc's INT_MAX: one 256 GiB pagemap cannot register.
TEST(CliBench, ARegistrationThatFailsExitsOneAndSaysWhy) {
  const CliRun r = dpmm("bench --json --design dpas --skip-scaling --device 256GiB");
  ASSERT_EQ(r.rc, 1) << r.err << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["passed"], false);
  ASSERT_EQ(j["memory"].size(), 1u);
  const auto& m = j["memory"][0];
  EXPECT_EQ(m["ok"], false);
  EXPECT_EQ(m["error"]["name"], "ENOMEM");
  EXPECT_EQ(m["error"]["number"], -12);
  EXPECT_NE(m["reason"].get<std::string>().find("exceeds INT_MAX"), std::string::npos)
      << m.dump();

  const CliRun t = dpmm("bench --design dpas --skip-scaling --device 256GiB");
  EXPECT_EQ(t.rc, 1);
  EXPECT_NE(t.out.find("ENOMEM"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\nFAIL\n"), std::string::npos) << t.out;
}

TEST(CliBench, BadInputExitsTwoWithOneLine) {
  struct Case {
    const char* args;
    const char* says;
  };
  const Case cases[] = {
      {"--design sideways", "dpmm: --design: "},
      {"--threads 0", "dpmm: --threads: 0 threads: must be 1..64"},
      {"--threads 65", "dpmm: --threads: 65 threads: must be 1..64"},
      {"--duration-ms 0", "dpmm: --duration-ms: 0 ms: must be 1..600000"},
      {"--buffer 3000", "dpmm: --buffer: 3000: must be a non-zero multiple of 4 KiB"},
      {"--buffer lots", "dpmm: --buffer: "},
      {"--device 0", "dpmm: --device: 0: must be a non-zero multiple of 4 KiB"},
      {"--device 12QiB", "dpmm: --device: "},
  };
  for (const Case& c : cases) {
    const CliRun r = dpmm(std::string("bench ") + c.args);
    EXPECT_EQ(r.rc, 2) << c.args;
    EXPECT_EQ(r.err.rfind(c.says, 0), 0u) << c.args << ": " << r.err;
    EXPECT_EQ(line_count(r.err), 1) << c.args << ": " << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
  }
  EXPECT_EQ(dpmm("bench --no-such-flag").rc, 2);
  EXPECT_EQ(dpmm("bench --threads many").rc, 2);
}

TEST(CliBench, Help) {
  const CliRun r = dpmm("bench --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("Usage"), std::string::npos);
  EXPECT_NE(r.out.find("--duration-ms"), std::string::npos);
  EXPECT_NE(r.out.find("--skip-memory"), std::string::npos);
}

}  // namespace
