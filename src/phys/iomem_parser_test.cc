#include "phys/iomem_parser.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <fstream>
#include <sstream>

#include "phys/machine.h"

namespace dpmm::phys {
namespace {

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

std::string read_testdata(const std::string& name) {
  std::ifstream in(std::string(DPMM_PHYS_TESTDATA) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint64_t top_level_ram(const ResourceTree& t) {
  uint64_t total = 0;
  const std::vector<ResourceInfo> top = *t.children(t.root());
  for (const ResourceInfo& r : top) {
    if (r.name == "System RAM") total += r.range.size();
  }
  return total;
}

bool has_line(const ResourceTree& t, unsigned depth, uint64_t start, uint64_t end,
              std::string_view name) {
  for (const ResourceInfo& r : t.walk()) {
    if (r.depth == depth && r.range == R(start, end) && r.name == name) return true;
  }
  return false;
}

bool has_warning(const ParsedIomem& p, std::string_view what) {
  for (const std::string& w : p.warnings) {
    if (w.find(what) != std::string::npos) return true;
  }
  return false;
}

struct DumpExpectation {
  const char* file;
  size_t resources;
  size_t top_level;
  uint64_t ram_bytes;  // sum of top-level "System RAM"
};

// Counted independently of the parser (by a script over the files: lines, unindented lines,
// and the System RAM ranges summed).
constexpr DumpExpectation kDumps[] = {
    {"01-qemu-ovmf-xeon4310-guest-partial.iomem", 8, 2, 0x1'8000'0000},
    {"04-intel-laptop-tb-39bit.iomem", 101, 32, 0x1'f39b'd000},
    {"05-qemu-q35-8g-guest.iomem", 41, 16, 0x1'fff7'bc00},
    {"06-intel-laptop-r8169-ath.iomem", 113, 38, 0x3'f827'd000},
    {"08-vmware-guest-esxi.iomem", 119, 22, 0x1'fff6'd800},
    {"10-intel-xeon-hp-pmem-server.iomem", 98, 35, 0x6'fbc7'f000},
    {"13-vm-lecture-toplevel-only.iomem", 9, 9, 0x1'fff9'ec00},
};

TEST(IomemParser, EveryRealDumpParsesAndPrintsBackIdentically) {
  for (const DumpExpectation& d : kDumps) {
    SCOPED_TRACE(d.file);
    const std::string text = read_testdata(d.file);
    auto p = parse_iomem(text);
    ASSERT_TRUE(p.is_ok()) << p.error().to_string();
    EXPECT_EQ(p->resource_count, d.resources);
    EXPECT_EQ(p->tree->size(), d.resources);
    EXPECT_EQ(p->tree->children(p->tree->root())->size(), d.top_level);
    EXPECT_EQ(top_level_ram(*p->tree), d.ram_bytes);
    EXPECT_EQ(format_iomem(*p->tree), text);
  }
}

TEST(IomemParser, SpecificLinesOfTheRealDumps) {
  auto q01 = MUST(parse_iomem(read_testdata(kDumps[0].file)), "parses");
  EXPECT_TRUE(has_line(*q01.tree, 2, 0x3800'0000'0000, 0x3800'000f'ffff, "mlx5_core"));
  EXPECT_TRUE(has_warning(q01, "starts at P0x100000000, not at 0"));

  auto lap = MUST(parse_iomem(read_testdata(kDumps[1].file)), "parses");
  // The deepest lines sit at MAX_IORES_LEVEL.
  EXPECT_TRUE(has_line(*lap.tree, 5, 0xa1f0'0000, 0xa1f0'ffff, "xhci-hcd"));
  EXPECT_TRUE(has_line(*lap.tree, 5, 0xa200'0000, 0xa203'ffff, "thunderbolt"));
  EXPECT_TRUE(has_line(*lap.tree, 3, 0xfe01'0000, 0xfe01'0fff, "0000:00:1f.5 0000:00:1f.5"));
  EXPECT_TRUE(has_line(*lap.tree, 0, 0x40'0000'0000, 0x7f'ffff'ffff, "PCI Bus 0000:00"));
  EXPECT_TRUE(lap.warnings.empty());

  auto q35 = MUST(parse_iomem(read_testdata(kDumps[2].file)), "parses");
  EXPECT_TRUE(has_line(*q35.tree, 0, 0xb000'0000, 0xbfff'ffff, "PCI ECAM 0000 [bus 00-ff]"));
  EXPECT_TRUE(has_line(*q35.tree, 2, 0xb000'0000, 0xbfff'ffff, "pnp 00:04"));
  const ResourceInfo ecam = q35.tree->children(q35.tree->root())->at(6);
  EXPECT_EQ(ecam.name, "PCI ECAM 0000 [bus 00-ff]");
  EXPECT_EQ(ecam.flags, IoresourceFlags::kMem | IoresourceFlags::kBusy);

  auto pmem = MUST(parse_iomem(read_testdata(kDumps[5].file)), "parses");
  EXPECT_TRUE(has_line(*pmem.tree, 0, 0x1'0000'0000, 0x1'55df'ffff, "Persistent Memory (legacy)"));
  EXPECT_TRUE(has_line(*pmem.tree, 1, 0x8'5800'0000, 0x8'77ff'ffff, "Crash kernel"));
  for (const ResourceInfo& r : pmem.tree->walk()) {
    if (r.name == "Persistent Memory (legacy)") {
      EXPECT_EQ(r.desc, IoresDesc::kPersistentMemoryLegacy);
      EXPECT_EQ(r.flags, IoresourceFlags::kMem);
    }
    if (r.name == "Crash kernel") {
      EXPECT_EQ(r.desc, IoresDesc::kCrashKernel);
    }
  }

  auto top = MUST(parse_iomem(read_testdata(kDumps[6].file)), "parses");
  EXPECT_TRUE(has_warning(top, "no indented lines"));
}

TEST(IomemParser, RealDumpsAsMachines) {
  // The cloud micro-VM with 39 physical bits (its 64-bit window ends at 2^39 - 1): the search
  // starts at 2^39 - 80 GiB, inside [256 GiB, 512 GiB) "PCI Bus 0000:00", and steps to
  // 0x40_0000_0000 - 0x14_0000_0000 = 0x2c_0000_0000, above RAM (which ends at 9 GiB).
  for (const char* file : {kDumps[6].file, kDumps[1].file}) {
    SCOPED_TRACE(file);
    auto p = MUST(parse_iomem(read_testdata(file)), "parses");
    MachineConfig cfg;
    cfg.name = file;
    cfg.phys_bits = 39;
    Machine m = MUST(Machine::create(cfg, std::move(p.tree)), "fits 39 bits");
    auto r = m.request_free_mem_region(80ull << 30, "nvidia-uvm-hmm");
    ASSERT_TRUE(r.is_ok()) << r.error().to_string();
    EXPECT_EQ(r->range, R(0x2c'0000'0000, 0x3f'ffff'ffff));
  }
  // The same dump cannot be a 38-bit machine: its window reaches 2^39 - 1.
  MachineConfig cfg;
  cfg.name = "too-narrow";
  cfg.phys_bits = 38;
  auto narrow = Machine::create(cfg, MUST(parse_iomem(read_testdata(kDumps[6].file)), "").tree);
  EXPECT_EQ(narrow.error().code(), Errno::kEINVAL);
}

TEST(IomemParser, ThisMachinesOwnProcIomem) {
  auto p = parse_iomem_file("/proc/iomem");
  if (p.is_error() && p.error().code() == Errno::kEACCES) {
    GTEST_SKIP() << "cannot read /proc/iomem with addresses: " << p.error().message();
  }
  ASSERT_TRUE(p.is_ok()) << p.error().to_string();
  std::ifstream in("/proc/iomem");
  std::ostringstream ss;
  ss << in.rdbuf();
  // /proc/iomem can change between two reads (hotplug); the printed form is what was parsed.
  EXPECT_GT(p->resource_count, 0u);
  EXPECT_GT(top_level_ram(*p->tree), 0u) << "no System RAM in this machine's /proc/iomem";
  EXPECT_EQ(format_iomem(*p->tree), ss.str());
}

TEST(IomemParser, ToleratesHowPeoplePostDumps) {
  // CRLF, trailing blanks, tabs around the separator and as indentation, 16-digit addresses,
  // uppercase hex, blank lines, a byte-order mark, names with colons and spaces.
  const std::string text =
      "\xEF\xBB\xBF"
      "0000000000000000-0000000000000fff : Reserved\r\n"
      "\r\n"
      "00001000-0009FBFF\t:\tSystem RAM   \r\n"
      "\t00002000-00002fff : a: b : c\r\n"
      "100000000-23fffffff : System RAM\t\n"
      "  100000000-100ffffff : Kernel code\n";
  auto p = parse_iomem(text);
  ASSERT_TRUE(p.is_ok()) << p.error().to_string();
  EXPECT_EQ(p->resource_count, 5u);
  EXPECT_TRUE(has_line(*p->tree, 1, 0x2000, 0x2fff, "a: b : c"));
  EXPECT_TRUE(has_line(*p->tree, 0, 0x1000, 0x9fbff, "System RAM"));
  EXPECT_EQ(format_iomem(*p->tree),
            "00000000-00000fff : Reserved\n"
            "00001000-0009fbff : System RAM\n"
            "  00002000-00002fff : a: b : c\n"
            "100000000-23fffffff : System RAM\n"
            "  100000000-100ffffff : Kernel code\n");
}

TEST(IomemParser, ElidedDumpsAreReported) {
  auto p = parse_iomem(
      "00000000-00000fff : Reserved\n"
      "...\n"
      "4000000000-7fffffffff : PCI Bus 0000:00\n");
  ASSERT_TRUE(p.is_ok());
  EXPECT_TRUE(has_warning(*p, "1 '...' line(s)"));
  EXPECT_TRUE(has_warning(*p, "no top-level 'System RAM' line"));
}

TEST(IomemParser, NonRootDumpIsRefused) {
  auto p = parse_iomem(
      "00000000-00000000 : Reserved\n"
      "00000000-00000000 : System RAM\n"
      "  00000000-00000000 : Kernel code\n");
  ASSERT_TRUE(p.is_error());
  EXPECT_EQ(p.error().code(), Errno::kEACCES);
  EXPECT_EQ(p.error().message(),
            "addresses are all zero: /proc/iomem was read without root; run as root");
}

TEST(IomemParser, MalformedInputNamesTheLineAndTheProblem) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "empty input"},
      {"\n  \n\r\n", "empty input"},
      {"0000-0fff : a\n00zz-1fff : b\n", "line 2: expected '-' after the start address"},
      {"g000-0fff : a\n", "line 1: bad hex in the start address at 'g000-0fff : a'"},
      {"0000-xfff : a\n", "line 1: bad hex in the end address"},
      {"00000000000000000-1 : a\n", "line 1: the start address '00000000000000000-1 : a' has "
                                    "more than 16 hex digits"},
      {"2000-1fff : a\n", "line 1: start 0x2000 is above end 0x1fff"},
      {"0000-0fff : a\n  0800-1fff : b\n", "line 2 (800-1fff : b) lies outside its parent on "
                                           "line 1 (0-fff : a)"},
      {"0000-0fff : a\n0800-1fff : b\n", "line 2 (800-1fff : b) overlaps its sibling on line 1"},
      {"2000-2fff : a\n0000-0fff : b\n", "line 2 (0-fff : b) comes before its sibling on line 1"},
      {"0000-0fff : a\n    0000-00ff : b\n", "line 2: indentation jumps from level 1 to level 2"},
      {"  0000-0fff : a\n", "line 1: indentation jumps from level 0 to level 1"},
      {"0000-0fff : a\n   0000-00ff : b\n", "line 2: indented by 3 spaces"},
      {"0000-0fff a\n", "line 1: no ' : ' between the address range and the name"},
      {"0000-0fff\n", "line 1: no ' : ' between the address range and the name (found the end "
                      "of the line)"},
      {"0000\n", "line 1: expected '-' after the start address, found the end of the line"},
  };
  for (const Case& c : cases) {
    auto p = parse_iomem(c.text);
    ASSERT_TRUE(p.is_error()) << c.text;
    EXPECT_EQ(p.error().code(), Errno::kEINVAL) << c.text;
    EXPECT_NE(p.error().message().find(c.message), std::string::npos)
        << "input: " << c.text << "\nmessage: " << p.error().message();
  }
}

TEST(IomemParser, DeeperThanMaxIoresLevelNestsAtTheCap) {
  // The kernel prints depth 6 at the indentation of depth 5.
  const std::string text =
      "00000000-ffffffff : l0\n"
      "  00000000-0fffffff : l1\n"
      "    00000000-00ffffff : l2\n"
      "      00000000-000fffff : l3\n"
      "        00000000-0000ffff : l4\n"
      "          00000000-00000fff : l5\n"
      "          00000000-000000ff : l6\n"
      "          00001000-00001fff : l5b\n";
  auto p = parse_iomem(text);
  ASSERT_TRUE(p.is_ok()) << p.error().to_string();
  EXPECT_TRUE(has_line(*p->tree, 5, 0x0, 0xfff, "l5"));
  EXPECT_TRUE(has_line(*p->tree, 6, 0x0, 0xff, "l6"));
  EXPECT_TRUE(has_line(*p->tree, 5, 0x1000, 0x1fff, "l5b"));
  EXPECT_EQ(format_iomem(*p->tree), text);
}

// Whatever bytes come in, the parser answers (a tree or an error) and never crashes; a tree it
// accepts prints and re-parses to the same text.
void check_parse_total(const std::string& text) {
  auto p = parse_iomem(text);
  if (p.is_error()) {
    RC_ASSERT(!p.error().message().empty());
    return;
  }
  const std::string printed = format_iomem(*p->tree);
  auto again = parse_iomem(printed);
  RC_ASSERT(again.is_ok());
  RC_ASSERT(format_iomem(*again->tree) == printed);
}

RC_GTEST_PROP(IomemParserProperty, RandomBytesNeverCrash, ()) {
  const auto bytes = *rc::gen::container<std::string>(rc::gen::arbitrary<char>());
  check_parse_total(bytes);
}

RC_GTEST_PROP(IomemParserProperty, RandomTextFromTheAlphabetNeverCrashes, ()) {
  const auto text = *rc::gen::container<std::string>(
      rc::gen::elementOf(std::string("0123456789abcdefABCDEF- :\t\r\n.xSystemRAM")));
  check_parse_total(text);
}

RC_GTEST_PROP(IomemParserProperty, MutatedRealDumpsNeverCrash, ()) {
  std::string text = read_testdata(*rc::gen::elementOf(std::vector<std::string>{
      kDumps[0].file, kDumps[1].file, kDumps[2].file, kDumps[3].file, kDumps[4].file,
      kDumps[5].file, kDumps[6].file}));
  const int edits = *rc::gen::inRange(1, 8);
  for (int i = 0; i < edits && !text.empty(); ++i) {
    const size_t at = *rc::gen::inRange<size_t>(0, text.size());
    switch (*rc::gen::inRange(0, 5)) {
      case 0: text[at] = *rc::gen::arbitrary<char>(); break;
      case 1: text.erase(at, *rc::gen::inRange<size_t>(1, 40)); break;
      case 2: text.insert(at, *rc::gen::elementOf(std::vector<std::string>{
                                  "  ", "\n", "-", " : ", "f", "\t", "...\n", "\r"})); break;
      case 3: {  // duplicate a slice elsewhere
        const size_t len = *rc::gen::inRange<size_t>(1, 80);
        const std::string slice = text.substr(at, len);
        text.insert(*rc::gen::inRange<size_t>(0, text.size()), slice);
        break;
      }
      case 4: text[at] = *rc::gen::elementOf(std::string("0f9a ")); break;
    }
  }
  check_parse_total(text);
}

}  // namespace
}  // namespace dpmm::phys
