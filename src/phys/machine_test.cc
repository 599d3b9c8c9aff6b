// The four built-in machines against the numbers free-mem-region.md §3 and §6 give, computed
// by hand in the comments.
#include "phys/machine.h"

#include <gtest/gtest.h>

#include "phys/builtin_machines.h"

namespace dpmm::phys {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kTiB = uint64_t{1} << 40;

PhysRange R(uint64_t start, uint64_t end) { return PhysRange{PhysAddr(start), PhysAddr(end)}; }

Machine builtin(std::string_view name) { return MUST(builtin_machine(name), "built in"); }

TEST(Machine, Vm43BitFailsWithErangeNamingTheLargestWindow) {
  Machine m = builtin("vm-43bit-pci-full");
  EXPECT_EQ(m.iomem_end(), PhysAddr((uint64_t{1} << 43) - 1));
  // RAM ends at 0x4_8000_0000 (18 GiB): KASLR's end is (1 + 10) TiB - 1, above 2^43 - 1.
  EXPECT_EQ(m.direct_map_physmem_end().end, PhysAddr(11 * kTiB - 1));
  const PhysLimit lim = m.free_region_limit();
  EXPECT_EQ(lim.end, PhysAddr(0x7ff'ffff'ffff));
  EXPECT_EQ(lim.cause, LimitCause::kPhysBits);
  EXPECT_EQ(m.system_ram_bytes(), 0x9ec00 + 0x7ff0'0000 + 14 * kGiB);

  auto r = m.request_free_mem_region(80 * kGiB, "nvidia-uvm-hmm");
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kERANGE);
  EXPECT_EQ(errno_neg(r.error().code()), -34);
  const std::string& msg = r.error().message();
  EXPECT_NE(msg.find("no free 80 GiB window"), std::string::npos) << msg;
  EXPECT_NE(msg.find("phys_bits: iomem_resource.end = 2^43 - 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("window below the limit: 2 GiB at [P0x480000000-P0x4ffffffff]"),
            std::string::npos)
      << msg;

  const FreeRegionAnalysis a = m.free_region_analysis(80 * kGiB);
  EXPECT_EQ(a.largest_window, R(0x4'8000'0000, 0x4'ffff'ffff));
  EXPECT_EQ(a.largest_gap, R(0x4'8000'0000, 0x4'ffff'ffff));
  EXPECT_FALSE(a.largest_gap_above_limit.has_value());
  EXPECT_EQ(a.align, 128u << 20);

  // What is left does fit 2 GiB: the first candidate 2^43 - 2 GiB lies in the PCI window, so
  // the search steps down to the window's start minus 2 GiB = 0x4_8000_0000.
  auto fits = m.request_free_mem_region(2 * kGiB, "small");
  ASSERT_TRUE(fits.is_ok()) << fits.error().to_string();
  EXPECT_EQ(fits->range, R(0x4'8000'0000, 0x4'ffff'ffff));
  EXPECT_EQ(fits->desc, IoresDesc::kDevicePrivateMemory);
}

TEST(Machine, Workstation46BitSucceedsWhereTheKernelWould) {
  Machine m = builtin("workstation-46bit");
  // RAM ends at 0x20_8000_0000 = 130 GiB -> ceil(130 GiB / 1 TiB) = 1, + padding 10 = 11 TiB.
  // DIRECT_MAP_PHYSMEM_END = 11 TiB - 1 = 0xaff_ffff_ffff, below iomem end 2^46 - 1.
  const PhysLimit lim = m.free_region_limit();
  EXPECT_EQ(lim.end, PhysAddr(0xaff'ffff'ffff));
  EXPECT_EQ(lim.cause, LimitCause::kKaslrDirectMapEnd);
  // gfr_start = 0xaff_ffff_ffff - 80 GiB + 1 = 0xb00_0000_0000 - 0x14_0000_0000 = 0xaec_0000_0000;
  // nothing lives up there, so the first candidate is taken.
  auto r = m.request_free_mem_region(80 * kGiB, "nvidia-uvm-hmm");
  ASSERT_TRUE(r.is_ok()) << r.error().to_string();
  EXPECT_EQ(r->range, R(0xaec'0000'0000, 0xaff'ffff'ffff));
  EXPECT_EQ(r->name, "nvidia-uvm-hmm");
  EXPECT_EQ(r->flags, IoresourceFlags::kMem | IoresourceFlags::kBusy);
  // Each further device gets the next window down: the previous one is a top-level resource
  // now, so the search steps to its start - 80 GiB.
  //   0xaec_0000_0000 - 0x14_0000_0000 = 0xad8_0000_0000
  //   0xad8_0000_0000 - 0x14_0000_0000 = 0xac4_0000_0000
  auto r2 = m.request_free_mem_region(80 * kGiB, "gpu1");
  auto r3 = m.request_free_mem_region(80 * kGiB, "gpu2");
  ASSERT_TRUE(r2.is_ok() && r3.is_ok());
  EXPECT_EQ(r2->range.start, PhysAddr(0xad8'0000'0000));
  EXPECT_EQ(r3->range.start, PhysAddr(0xac4'0000'0000));
  // A size that is not a section multiple is rounded up to 128 MiB: 100 MiB -> 128 MiB, at
  // 0xac4_0000_0000 - 128 MiB = 0xac3_f800_0000.
  auto r4 = m.request_free_mem_region(100u << 20, "odd");
  ASSERT_TRUE(r4.is_ok());
  EXPECT_EQ(r4->range, R(0xac3'f800'0000, 0xac3'ffff'ffff));
}

TEST(Machine, StepsPastAnUnalignedObstacle) {
  Machine m = builtin("workstation-46bit");
  // A resource whose start is not on the 128 MiB grid, right under the limit:
  // [0xaf0_0400_0000, 0xaff_ffff_ffff]. Candidates are 0xaec_0000_0000 - k * 128 MiB; the
  // highest whose window ends below 0xaf0_0400_0000 must start at or below
  // 0xaf0_0400_0000 - 0x14_0000_0000 = 0xadc_0400_0000, i.e. 0xadc_0000_0000 (k = 512 + 0).
  ASSERT_TRUE(m.iomem()
                  .request_resource(m.iomem().root(),
                                    NewResource{R(0xaf0'0400'0000, 0xaff'ffff'ffff), "blocker"})
                  .is_ok());
  auto r = m.request_free_mem_region(80 * kGiB, "dev");
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->range.start, PhysAddr(0xadc'0000'0000));
}

TEST(Machine, KaslrFlipsTheErr34Machine) {
  Machine on = builtin("x86-kaslr-err34");
  // RAM ends at 64 GiB -> (1 + 10) TiB - 1.
  EXPECT_EQ(on.free_region_limit().end, PhysAddr(11 * kTiB - 1));
  EXPECT_EQ(on.free_region_limit().cause, LimitCause::kKaslrDirectMapEnd);
  auto fail = on.request_free_mem_region(80 * kGiB, "nvidia-uvm-hmm");
  ASSERT_TRUE(fail.is_error());
  EXPECT_EQ(fail.error().code(), Errno::kERANGE);
  const std::string& msg = fail.error().message();
  EXPECT_NE(msg.find("kaslr_direct_map_end"), std::string::npos) << msg;
  EXPECT_NE(msg.find("64 GiB at [P0x1000000000-P0x1fffffffff]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("above the limit (never searched): 52 TiB at "
                     "[P0xc0000000000-P0x3fffffffffff]"),
            std::string::npos)
      << msg;

  MachineConfig cfg = on.config();
  cfg.kaslr = Kaslr::kOff;
  Machine off = MUST(on.with_config(cfg), "valid");
  EXPECT_EQ(off.free_region_limit().end, PhysAddr((uint64_t{1} << 46) - 1));
  // With nokaslr: 2^46 - 80 GiB = 0x4000_0000_0000 - 0x14_0000_0000 = 0x3fec_0000_0000.
  auto ok = off.request_free_mem_region(80 * kGiB, "nvidia-uvm-hmm");
  ASSERT_TRUE(ok.is_ok()) << ok.error().to_string();
  EXPECT_EQ(ok->range, R(0x3fec'0000'0000, 0x3fff'ffff'ffff));

  // CONFIG_PCI_P2PDMA=y keeps the direct map untrimmed too (7ffb791423c7).
  cfg.kaslr = Kaslr::kOn;
  cfg.p2pdma = P2pDma::kOn;
  Machine p2p = MUST(on.with_config(cfg), "valid");
  EXPECT_EQ(p2p.free_region_limit().end, PhysAddr((uint64_t{1} << 46) - 1));
  EXPECT_TRUE(p2p.request_free_mem_region(80 * kGiB, "x").is_ok());
  // The original machine was not changed by its copies.
  EXPECT_TRUE(on.request_free_mem_region(80 * kGiB, "again").is_error());
}

TEST(Machine, PaddingAndFiveLevelPaging) {
  Machine m = builtin("workstation-46bit");
  MachineConfig cfg = m.config();
  cfg.kaslr_padding_tb = 0;  // ceil(130 GiB / 1 TiB) + 0 = 1 TiB
  EXPECT_EQ(MUST(m.with_config(cfg), "ok").free_region_limit().end, PhysAddr(kTiB - 1));
  cfg.kaslr_padding_tb = 63;  // 1 + 63 = 64 TiB: not below 2^(46-40) TiB, so no trim
  Machine untrimmed = MUST(m.with_config(cfg), "ok");
  EXPECT_EQ(untrimmed.direct_map_physmem_end().cause, LimitCause::kMaxPhysmemBits);
  EXPECT_EQ(untrimmed.free_region_limit().cause, LimitCause::kPhysBits);  // tie: 2^46 - 1
  cfg.kaslr_padding_tb = 10;
  cfg.paging = arch::PagingMode::kFiveLevel;
  cfg.phys_bits = 52;
  Machine la57 = MUST(m.with_config(cfg), "ok");
  EXPECT_EQ(la57.params().max_physmem_bits, 52u);
  EXPECT_EQ(la57.free_region_limit().end, PhysAddr(11 * kTiB - 1));
  cfg.kaslr = Kaslr::kOff;
  Machine la57_nokaslr = MUST(m.with_config(cfg), "ok");
  EXPECT_EQ(la57_nokaslr.free_region_limit().end, PhysAddr((uint64_t{1} << 52) - 1));
  // A 48-bit CPU with 4-level paging: iomem ends at 2^48 - 1 but MAX_PHYSMEM_BITS is 46.
  cfg.paging = arch::PagingMode::kFourLevel;
  cfg.phys_bits = 48;
  Machine wide = MUST(m.with_config(cfg), "ok");
  EXPECT_EQ(wide.iomem_end(), PhysAddr((uint64_t{1} << 48) - 1));
  EXPECT_EQ(wide.free_region_limit().end, PhysAddr((uint64_t{1} << 46) - 1));
  EXPECT_EQ(wide.free_region_limit().cause, LimitCause::kMaxPhysmemBits);
}

TEST(Machine, Arm64LinearMapEndBeforeAndAfterTheFix) {
  Machine after = builtin("arm64-server");
  EXPECT_EQ(after.iomem_end(), PhysAddr(~uint64_t{0}));
  // memstart_addr 0x8000_0000 + 2^47 - 1 = 0x8000_7fff_ffff.
  EXPECT_EQ(after.free_region_limit().end, PhysAddr(0x8000'7fff'ffff));
  EXPECT_EQ(after.free_region_limit().cause, LimitCause::kArm64LinearMapEnd);
  const arch::VmemmapWindow vm = arch::vmemmap_window(after.params(), after.config().memstart_addr);
  // 0x8000_8000_0000 - 0x14_0000_0000 = 0x7fec_8000_0000: inside the vmemmap.
  auto a = after.request_free_mem_region(80 * kGiB, "amdgpu");
  ASSERT_TRUE(a.is_ok());
  EXPECT_EQ(a->range.start, PhysAddr(0x7fec'8000'0000));
  EXPECT_TRUE(vm.contains(Pfn::from_phys(a->range.end)));

  MachineConfig cfg = after.config();
  cfg.arm64_physmem_end = Arm64PhysmemEnd::kBeforeFix;
  Machine before = MUST(after.with_config(cfg), "valid");
  EXPECT_EQ(before.free_region_limit().end, PhysAddr((uint64_t{1} << 48) - 1));
  EXPECT_EQ(before.free_region_limit().cause, LimitCause::kMaxPhysmemBits);
  // 2^48 - 80 GiB = 0xffec_0000_0000: beyond the linear map, outside the vmemmap -- the
  // pfn_to_page() past the end of vmemmap of the seed.
  auto b = before.request_free_mem_region(80 * kGiB, "amdgpu");
  ASSERT_TRUE(b.is_ok());
  EXPECT_EQ(b->range.start, PhysAddr(0xffec'0000'0000));
  EXPECT_FALSE(vm.contains(Pfn::from_phys(b->range.start)));
}

TEST(Machine, CreateRefusesBadConfigs) {
  auto tree = [] {
    auto t = std::make_unique<ResourceTree>();
    MUST(t->request_resource(t->root(),
                             NewResource{R(0x1'0000'0000, 0x1'ffff'ffff), "System RAM",
                                         IoresourceFlags::kSystemRam | IoresourceFlags::kBusy}),
         "empty tree");
    return t;
  };
  MachineConfig c;
  c.name = "t";
  c.phys_bits = 31;
  EXPECT_EQ(Machine::create(c, tree()).error().code(), Errno::kEINVAL);
  c.phys_bits = 32;  // RAM at 4 GiB lies beyond a 32-bit space
  auto beyond = Machine::create(c, tree());
  ASSERT_TRUE(beyond.is_error());
  EXPECT_NE(beyond.error().message().find("beyond the 32-bit physical address space"),
            std::string::npos);
  c.phys_bits = 40;
  c.arch = arch::ArchKind::kArm64;
  c.paging = arch::PagingMode::kFiveLevel;
  EXPECT_EQ(Machine::create(c, tree()).error().code(), Errno::kEINVAL);
  c.paging = arch::PagingMode::kFourLevel;
  c.memstart_addr = PhysAddr(0x80000123);
  EXPECT_EQ(Machine::create(c, tree()).error().code(), Errno::kEINVAL);
  c.memstart_addr = PhysAddr(0x80000000);
  EXPECT_TRUE(Machine::create(c, tree()).is_ok());
}

}  // namespace
}  // namespace dpmm::phys
