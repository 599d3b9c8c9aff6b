#include "phys/machine_toml.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "phys/builtin_machines.h"
#include "phys/iomem_parser.h"

namespace dpmm::phys {
namespace {

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

constexpr const char* kMinimal = R"(
name = "m"
arch = "x86_64"
phys_bits = 40
[[ram]]
start = "0x100000000"
size = "4GiB"
)";

TEST(MachineToml, BuiltinsAreTheMachineFiles) {
  EXPECT_EQ(builtin_machine_names(),
            (std::vector<std::string>{"arm64-server", "vm-43bit-pci-full", "workstation-46bit",
                                      "x86-kaslr-err34"}));
  for (const std::string& name : builtin_machine_names()) {
    SCOPED_TRACE(name);
    auto builtin = builtin_machine(name);
    ASSERT_TRUE(builtin.is_ok()) << builtin.error().to_string();
    auto file = load_machine_file(std::string(DPMM_MACHINES_DIR) + "/" + name + ".toml");
    ASSERT_TRUE(file.is_ok()) << file.error().to_string();
    EXPECT_EQ(builtin->name(), name);
    EXPECT_EQ(builtin->config(), file->config());
    EXPECT_EQ(format_iomem(builtin->iomem()), format_iomem(file->iomem()));
    EXPECT_EQ(builtin->free_region_limit().end, file->free_region_limit().end);
    EXPECT_FALSE(builtin->system_ram().empty());
  }
  auto missing = builtin_machine("nope");
  ASSERT_TRUE(missing.is_error());
  EXPECT_EQ(missing.error().code(), Errno::kENOENT);
  EXPECT_NE(missing.error().message().find("vm-43bit-pci-full"), std::string::npos);
}

TEST(MachineToml, ParsesEveryKey) {
  auto m = parse_machine_toml(R"(
name = "full"
description = "every key"
arch = "amd64"
paging = 5
phys_bits = 52
kaslr = false
kaslr_padding_tb = 3
p2pdma = true
[[reserved]]
start = 0
end = 4095
[[ram]]
start = 4294967296
size = 1073741824
[[pci]]
start = "0x4000000000"
size = "256GiB"
[[pci]]
name = "PCI Bus 0000:80"
start = "1TiB"
end = "0x1ffffffffff"
[[resource]]
name = "ACPI Tables"
start = "0x1000"
size = "4k"
)",
                              "full.toml", "");
  ASSERT_TRUE(m.is_ok()) << m.error().to_string();
  const MachineConfig& c = m->config();
  EXPECT_EQ(c.name, "full");
  EXPECT_EQ(c.description, "every key");
  EXPECT_EQ(c.arch, arch::ArchKind::kX86_64);
  EXPECT_EQ(c.paging, arch::PagingMode::kFiveLevel);
  EXPECT_EQ(c.phys_bits, 52u);
  EXPECT_EQ(c.kaslr, Kaslr::kOff);
  EXPECT_EQ(c.kaslr_padding_tb, 3u);
  EXPECT_EQ(c.p2pdma, P2pDma::kOn);
  EXPECT_EQ(format_iomem(m->iomem()),
            "00000000-00000fff : Reserved\n"
            "00001000-00001fff : ACPI Tables\n"
            "100000000-13fffffff : System RAM\n"
            "4000000000-7fffffffff : PCI Bus 0000:00\n"
            "10000000000-1ffffffffff : PCI Bus 0000:80\n");
  const auto top = *m->iomem().children(m->iomem().root());
  EXPECT_EQ(top[1].desc, IoresDesc::kAcpiTables);
  EXPECT_EQ(top[2].flags, IoresourceFlags::kSystemRam | IoresourceFlags::kBusy);
  EXPECT_EQ(top[3].flags, IoresourceFlags::kMem | IoresourceFlags::kWindow);
  EXPECT_EQ(top[0].desc, IoresDesc::kReserved);
  EXPECT_EQ(m->system_ram(), (std::vector<PhysRange>{R(0x1'0000'0000, 0x1'3fff'ffff)}));

