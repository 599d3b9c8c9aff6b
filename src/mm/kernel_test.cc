#include "mm/kernel.h"

#include <gtest/gtest.h>

#include "mm/test_machine.h"

namespace dpmm::mm {
namespace {

TEST(KernelTest, ZeroPageIsReservedAndZero) {
  auto k = testing::make_test_kernel();
  const Pfn zero = k->zero_pfn();
  EXPECT_TRUE(k->is_zero_pfn(zero));
  page::Page* p = k->pfn_to_page(zero).value();
  EXPECT_TRUE(p->test_flag(page::PageFlag::kReserved));
  for (std::byte b : k->page_bytes(zero)) ASSERT_EQ(b, std::byte{0});
}

TEST(KernelTest, AllocFolioIsZeroedEvenAfterReuse) {
  auto k = testing::make_test_kernel();
  const uint64_t free0 = k->nr_free_pages();
  page::Folio f = k->alloc_folio(Order(0)).value();
  EXPECT_EQ(f.ref_count(), 1);
  EXPECT_EQ(k->nr_free_pages(), free0 - 1);
  const Pfn pfn = k->page_to_pfn(f.head());
  std::span<std::byte> bytes = k->page_bytes(pfn);
  std::fill(bytes.begin(), bytes.end(), std::byte{0x5a});
  page::folio_put(f);
  EXPECT_EQ(k->nr_free_pages(), free0);
  // The buddy hands the same page back first (LIFO free list); it must read as zeros.
  page::Folio g = k->alloc_folio(Order(0)).value();
  for (std::byte b : k->page_bytes(k->page_to_pfn(g.head()))) ASSERT_EQ(b, std::byte{0});
  page::folio_put(g);
}

TEST(KernelTest, LayoutPerArch) {
  auto x86 = testing::make_test_kernel();
  EXPECT_EQ(x86->task_size(), VirtAddr((uint64_t{1} << 47) - 4096));
  EXPECT_EQ(x86->mmap_min_addr(), VirtAddr(65536));
  auto arm = testing::make_test_kernel(arch::SwapNumberingKind::kDpas, arch::ArchKind::kArm64);
  EXPECT_EQ(arm->task_size(), VirtAddr(uint64_t{1} << 48));
  EXPECT_EQ(arm->codec().format().numbering, arch::SwapNumberingKind::kDpas);
}

TEST(KernelTest, BuiltinMachineUnknownNameIsENOENT) {
  auto r = Kernel::create_builtin("no-such-machine", KernelOptions{});
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.error().code(), Errno::kENOENT);
}

}  // namespace
}  // namespace dpmm::mm
