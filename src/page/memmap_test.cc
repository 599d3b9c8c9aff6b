#include "page/memmap.h"

#include <gtest/gtest.h>

#include "arch/arch.h"

namespace dpmm::page {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

Pfn pfn_at(uint64_t bytes) { return Pfn::from_phys(PhysAddr(bytes)); }

TEST(MemmapTest, SectionGeometry) {
  const arch::ArchParams a = arch::x86_64_params();
  Memmap mm(a, arch::vmemmap_window(a, PhysAddr(0)));
  EXPECT_EQ(mm.pages_per_section(), PageCount(32768));
  EXPECT_EQ(mm.nr_mem_sections(), uint64_t{1} << 19);
  EXPECT_EQ(mm.pfn_to_section_nr(pfn_at(4 * kGiB)), 32u);
  EXPECT_EQ(mm.section_nr_to_pfn(32), pfn_at(4 * kGiB));
  EXPECT_EQ(mm.nr_present_sections(), 0u);
}

TEST(MemmapTest, RoundTripAndHoles) {
  const arch::ArchParams a = arch::x86_64_params();
  Memmap mm(a, arch::vmemmap_window(a, PhysAddr(0)));
  const Pfn start = pfn_at(4 * kGiB);
  ASSERT_TRUE(mm.add_sections(start, PageCount(2 * 32768)).is_ok());
  EXPECT_EQ(mm.nr_present_sections(), 2u);
  EXPECT_EQ(mm.descriptor_bytes_reserved(), 2u * 32768 * 64);
  EXPECT_EQ(mm.descriptor_bytes_initialized(), 0u);

  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{32767}, uint64_t{32768},
                       uint64_t{65535}}) {
    const Pfn p = start + PageCount(off);
    ASSERT_TRUE(mm.pfn_valid(p));
    Page* page = mm.init_page(p, ZoneType::kNormal, 0, nullptr);
    EXPECT_EQ(mm.pfn_to_page(p).value(), page);
    EXPECT_EQ(mm.pfn_to_page_unchecked(p), page);
    EXPECT_EQ(mm.page_to_pfn(page).value(), p);
    EXPECT_EQ(mm.page_to_pfn_unchecked(page), p);
    EXPECT_EQ(page->section_nr(), mm.pfn_to_section_nr(p));
  }
  EXPECT_EQ(mm.descriptor_bytes_initialized(), 5u * 64);
  // Consecutive pfns in a section are consecutive descriptors.
  EXPECT_EQ(mm.pfn_to_page(start + PageCount(1)).value(), mm.pfn_to_page(start).value() + 1);

  // A hole: inside the window, no memmap.
  const Pfn hole = start + PageCount(2 * 32768);
  EXPECT_FALSE(mm.pfn_valid(hole));
  Result<Page*> r = mm.pfn_to_page(hole);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kENOENT);
  EXPECT_NE(r.error().message().find("no memmap"), std::string::npos) << r.error().message();
  EXPECT_EQ(mm.pfn_to_page(Pfn(0)).error().code(), Errno::kENOENT);
}

TEST(MemmapTest, PageToPfnRejectsForeignDescriptors) {
  const arch::ArchParams a = arch::x86_64_params();
  Memmap mm(a, arch::vmemmap_window(a, PhysAddr(0)));
  ASSERT_TRUE(mm.add_sections(Pfn(0), PageCount(32768)).is_ok());
  // A descriptor in a per-pagemap array (the dpas designs) has no pfn.
  Page outside;
  init_single_page(&outside, PageLinks{.zone = ZoneType::kDevicePrivate});
  Result<Pfn> r = mm.page_to_pfn(&outside);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kEINVAL);
  EXPECT_EQ(mm.page_to_pfn(nullptr).error().code(), Errno::kEINVAL);
}

