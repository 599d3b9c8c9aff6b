#include "sim/scenario.h"

#include <gtest/gtest.h>

#include <string>

namespace dpmm::sim {
namespace {

constexpr std::string_view kScript = R"(
name = "roundtrip"
description = "migrate a buffer there and back"
designs = ["legacy", "dpas-zone"]
machine = "workstation-46bit"

[[device]]
name = "gpu"
size = "1GiB"

[[device]]
name = "cxl"
type = "coherent"
size = "256MiB"
chunk = "256MiB"

[[step]]
op = "mmap"
buffer = "a"
size = "4MiB"

[[step]]
op = "fill"
buffer = "a"
pattern = "random"
seed = 7

[[step]]
op = "migrate_to_device"
buffer = "a"
device = "gpu"
expect_pages = 1024

[[step]]
op = "fork"
child = "kid"

[[step]]
op = "cpu_read"
process = "kid"
buffer = "a"
)";

TEST(Scenario, ParsesAScript) {
  auto s = parse_scenario(kScript, "t.toml", ".");
  ASSERT_TRUE(s.is_ok()) << s.error().to_string();
  EXPECT_EQ(s->name, "roundtrip");
  ASSERT_EQ(s->designs.size(), 2u);
  EXPECT_EQ(s->designs[1], devmem::Design::kDpasZone);
  EXPECT_EQ(s->machine.name(), "workstation-46bit");
  ASSERT_EQ(s->devices.size(), 2u);
  EXPECT_EQ(s->devices[0].type, DeviceType::kPrivate);
  EXPECT_EQ(s->devices[0].size, 1ull << 30);
  EXPECT_EQ(s->devices[0].chunk, 256ull << 20);
  EXPECT_EQ(s->devices[1].type, DeviceType::kCoherent);
  ASSERT_EQ(s->steps.size(), 5u);
  EXPECT_EQ(s->steps[0].op, ScriptOpKind::kMmap);
  EXPECT_EQ(s->steps[0].size, 4ull << 20);
  EXPECT_EQ(s->steps[0].prot, "rw");
  EXPECT_EQ(s->steps[1].pattern, Pattern::kRandom);
  EXPECT_EQ(s->steps[1].seed, 7u);
  EXPECT_EQ(s->steps[2].expect_pages, 1024u);
  EXPECT_EQ(s->steps[3].buffer, "kid");
  EXPECT_EQ(s->steps[4].process, "kid");
  EXPECT_FALSE(s->generated.has_value());
}

TEST(Scenario, ParsesAGeneratedWorkloadAndDefaultsToEveryDesign) {
  auto s = parse_scenario(R"(
name = "mix"
machine = "vm-43bit-pci-full"
[[device]]
name = "gpu"
size = "80GiB"
chunk = "80GiB"
[workload]
threads = 2
buffer = "8MiB"
pattern = "zipf"
read_fraction = 0.75
migrate_fraction = 0.1
ops = 5000
duration_ms = 250
seed = 3
)",
                          "g.toml", ".");
  ASSERT_TRUE(s.is_ok()) << s.error().to_string();
  EXPECT_EQ(s->designs.size(), 3u);
  ASSERT_TRUE(s->generated.has_value());
  EXPECT_EQ(s->generated->pattern, AccessPattern::kZipf);
  EXPECT_DOUBLE_EQ(s->generated->read_fraction, 0.75);
  EXPECT_EQ(s->generated->ops, 5000u);
  EXPECT_EQ(s->generated->duration_ms, 250u);
}

struct BadCase {
  std::string_view text;
  std::string_view message;  // a part of the expected message
};

class ScenarioErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ScenarioErrors, NameWhatIsWrong) {
  auto s = parse_scenario(GetParam().text, "bad.toml", ".");
  ASSERT_TRUE(s.is_error());
  EXPECT_EQ(s.error().code(), Errno::kEINVAL);
  EXPECT_NE(s.error().message().find(GetParam().message), std::string::npos)
      << s.error().message();
}


INSTANTIATE_TEST_SUITE_P(
    All, ScenarioErrors,
    ::testing::Values(
        BadCase{"name = [", "bad.toml:1: TOML syntax"},
        BadCase{"machine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\nsize=\"256MiB\"\n"
                "[[step]]\nop=\"cpu_read\"\nbuffer=\"a\"\n",
                "key 'name' is missing"},
        BadCase{"name = \"x\"\n[[device]]\nname=\"g\"\nsize=\"256MiB\"\n[workload]\n",
                "exactly one of 'machine'"},
        BadCase{"name = \"x\"\nmachine = \"no-such\"\n", "bad.toml:2:"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\ncolour = 1\n",
                "bad.toml:3: unknown key 'colour'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\ndesigns = [\"dpas2\"]\n",
                "dpas2"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[workload]\n", "no [[device]]"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"1GiB\"\nchunk=\"300MiB\"\n[workload]\n",
                "not a positive multiple of the chunk"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[device]]\nname=\"g\"\nsize=\"256MiB\"\n[workload]\n",
                "two devices are named 'g'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n",
                "either [[step]] entries or one [workload] table, not neither"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[step]]\nop=\"teleport\"\n",
                "unknown op 'teleport'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[step]]\nop=\"mmap\"\nbuffer=\"a\"\n",
                "op 'mmap' needs key 'size'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[step]]\nop=\"munmap\"\nbuffer=\"a\"\nsize=1\n",
                "op 'munmap' takes no key 'size'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[step]]\nop=\"cpu_read\"\nbuffer=\"a\"\n",
                "bad.toml:6: step cpu_read: no buffer 'a'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[[step]]\nop=\"release\"\ndevice=\"h\"\n",
                "no device 'h'"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[workload]\nread_fraction = 1.5\n",
                "workload.read_fraction: 1.5 is not in [0, 1]"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"g\"\n"
                "size=\"256MiB\"\n[workload]\nduration_ms = 0\n",
                "workload.duration_ms: must not be 0"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[[device]]\nname=\"c\"\n"
                "type=\"coherent\"\nsize=\"512MiB\"\n[workload]\n",
                "a coherent device has 256 MiB"},
        BadCase{"name = \"x\"\nmachine = \"workstation-46bit\"\n[expect_setup_error]\n"
                "legacy = \"EWHAT\"\n",
                "unknown errno name 'EWHAT'"}));

}  // namespace
}  // namespace dpmm::sim
