// Runs the dpmm binary as a user would and checks what it prints and how it exits.
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/cli_runner.h"

namespace {

using dpmm::cli::testing::CliRun;
using dpmm::cli::testing::dpmm;

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

int line_count(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

constexpr const char* kQ35 = "src/phys/testdata/05-qemu-q35-8g-guest.iomem";

// ---------------------------------------------------------------- demo

TEST(CliDemo, TellsTheSeedStory) {
  const CliRun r = dpmm("demo");
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("vm-43bit-pci-full"), std::string::npos);
  EXPECT_NE(r.out.find("legacy     registration FAILS: ERANGE (-34)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("largest free 128 MiB-aligned window below the limit: 2 GiB"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dpas       registration ok"), std::string::npos);
  EXPECT_NE(r.out.find("dpas-zone  registration ok"), std::string::npos);
  EXPECT_NE(r.out.find("gpu (private): device-private [0x0-0x13ffffffff]"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("1.2 GiB of descriptors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("zone DevicePrivate"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("every byte verified"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cannot register"), std::string::npos) << r.out;
  // Not a terminal: no progress output.
  EXPECT_TRUE(r.err.empty()) << r.err;
}

TEST(CliDemo, OtherMachinesAndBadInput) {
  // With KASLR on, x86-kaslr-err34 reproduces nvidia-uvm's "request_free_mem_region() err -34".
  const CliRun r = dpmm("demo --machine x86-kaslr-err34 --device 8GiB --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["designs"][0]["registration"]["ok"], true) << "8 GiB fits below the KASLR limit";
  EXPECT_EQ(j["designs"][0]["verified"], true);
  const CliRun big = dpmm("demo --machine x86-kaslr-err34 --json");
  EXPECT_EQ(nlohmann::json::parse(big.out)["designs"][0]["registration"]["error"]["number"], -34);
  EXPECT_EQ(dpmm("demo --machine nope").rc, 2);
  EXPECT_EQ(dpmm("demo --device 0").rc, 2);
  EXPECT_EQ(dpmm("demo --device lots").rc, 2);
  EXPECT_EQ(dpmm("demo --device 4097").rc, 2);
}

TEST(CliDemo, JsonHasOneObjectPerDesign) {
  // 8 GiB still cannot register under legacy (the largest free window is 2 GiB) and keeps the
  // descriptor arrays small.
  const CliRun r = dpmm("demo --device 8GiB --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["designs"].size(), 3u);
  EXPECT_EQ(j["designs"][0]["design"], "legacy");
  EXPECT_EQ(j["designs"][0]["registration"]["ok"], false);
  EXPECT_EQ(j["designs"][0]["registration"]["error"]["name"], "ERANGE");
  EXPECT_EQ(j["designs"][0]["registration"]["error"]["number"], -34);
  EXPECT_EQ(j["designs"][0]["verified"], false);
  EXPECT_EQ(j["designs"][1]["design"], "dpas");
  EXPECT_EQ(j["designs"][1]["registration"]["ok"], true);
  EXPECT_EQ(j["designs"][1]["registration"]["space"], "device-private");
  EXPECT_EQ(j["designs"][1]["registration"]["start"], "0x0");
  EXPECT_EQ(j["designs"][1]["registration"]["end"], "0x1ffffffff");
  // 8 GiB = 2 Mi pages of 64-byte descriptors.
  EXPECT_EQ(j["designs"][1]["descriptor_bytes"], 2097152ull * 64);
  EXPECT_EQ(j["designs"][2]["design"], "dpas-zone");
  EXPECT_EQ(j["designs"][2]["registration"]["ok"], true);
  // The workload ran and every byte checked out where the memory registered.
  for (int d : {1, 2}) {
    EXPECT_EQ(j["designs"][d]["verified"], true);
    EXPECT_EQ(j["designs"][d]["workload"]["operations"], 40000);
    EXPECT_GT(j["designs"][d]["workload"]["events"]["migrate_to_ram"]["count"], 0);
    EXPECT_TRUE(j["designs"][d]["workload"]["failures"].empty());
  }
}

// ---------------------------------------------------------------- run

TEST(CliRun, RunsAScenarioAndWritesATrace) {
  const std::string trace = testing::TempDir() + "dpmm_trace.json";
  const CliRun r = dpmm("run scenarios/device-removal.toml --trace " + trace);
  ASSERT_EQ(r.rc, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("scenario device-removal"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS"), std::string::npos);
  EXPECT_EQ(line_count(r.err), 0) << r.err;
  std::ifstream in(trace);
  const auto j = nlohmann::json::parse(in);
  // Three designs, each a process with its events.
  int processes = 0;
  bool saw_migration = false;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "M") ++processes;
    if (e["name"] == "migrate_vma_setup") saw_migration = true;
  }
  EXPECT_EQ(processes, 3);
  EXPECT_TRUE(saw_migration);
}

TEST(CliRun, JsonReportAndDesignChoice) {
  const CliRun r = dpmm("run scenarios/seed-vm-43bit.toml --design legacy --design dpas --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["passed"], true);
  ASSERT_EQ(j["designs"].size(), 2u);
  EXPECT_EQ(j["designs"][0]["registration"]["error"]["name"], "ERANGE");
  EXPECT_EQ(j["designs"][0]["registration"]["expected"], true);
  EXPECT_EQ(j["designs"][1]["verified"], true);
  EXPECT_GT(j["designs"][1]["workload"]["bytes_checked"], 8 << 20);
}

TEST(CliRun, AFailedExpectationExitsOne) {
  const std::string path = write_temp("dpmm_fail.toml", R"(
name = "wrong-count"
machine = "workstation-46bit"
designs = ["dpas"]
[[device]]
name = "gpu"
size = "256MiB"
[[step]]
op = "mmap"
buffer = "a"
size = "64KiB"
[[step]]
op = "migrate_to_device"
buffer = "a"
device = "gpu"
expect_pages = 17
)");
  const CliRun r = dpmm("run " + path);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("16 pages, expected 17"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("FAIL"), std::string::npos);
}

TEST(CliRun, BadInputIsTwoWithOneLine) {
  const std::string path = write_temp("dpmm_bad.toml", "name = \"x\"\nmachine = 3\n");
  CliRun r = dpmm("run " + path);
  EXPECT_EQ(r.rc, 2);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("dpmm_bad.toml:2"), std::string::npos) << r.err;
  r = dpmm("run /no/such/file.toml");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("/no/such/file.toml"), std::string::npos) << r.err;
  r = dpmm("run scenarios/device-removal.toml --design dpas3");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("dpas3"), std::string::npos) << r.err;
  EXPECT_EQ(dpmm("run").rc, 2);
}

// ---------------------------------------------------------------- check

TEST(CliCheck, RealDumpFindsTheKernelsWindow) {
  // q35 guest, 39 physical bits: the search starts at 2^39 - 80 GiB = 0x6c00000000, whose
  // window overlaps the 64-bit PCI window 0x7000000000-0x77ffffffff; the highest 128 MiB step
  // ending below it is 0x7000000000 - 80 GiB = 0x5c00000000.
  const CliRun r = dpmm(std::string("check --iomem ") + kQ35 + " --phys-bits 39 --device 80GiB --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["devices"].size(), 1u);
  const auto& legacy = j["devices"][0]["legacy"];
  EXPECT_EQ(legacy["ok"], true);
  EXPECT_EQ(legacy["start"], "0x5c00000000");
  EXPECT_EQ(legacy["end"], "0x6fffffffff");
  EXPECT_EQ(j["devices"][0]["dpas"]["ok"], true);
  EXPECT_EQ(j["devices"][0]["dpas"]["start"], "0x0");
  EXPECT_EQ(j["devices"][0]["size"], 80ull << 30);
}

TEST(CliCheck, DevicesRegisterInOrderEachBelowTheLast) {
  const CliRun r = dpmm(std::string("check --iomem ") + kQ35 +
                     " --phys-bits 39 --device 80GiB --device 16G --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["devices"].size(), 2u);
  // The second device fits above the PCI window, in the 32 GiB gap 0x7800000000-0x7fffffffff
  // that was too small for the first: 2^39 - 16 GiB.
  EXPECT_EQ(j["devices"][1]["legacy"]["start"], "0x7c00000000");
  // The device private address space hands out the next range after the first device.
  EXPECT_EQ(j["devices"][1]["dpas"]["start"], "0x1400000000");
}

TEST(CliCheck, FailureExitsOneAndSaysWhy) {
  // 39 physical bits: the largest free gaps are 0x280000000-0x6fffffffff (438 GiB, below the
  // 64-bit PCI window) and 32 GiB above it; 500 GiB fits nowhere.
  const CliRun r = dpmm(std::string("check --iomem ") + kQ35 + " --phys-bits 39 --device 500GiB");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("FAILS  ERANGE (-34)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("largest free"), std::string::npos) << r.out;
  const CliRun j = dpmm(std::string("check --iomem ") + kQ35 +
                     " --phys-bits 39 --device 500GiB --json");
  EXPECT_EQ(j.rc, 1);
  const auto o = nlohmann::json::parse(j.out);
  EXPECT_EQ(o["devices"][0]["legacy"]["ok"], false);
  EXPECT_EQ(o["devices"][0]["legacy"]["error"]["name"], "ERANGE");
  EXPECT_EQ(o["devices"][0]["legacy"]["error"]["number"], -34);
  EXPECT_FALSE(o["devices"][0]["legacy"]["reason"].get<std::string>().empty());
}

TEST(CliCheck, ReadsStandardInput) {
  const CliRun r = dpmm("check --iomem - --phys-bits 39 --device 80GiB --json", kQ35);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["devices"][0]["legacy"]["start"], "0x5c00000000");
}

TEST(CliCheck, ThisMachine) {
  std::ifstream probe("/proc/iomem");
  std::string first;
  if (!probe || !std::getline(probe, first) || first.rfind("00000000-00000000", 0) == 0) {
    GTEST_SKIP() << "/proc/iomem is not readable with addresses here (needs root)";
  }
  const CliRun r = dpmm("check --device 1GiB --json");
  ASSERT_TRUE(r.rc == 0 || r.rc == 1) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["machine"]["iomem"], "/proc/iomem");
  EXPECT_GT(j["machine"]["system_ram_bytes"].get<uint64_t>(), 0u);
}

TEST(CliCheck, BadInputExitsTwoWithOneLine) {
  struct Case {
    std::string args;
    std::string needle;
  };
  const std::string garbage = write_temp("garbage.iomem", "00000000-00000fff : Reserved\nhello\n");
  const std::string nonroot =
      write_temp("nonroot.iomem", "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n");
  const Case cases[] = {
      {std::string("check --iomem ") + kQ35 + " --device 80GiB", "--phys-bits"},
      {"check --iomem /nonexistent/iomem --phys-bits 40 --device 1G", "/nonexistent/iomem"},
      {std::string("check --iomem ") + kQ35 + " --phys-bits 40 --device 80X", "unknown unit"},
      {std::string("check --iomem ") + kQ35 + " --phys-bits 40 --device 0", "zero"},
      {std::string("check --iomem ") + kQ35 + " --phys-bits 40 --kaslr maybe --device 1G",
       "--kaslr"},
      {std::string("check --iomem ") + kQ35 + " --phys-bits 40 --arch sparc --device 1G", "sparc"},
      // The dump has a PCI window at 0x7000000000, beyond 2^36.
      {std::string("check --iomem ") + kQ35 + " --phys-bits 36 --device 1G", "36"},
      {"check --iomem " + garbage + " --phys-bits 40 --device 1G", "line 2"},
      {"check --iomem " + nonroot + " --phys-bits 40 --device 1G", "root"},
  };
  for (const Case& c : cases) {
    const CliRun r = dpmm(c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(line_count(r.err), 1) << c.args << "\nstderr: " << r.err;
  }
  // CLI11 rejects values out of range as bad usage too.
  EXPECT_EQ(dpmm(std::string("check --iomem ") + kQ35 + " --phys-bits 99 --device 1G").rc, 2);
}

// ---------------------------------------------------------------- pte

TEST(CliPte, DecodesDevicePrivateEntriesPerDesign) {
  // swp_entry_to_pte(make_writable_device_private_entry(0x12345)) on x86_64: legacy type 28.
  CliRun r = dpmm("pte decode --arch x86_64 --json 0xe7fffffffdb97400");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto e = nlohmann::json::parse(r.out)["entries"][0];
  EXPECT_EQ(e["present"], false);
  EXPECT_EQ(e["type"], 28);
  EXPECT_EQ(e["type_name"], "SWP_DEVICE_WRITE");
  EXPECT_EQ(e["offset"], 0x12345);
  EXPECT_EQ(e["offset_is"], "pfn");
  // The same word under the series' numbering is a device-private *migration* entry.
  r = dpmm("pte decode --arch x86_64 --design dpas --json 0xe7fffffffdb97400");
  e = nlohmann::json::parse(r.out)["entries"][0];
  EXPECT_EQ(e["type_name"], "SWP_MIGRATION_DEVICE_READ");
  EXPECT_EQ(e["offset_is"], "device-private offset");
}

TEST(CliPte, DecodesPresentEntries) {
  const CliRun r = dpmm("pte decode --arch x86_64 --json 0x8000000001234067");
  ASSERT_EQ(r.rc, 0);
  const auto e = nlohmann::json::parse(r.out)["entries"][0];
  EXPECT_EQ(e["present"], true);
  EXPECT_EQ(e["pfn"], 0x1234);
  EXPECT_EQ(e["write"], true);
  EXPECT_EQ(e["user"], true);
  EXPECT_EQ(e["dirty"], true);
  EXPECT_EQ(e["exec"], false);
}

TEST(CliPte, EncodeMatchesTheKernel) {
  CliRun r = dpmm("pte encode --arch x86_64 --design dpas --type SWP_DEVICE_WRITE --offset 0x12345 "
               "--json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["value"], "0xcffffffffdb97400");
  r = dpmm("pte encode --arch arm64 --design legacy --type SWP_DEVICE_WRITE --offset 0x12345 "
           "--json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["value"], "0x12345700");
  r = dpmm("pte encode --arch x86_64 --pfn 0x1234 --write --user --accessed --dirty --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["value"], "0x8000000001234067");
}

TEST(CliPte, RefusesWhatTheKernelCouldNotProduce) {
  // A migration-device type does not exist in today's kernel.
  CliRun r = dpmm("pte encode --arch x86_64 --design legacy --type SWP_MIGRATION_DEVICE_READ "
               "--offset 1");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("SWP_MIGRATION_DEVICE_READ"), std::string::npos) << r.err;
  EXPECT_EQ(line_count(r.err), 1);
  // An offset wider than the PFN field.
  r = dpmm("pte encode --arch x86_64 --type SWP_DEVICE_WRITE --offset 0x400000000000");
  EXPECT_EQ(r.rc, 2);
  // arm64 has no soft-dirty.
  r = dpmm("pte encode --arch arm64 --pfn 1 --soft-dirty");
  EXPECT_EQ(r.rc, 2);
  // Both or neither of --pfn and --type.
  EXPECT_EQ(dpmm("pte encode --arch x86_64").rc, 2);
  EXPECT_EQ(dpmm("pte encode --arch x86_64 --pfn 1 --type 3 --offset 1").rc, 2);
  // Not a number; no such arch.
  EXPECT_EQ(dpmm("pte decode --arch x86_64 zz").rc, 2);
  EXPECT_EQ(dpmm("pte decode --arch mips 0x1").rc, 2);
}

TEST(CliPte, DecodeFlagsImpossibleWords) {
  // x86: a non-present word with bits outside the swap fields set (bit 4) and not a valid
  // swap entry.
  const CliRun r = dpmm("pte decode --arch x86_64 --json 0x10");
  EXPECT_EQ(r.rc, 1) << r.out;
  const auto e = nlohmann::json::parse(r.out)["entries"][0];
  EXPECT_EQ(e["valid"], false);
  EXPECT_FALSE(e["invalid_reason"].get<std::string>().empty());
}

// ---------------------------------------------------------------- machines, usage

TEST(CliMachines, ListsAndShows) {
  CliRun r = dpmm("machines --json");
  ASSERT_EQ(r.rc, 0);
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GE(j["machines"].size(), 4u);
  r = dpmm("machines vm-43bit-pci-full");
  ASSERT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("System RAM"), std::string::npos);
  r = dpmm("machines no-such-machine");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.err.find("no-such-machine"), std::string::npos);
}

TEST(CliUsage, EverySubcommandHasHelpAndBadUsageIsTwo) {
  for (const char* sub :
       {"demo", "check", "pte", "pte decode", "pte encode", "machines", "run"}) {
    const CliRun r = dpmm(std::string(sub) + " --help");
    EXPECT_EQ(r.rc, 0) << sub;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub;
  }
  EXPECT_EQ(dpmm("").rc, 2);
  EXPECT_EQ(dpmm("frobnicate").rc, 2);
  EXPECT_EQ(dpmm("demo --no-such-flag").rc, 2);
}

}  // namespace