TEST(MemmapTest, AddAndRemoveErrors) {
  const arch::ArchParams a = arch::x86_64_params();
  Memmap mm(a, arch::vmemmap_window(a, PhysAddr(0)));
  EXPECT_EQ(mm.add_sections(Pfn(1), PageCount(32768)).error().code(), Errno::kEINVAL);
  EXPECT_EQ(mm.add_sections(Pfn(0), PageCount(100)).error().code(), Errno::kEINVAL);
  EXPECT_EQ(mm.add_sections(Pfn(0), PageCount(0)).error().code(), Errno::kEINVAL);
  ASSERT_TRUE(mm.add_sections(Pfn(32768), PageCount(32768)).is_ok());
  // Overlapping an existing section adds nothing.
  EXPECT_EQ(mm.add_sections(Pfn(0), PageCount(3 * 32768)).error().code(), Errno::kEEXIST);
  EXPECT_FALSE(mm.pfn_valid(Pfn(0)));
  EXPECT_FALSE(mm.pfn_valid(Pfn(2 * 32768)));
  EXPECT_EQ(mm.nr_present_sections(), 1u);
  // Beyond MAX_PHYSMEM_BITS (46 on 4-level x86_64).
  const Pfn top = Pfn(uint64_t{1} << (46 - 12));
  EXPECT_EQ(mm.add_sections(top, PageCount(32768)).error().code(), Errno::kERANGE);
  ASSERT_TRUE(mm.add_sections(top - PageCount(32768), PageCount(32768)).is_ok());
  EXPECT_EQ(mm.pfn_to_page(top).error().code(), Errno::kEFAULT);

  EXPECT_EQ(mm.remove_sections(Pfn(0), PageCount(2 * 32768)).error().code(), Errno::kENOENT);
  EXPECT_TRUE(mm.pfn_valid(Pfn(32768))) << "a failed remove removes nothing";
  ASSERT_TRUE(mm.remove_sections(Pfn(32768), PageCount(32768)).is_ok());
  EXPECT_FALSE(mm.pfn_valid(Pfn(32768)));
  EXPECT_EQ(mm.nr_present_sections(), 1u);
}

// The seed's arm64 case: the vmemmap covers the linear map only, [memstart_addr,
// memstart_addr + 2^47). A device-private range placed near the top of the 48-bit physical
// space by request_free_mem_region has no room in it.
TEST(MemmapTest, Arm64WindowCoversRamOnly) {
  const arch::ArchParams a = arch::arm64_params();
  const PhysAddr memstart(0x80000000);  // RAM starts at 2 GiB
  const arch::VmemmapWindow w = arch::vmemmap_window(a, memstart);
  Memmap mm(a, w);
  ASSERT_TRUE(mm.add_sections(Pfn::from_phys(memstart), PageCount(8 * 32768)).is_ok());
  EXPECT_TRUE(mm.pfn_valid(Pfn::from_phys(memstart)));

  // Below memstart_addr: outside the window.
  Result<Page*> below = mm.pfn_to_page(Pfn(0x1000));
  ASSERT_TRUE(below.is_error());
  EXPECT_EQ(below.error().code(), Errno::kEFAULT);
  EXPECT_NE(below.error().message().find("beyond the end of vmemmap"), std::string::npos)
      << below.error().message();

  // Top-down device-private placement: the last section under 2^48.
  const Pfn devpriv = Pfn((uint64_t{1} << (48 - 12)) - 32768);
  EXPECT_FALSE(mm.pfn_valid(devpriv));
  EXPECT_EQ(mm.pfn_to_page(devpriv).error().code(), Errno::kEFAULT);
  Status add = mm.add_sections(devpriv, PageCount(32768));
  ASSERT_TRUE(add.is_error());
  EXPECT_EQ(add.error().code(), Errno::kERANGE);
  EXPECT_NE(add.error().message().find("beyond the end of vmemmap"), std::string::npos);

  // The last pfn inside the window is fine; the first outside is reported.
  const Pfn last_in = w.end - PageCount(1);
  EXPECT_TRUE(mm.in_window(last_in));
  EXPECT_EQ(mm.pfn_to_page(last_in).error().code(), Errno::kENOENT);
  EXPECT_EQ(mm.pfn_to_page(w.end).error().code(), Errno::kEFAULT);
  EXPECT_TRUE(mm.add_sections(w.end - PageCount(32768), PageCount(32768)).is_ok());
  EXPECT_TRUE(mm.add_sections(w.end, PageCount(32768)).is_error());
}

}  // namespace
}  // namespace dpmm::page
