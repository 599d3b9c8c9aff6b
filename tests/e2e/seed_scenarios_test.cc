// The seed's four scenarios, end to end: each scenario file in scenarios/ runs under every
// design through the whole stack (machine, pagemaps, dmirror, migrate_vma, faults, hmm) and
// the test checks what the seed message says happens, and that no byte is lost.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "sim/runner.h"
#include "sim/scenario.h"

namespace dpmm {
namespace {

using devmem::Design;

sim::Scenario load(const std::string& name) {
  auto s = sim::load_scenario_file("scenarios/" + name);
  EXPECT_TRUE(s.is_ok()) << s.error().to_string();
  return std::move(s).value();
}

sim::DesignReport run(const sim::Scenario& s, Design d) {
  return sim::run_design(s, d, {}).report;
}

void expect_verified(const sim::DesignReport& r) {
  EXPECT_FALSE(r.setup_error.has_value()) << r.setup_error->to_string();
  EXPECT_TRUE(r.verified);
  EXPECT_TRUE(r.passed());
  EXPECT_TRUE(r.failures.empty()) << r.failures.front();
  EXPECT_GT(r.bytes_checked, 0u);
}

void expect_device_private_space(const sim::DesignReport& r, uint64_t bytes) {
  ASSERT_EQ(r.devices.size(), 1u);
  ASSERT_EQ(r.devices[0].ranges.size(), 1u);
  EXPECT_EQ(r.devices[0].ranges[0].space, devmem::PagemapSpace::kDevicePrivate);
  EXPECT_EQ(r.devices[0].ranges[0].end - r.devices[0].ranges[0].start + 1, bytes);
  EXPECT_EQ(r.devices[0].descriptor_bytes, bytes / kPageSize * 64);
}

TEST(SeedScenarios, Vm43BitLegacyFailsWithErangeAndDpasMovesTheData) {
  const sim::Scenario s = load("seed-vm-43bit.toml");
  const sim::DesignReport legacy = run(s, Design::kLegacy);
  ASSERT_TRUE(legacy.setup_error.has_value());
  EXPECT_EQ(legacy.setup_error->code(), Errno::kERANGE);
  // The message names the largest free aligned gap the search saw.
  EXPECT_NE(legacy.setup_error->message().find("largest"), std::string::npos)
      << legacy.setup_error->message();
  EXPECT_TRUE(legacy.setup_error_expected);
  EXPECT_TRUE(legacy.passed());
  for (Design d : {Design::kDpas, Design::kDpasZone}) {
    SCOPED_TRACE(std::string(devmem::design_name(d)));
    const sim::DesignReport r = run(s, d);
    expect_verified(r);
    expect_device_private_space(r, 80ull << 30);
    // Pages went to the device and came back through CPU faults and MIGRATE_TO_SYS.
    EXPECT_GT(r.events.at("migrate_vma_setup").count, 0u);
    EXPECT_GT(r.events.at("migrate_to_ram").count, 0u);
  }
}

TEST(SeedScenarios, KaslrReproducesErr34) {
  const sim::Scenario s = load("seed-kaslr-err34.toml");
  const sim::DesignReport legacy = run(s, Design::kLegacy);
  ASSERT_TRUE(legacy.setup_error.has_value());
  EXPECT_EQ(errno_neg(legacy.setup_error->code()), -34);
  EXPECT_TRUE(legacy.passed());
  for (Design d : {Design::kDpas, Design::kDpasZone}) {
    SCOPED_TRACE(std::string(devmem::design_name(d)));
    const sim::DesignReport r = run(s, d);
    expect_verified(r);
    expect_device_private_space(r, 80ull << 30);
  }
}

TEST(SeedScenarios, Arm64LegacyDevicePagesLiePastTheVmemmap) {
  const sim::Scenario s = load("seed-arm64-vmemmap.toml");
  const sim::DesignReport legacy = run(s, Design::kLegacy);
  ASSERT_TRUE(legacy.setup_error.has_value());
  EXPECT_EQ(legacy.setup_error->code(), Errno::kEFAULT);
  EXPECT_NE(legacy.setup_error->message().find("vmemmap"), std::string::npos)
      << legacy.setup_error->message();
  EXPECT_TRUE(legacy.passed());
  for (Design d : {Design::kDpas, Design::kDpasZone}) {
    SCOPED_TRACE(std::string(devmem::design_name(d)));
    const sim::DesignReport r = run(s, d);
    expect_verified(r);
    expect_device_private_space(r, 16ull << 30);
  }
}

TEST(SeedScenarios, DeviceRemovalBringsEveryPageBack) {
  const sim::Scenario s = load("device-removal.toml");
  for (Design d : devmem::kAllDesigns) {
    SCOPED_TRACE(std::string(devmem::design_name(d)));
    const sim::DesignReport r = run(s, d);
    expect_verified(r);
    // Every chunk was evicted with migrate_device_range and its pagemap unregistered.
    EXPECT_GT(r.events.at("migrate_device_range").count, 0u);
  }
}

TEST(SeedScenarios, ZoneDevicePrivateCountsDeviceMemoryApart) {
  const sim::Scenario s = load("seed-vm-43bit.toml");
  auto present = [](const sim::DesignReport& r, page::ZoneType t) -> uint64_t {
    for (const auto& z : r.zones) {
      if (z.type == t) return z.present.raw();
    }
    return 0;
  };
  constexpr uint64_t kGpuPages = (80ull << 30) / kPageSize;
  // dpas: the GPU's pages are ZONE_DEVICE pages like any other device memory.
  const sim::DesignReport plain = run(s, Design::kDpas);
  EXPECT_EQ(present(plain, page::ZoneType::kDevice), kGpuPages);
  EXPECT_EQ(present(plain, page::ZoneType::kDevicePrivate), 0u);
  // dpas-zone: zone membership alone tells them apart.
  const sim::DesignReport zone = run(s, Design::kDpasZone);
  EXPECT_EQ(present(zone, page::ZoneType::kDevicePrivate), kGpuPages);
  EXPECT_EQ(present(zone, page::ZoneType::kDevice), 0u);
}

// Every shipped scenario passes under every design it names.
TEST(Scenarios, EveryShippedScenarioPasses) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("scenarios")) {
    if (entry.path().extension() != ".toml") continue;
    ++n;
    SCOPED_TRACE(entry.path().string());
    auto s = sim::load_scenario_file(entry.path().string());
    ASSERT_TRUE(s.is_ok()) << s.error().to_string();
    for (Design d : s->designs) {
      SCOPED_TRACE(std::string(devmem::design_name(d)));
      const sim::DesignReport r = run(*s, d);
      EXPECT_TRUE(r.passed()) << (r.failures.empty() ? (r.setup_error ? r.setup_error->to_string()
                                                                       : std::string("?"))
                                                     : r.failures.front());
    }
  }
  EXPECT_GE(n, 5u);
}

}  // namespace
}  // namespace dpmm