  auto arm = parse_machine_toml(R"(
name = "a"
arch = "aarch64"
phys_bits = 48
memstart_addr = "0x80000000"
arm64_physmem_end = "before-fix"
[[ram]]
start = "0x80000000"
size = "2GiB"
)",
                                "a.toml", "");
  ASSERT_TRUE(arm.is_ok()) << arm.error().to_string();
  EXPECT_EQ(arm->config().memstart_addr, PhysAddr(0x8000'0000));
  EXPECT_EQ(arm->config().arm64_physmem_end, Arm64PhysmemEnd::kBeforeFix);
}

TEST(MachineToml, RefusesBadDescriptionsNamingTheKey) {
  struct Case {
    std::string text;
    const char* message;
  };
  const std::string base = "name = \"m\"\narch = \"x86_64\"\nphys_bits = 40\n";
  const std::string ram = "[[ram]]\nstart = \"0x100000000\"\nsize = \"4GiB\"\n";
  const Case cases[] = {
      {base + "colour = \"red\"\n" + ram, "t.toml:4: unknown key 'colour'"},
      {base + "kaslr = \"yes\"\n" + ram,
       "t.toml:4: key 'kaslr': expected a boolean (true or false), got a string"},
      {"name = 5\narch = \"x86_64\"\nphys_bits = 40\n" + ram,
       "t.toml:1: key 'name': expected a string, got an integer"},
      {"arch = \"x86_64\"\nphys_bits = 40\n" + ram, "missing required key 'name'"},
      {"name = \"m\"\nphys_bits = 40\n" + ram, "missing required key 'arch'"},
      {"name = \"m\"\narch = \"x86_64\"\n" + ram, "missing required key 'phys_bits'"},
      {"name = \"m\"\narch = \"sparc\"\nphys_bits = 40\n" + ram, "unknown arch 'sparc'"},
      {"name = \"m\"\narch = \"x86_64\"\nphys_bits = 60\n" + ram,
       "key 'phys_bits': 60 is outside 32..52"},
      {base, "no memory map"},
      {base + "[[ram]]\nstart = \"0x100000000\"\n", "'ram[0]' needs exactly one of 'end' and 'size'"},
      {base + "[[ram]]\nsize = \"1GiB\"\n", "missing key 'ram[0].start'"},
      {base + "[[ram]]\nstart = \"0x1000\"\nsize = \"4GiB\"\nend = \"0x2000\"\n",
       "needs exactly one of 'end' and 'size'"},
      {base + "[[ram]]\nstart = \"0x1000\"\nsize = \"4 parsecs\"\n",
       "t.toml:6: key 'ram[0].size': size '4 parsecs'"},
      {base + "[[ram]]\nstart = -5\nsize = \"1GiB\"\n", "key 'ram[0].start': -5 is negative"},
      {base + "[[ram]]\nstart = \"0x1000\"\nsize = \"4GiB\"\nname = \"x\"\n",
       "t.toml:7: unknown key 'ram[0].name'"},
      {base + ram + "[[pci]]\nstart = \"0x13fffffff\"\nsize = \"1GiB\"\n",
       "t.toml:7: 'pci[0]' [P0x13fffffff-P0x17ffffffe] overlaps 'ram[0]' "
       "[P0x100000000-P0x1ffffffff] (t.toml:4)"},
      {base + "[[ram]]\nstart = \"0xff00000000\"\nsize = \"8GiB\"\n",
       "t.toml:4: 'ram[0]' [P0xff00000000-P0x100ffffffff] reaches beyond the 40-bit physical "
       "address space"},
      {base + "[[resource]]\nstart = \"0x1000\"\nsize = \"4k\"\n", "missing key 'resource[0].name'"},
      {base + "paging = 3\n" + ram, "t.toml:4: key 'paging': 3 is not 4 or 5"},
      {base + "memstart_addr = \"0x80000000\"\n" + ram, "key 'memstart_addr' is for arm64 only"},
      {"name = \"m\"\narch = \"arm64\"\nphys_bits = 48\n" + ram,
       "missing key 'memstart_addr' (required for arm64)"},
      {"name = \"m\"\narch = \"arm64\"\nphys_bits = 48\npaging = 5\nmemstart_addr = 0\n" + ram,
       "key 'paging' is for x86_64 only"},
      {"name = \"m\"\narch = \"arm64\"\nphys_bits = 48\nmemstart_addr = 0\n"
       "arm64_physmem_end = \"sometimes\"\n" + ram,
       "key 'arm64_physmem_end': 'sometimes' is not"},
      {base + "ram = 5\n", "key 'ram': expected an array of tables ([[ram]]), got an integer"},
      {base + "name = \"again\"\n", "t.toml:4: TOML syntax"},
      {base + "iomem = \"x.iomem\"\n" + ram, "'iomem' and range tables"},
      {base + "iomem = \"x.iomem\"\n", "key 'iomem' needs a machine file on disk"},
  };
  for (const Case& c : cases) {
    auto m = parse_machine_toml(c.text, "t.toml", "");
    ASSERT_TRUE(m.is_error()) << c.text;
    EXPECT_EQ(m.error().code(), Errno::kEINVAL) << c.text;
    EXPECT_NE(m.error().message().find(c.message), std::string::npos)
        << "input:\n" << c.text << "\nmessage: " << m.error().message();
  }
  EXPECT_TRUE(parse_machine_toml(kMinimal, "t.toml", "").is_ok());
}

TEST(MachineToml, IomemDumpRelativeToTheFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("dpmm-phys-test-{}", getpid());
  std::filesystem::create_directories(dir / "dumps");
  std::filesystem::copy_file(
      std::string(DPMM_PHYS_TESTDATA) + "/13-vm-lecture-toplevel-only.iomem",
      dir / "dumps" / "vm.iomem", std::filesystem::copy_options::overwrite_existing);
  {
    std::ofstream out(dir / "vm.toml");
    out << "name = \"lecture-vm\"\narch = \"x86_64\"\nphys_bits = 39\niomem = \"dumps/vm.iomem\"\n";
  }
  auto m = load_machine_file((dir / "vm.toml").string());
  ASSERT_TRUE(m.is_ok()) << m.error().to_string();
  EXPECT_EQ(m->iomem().size(), 9u);
  EXPECT_EQ(m->system_ram_bytes(), 0x1'fff9'ec00u);
  ASSERT_EQ(m->notes().size(), 1u);
  EXPECT_NE(m->notes()[0].find("no indented lines"), std::string::npos);
  {
    std::ofstream out(dir / "bad.toml");
    out << "name = \"b\"\narch = \"x86_64\"\nphys_bits = 38\niomem = \"dumps/vm.iomem\"\n";
  }
  auto narrow = load_machine_file((dir / "bad.toml").string());
  ASSERT_TRUE(narrow.is_error());
  EXPECT_NE(narrow.error().message().find("beyond the 38-bit physical address space"),
            std::string::npos);
  {
    std::ofstream out(dir / "missing.toml");
    out << "name = \"b\"\narch = \"x86_64\"\nphys_bits = 39\niomem = \"nothere.iomem\"\n";
  }
  EXPECT_EQ(load_machine_file((dir / "missing.toml").string()).error().code(), Errno::kENOENT);
  EXPECT_EQ(load_machine_file((dir / "absent.toml").string()).error().code(), Errno::kENOENT);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dpmm::phys
