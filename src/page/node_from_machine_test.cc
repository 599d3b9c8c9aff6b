#include "page/node_from_machine.h"

#include <gtest/gtest.h>

#include "phys/builtin_machines.h"

namespace dpmm::page {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

Pfn pfn_at(uint64_t bytes) { return Pfn::from_phys(PhysAddr(bytes)); }

TEST(NodeFromMachineTest, Arm64ServerZonesAndWindow) {
  phys::Machine m = phys::builtin_machine("arm64-server").value();
  NodeConfig c = node_config_from_machine(m, NodeOptions{}).value();
  ASSERT_EQ(c.ram.size(), 2u);
  EXPECT_EQ(c.ram[0], (PfnRange{pfn_at(2 * kGiB), pfn_at(4 * kGiB)}));
  EXPECT_EQ(c.ram[1], (PfnRange{pfn_at(34 * kGiB), pfn_at(96 * kGiB)}));
  EXPECT_EQ(c.window.start, pfn_at(2 * kGiB));

  auto node = node_from_machine(m, NodeOptions{}).value();
  EXPECT_EQ(node->zone(ZoneType::kDma32).stats().present, PageCount(2 * kGiB / 4096));
  EXPECT_EQ(node->zone(ZoneType::kNormal).stats().present, PageCount(62 * kGiB / 4096));
  EXPECT_TRUE(node->memmap().pfn_valid(pfn_at(34 * kGiB)));
}

// The seed's arm64 crash, end to end: before eeb8fdfcf090 request_free_mem_region places the
// device-private window at the top of the 48-bit space, outside the vmemmap, and every
// descriptor lookup there is reported instead of reading past the end of vmemmap.
TEST(NodeFromMachineTest, Arm64BeforeFixWindowIsOutsideTheVmemmap) {
  phys::Machine base = phys::builtin_machine("arm64-server").value();
  phys::MachineConfig cfg = base.config();
  cfg.arm64_physmem_end = phys::Arm64PhysmemEnd::kBeforeFix;
  phys::Machine m = base.with_config(cfg).value();
  auto node = node_from_machine(m, NodeOptions{}).value();
  phys::ResourceInfo res = m.request_free_mem_region(16 * kGiB, "devpriv").value();
  const Pfn first = Pfn::from_phys(res.range.start);
  Result<Page*> r = node->memmap().pfn_to_page(first);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEFAULT);
  EXPECT_NE(r.error().message().find("beyond the end of vmemmap"), std::string::npos);
  EXPECT_EQ(node->memmap()
                .add_sections(first, PageCount::from_bytes_round_up(16 * kGiB))
                .error()
                .code(),
            Errno::kERANGE);

  // After the fix the window lands inside the vmemmap and can get a memmap.
  phys::Machine fixed = phys::builtin_machine("arm64-server").value();
  auto node2 = node_from_machine(fixed, NodeOptions{}).value();
  phys::ResourceInfo res2 = fixed.request_free_mem_region(16 * kGiB, "devpriv").value();
  const Pfn first2 = Pfn::from_phys(res2.range.start);
  EXPECT_TRUE(node2->memmap().in_window(first2));
  EXPECT_TRUE(node2->memmap().add_sections(first2, PageCount(16 * kGiB / 4096)).is_ok());
}

}  // namespace
}  // namespace dpmm::page
