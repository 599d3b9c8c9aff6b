// get_user_pages / pin_user_pages: faulting in, COW breaks, exact reference and pin counts,
// device-private entries faulted back (never pinned), errors.
#include "mm/gup.h"

#include <gtest/gtest.h>

#include <cstring>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/fault.h"
#include "mm/process.h"
#include "mm/test_machine.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

class GupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_ = testing::make_test_kernel();
    free0_ = kernel_->nr_free_pages();
    proc_ = Process::create(*kernel_).value();
    a_ = proc_->mmap_anon(4 * kPageSize, kRw).value();
  }
  void TearDown() override {
    kernel_->set_device_private_handler(nullptr);
    proc_.reset();
    EXPECT_EQ(kernel_->nr_free_pages(), free0_);
  }
  arch::DecodedEntry decode(Process& p, VirtAddr a) {
    return kernel_->codec().decode(arch::EntryLevel::kPte,
                                   p.mm().page_table().walk_pte(a).value().load());
  }
  Result<std::vector<page::Page*>> gup(VirtAddr a, uint64_t n, FollFlags f) {
    ReadLocker g(proc_->mm().mmap_lock());
    return get_user_pages_remote(proc_->mm(), a, n, f);
  }
  Result<std::vector<page::Page*>> pin(VirtAddr a, uint64_t n, FollFlags f) {
    ReadLocker g(proc_->mm().mmap_lock());
    return pin_user_pages_remote(proc_->mm(), a, n, f);
  }

  std::unique_ptr<Kernel> kernel_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> proc_;
  VirtAddr a_;
};

TEST_F(GupTest, WriteFaultsInAndReferences) {
  std::vector<page::Page*> pages = gup(a_, 4, FollFlags::kWrite).value();
  ASSERT_EQ(pages.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const arch::DecodedEntry d = decode(*proc_, a_ + i * kPageSize);
    ASSERT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent);
    EXPECT_TRUE(arch::has(d.prot, arch::Prot::kWrite));
    EXPECT_EQ(kernel_->page_to_pfn(pages[i]), d.pfn);
    page::Folio f = page::page_folio(pages[i]);
    EXPECT_EQ(f.ref_count(), 2);  // the PTE's and GUP's
    EXPECT_EQ(f.mapcount(), 1);
    EXPECT_TRUE(f.test_flag(page::PageFlag::kDirty)) << "FOLL_TOUCH on a write";
  }
  // The bytes GUP sees are the process's.
  ASSERT_TRUE(proc_->write_u64(a_ + kPageSize, 0xfeed).is_ok());
  uint64_t v = 0;
  std::memcpy(&v, kernel_->page_bytes(kernel_->page_to_pfn(pages[1])).data(), sizeof v);
  EXPECT_EQ(v, 0xfeedu);
  for (page::Page* p : pages) put_user_page(p);
  for (page::Page* p : pages) EXPECT_EQ(page::page_folio(p).ref_count(), 1);
}

TEST_F(GupTest, ReadOfUntouchedMemoryGivesTheZeroPage) {
  std::vector<page::Page*> pages = gup(a_, 1, FollFlags::kNone).value();
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(kernel_->page_to_pfn(pages[0]), kernel_->zero_pfn());
  page::Folio z = page::page_folio(pages[0]);
  const int before = z.ref_count();
  put_user_page(pages[0]);
  EXPECT_EQ(z.ref_count(), before - 1);
}

TEST_F(GupTest, FollWriteBreaksCow) {
  ASSERT_TRUE(proc_->write_u64(a_, 1).is_ok());
  std::unique_ptr<Process> child = proc_->fork().value();
  const Pfn shared = decode(*proc_, a_).pfn;
  EXPECT_EQ(page::page_folio(kernel_->pfn_to_page(shared).value()).ref_count(), 2);
  std::vector<page::Page*> pages = gup(a_, 1, FollFlags::kWrite).value();
  EXPECT_NE(kernel_->page_to_pfn(pages[0]), shared);
  EXPECT_EQ(decode(*child, a_).pfn, shared);
  EXPECT_EQ(page::page_folio(kernel_->pfn_to_page(shared).value()).ref_count(), 1);
  EXPECT_EQ(page::page_folio(pages[0]).ref_count(), 2);
  EXPECT_EQ(child->read_u64(a_).value(), 1u);
  put_user_page(pages[0]);
  child.reset();
}

TEST_F(GupTest, PinAddsTheBiasAndMarksTheMm) {
  EXPECT_FALSE(proc_->mm().has_pinned());
  std::vector<page::Page*> pages = pin(a_, 2, FollFlags::kWrite).value();
  EXPECT_TRUE(proc_->mm().has_pinned());
  for (page::Page* p : pages) {
    page::Folio f = page::page_folio(p);
    EXPECT_EQ(f.ref_count(), 1 + kGupPinCountingBias);
    EXPECT_TRUE(folio_maybe_dma_pinned(f));
  }
  unpin_user_pages(pages);
  for (page::Page* p : pages) EXPECT_EQ(page::page_folio(p).ref_count(), 1);
  // A read pin of the zero page takes nothing.
  std::vector<page::Page*> z = pin(a_ + 3 * kPageSize, 1, FollFlags::kNone).value();
  EXPECT_EQ(kernel_->page_to_pfn(z[0]), kernel_->zero_pfn());
  const int zref = page::page_folio(z[0]).ref_count();
  unpin_user_page(z[0]);
  EXPECT_EQ(page::page_folio(z[0]).ref_count(), zref);
}

TEST_F(GupTest, PinnedPageIsCopiedForTheChildAtFork) {
  std::vector<page::Page*> pages = pin(a_, 1, FollFlags::kWrite).value();
  ASSERT_TRUE(proc_->write_u64(a_, 0x33).is_ok());
  std::unique_ptr<Process> child = proc_->fork().value();
  EXPECT_EQ(decode(*proc_, a_).pfn, kernel_->page_to_pfn(pages[0]));
  EXPECT_NE(decode(*child, a_).pfn, kernel_->page_to_pfn(pages[0]));
  EXPECT_TRUE(arch::has(decode(*proc_, a_).prot, arch::Prot::kWrite)) << "parent keeps it";
  EXPECT_EQ(child->read_u64(a_).value(), 0x33u);
  unpin_user_pages(pages);
  child.reset();
}

TEST_F(GupTest, Errors) {
  EXPECT_EQ(gup(VirtAddr(0x10000), 1, FollFlags::kNone).error().code(), Errno::kEFAULT);
  const VirtAddr ro = proc_->mmap_anon(kPageSize, MmapProt::kRead).value();
  EXPECT_EQ(gup(ro, 1, FollFlags::kWrite).error().code(), Errno::kEFAULT);
  const VirtAddr none = proc_->mmap_anon(kPageSize, MmapProt::kNone).value();
  EXPECT_EQ(gup(none, 1, FollFlags::kNone).error().code(), Errno::kEFAULT);
  EXPECT_EQ(gup(a_, 1, FollFlags::kNofault).error().code(), Errno::kEFAULT);
  EXPECT_EQ(gup(a_, 1, FollFlags::kPin).error().code(), Errno::kEINVAL);
  EXPECT_EQ(gup(a_, 1, FollFlags::kForce).error().code(), Errno::kEINVAL);
  EXPECT_EQ(gup(a_, 1, FollFlags::kLongterm).error().code(), Errno::kEINVAL);
  EXPECT_EQ(pin(a_, 1, FollFlags::kGet).error().code(), Errno::kEINVAL);
  EXPECT_TRUE(gup(a_, 0, FollFlags::kNone).value().empty());
  // A failure after the first page returns what was got.
  ASSERT_TRUE(proc_->munmap(a_ + 2 * kPageSize, kPageSize).is_ok());
  std::vector<page::Page*> part = gup(a_, 4, FollFlags::kWrite).value();
  ASSERT_EQ(part.size(), 2u);
  for (page::Page* p : part) put_user_page(p);
}

TEST_F(GupTest, LongtermPinOfRamStaysPut) {
  std::vector<page::Page*> pages = pin(a_, 1, FollFlags::kWrite | FollFlags::kLongterm).value();
  EXPECT_EQ(page::page_folio(pages[0]).ref_count(), 1 + kGupPinCountingBias);
  unpin_user_pages(pages);
}

// A device whose "device pages" are RAM pages, enough for the fault path (as in
// swap_fault_test.cc).
class FakeDevice final : public DevicePrivateFaultHandler {
 public:
  explicit FakeDevice(Kernel& k) : k_(k) {}
  page::Page* softleaf_to_page(arch::Softleaf e) override {
    return k_.pfn_to_page(arch::softleaf_to_pfn(e).value()).value();
  }
  FaultResult migrate_to_ram(VmFault& vmf) override {
    ++calls;
    page::Folio dst = k_.alloc_folio(Order(0)).value();
    const Pfn dst_pfn = k_.page_to_pfn(dst.head());
    std::memcpy(k_.page_bytes(dst_pfn).data(), k_.page_bytes(k_.page_to_pfn(vmf.page)).data(),
                kPageSize);
    const arch::Prot p = vmf.vma->page_prot | arch::Prot::kAccessed | arch::Prot::kWrite |
                         arch::Prot::kDirty;
    page::Folio src = page::page_folio(vmf.page);
    {
      SpinLocker guard(vmf.mm->page_table().lock());
      folio_add_new_anon_rmap(dst, *vmf.vma, vmf.address, RmapExclusive::kYes);
      vmf.pte->store(k_.codec().make_present(arch::EntryLevel::kPte, dst_pfn, p).value());
      folio_remove_rmap_pte(src, vmf.page);
    }
    page::folio_put(src);
    return FaultResult::handled();
  }
  int calls = 0;

 private:
  Kernel& k_;
};

TEST_F(GupTest, DevicePrivateEntriesAreFaultedBackNeverPinned) {
  FakeDevice dev(*kernel_);
  kernel_->set_device_private_handler(&dev);
  ASSERT_TRUE(proc_->write_u64(a_, 0x4242).is_ok());
  const Pfn old = decode(*proc_, a_).pfn;
  {
    SpinLocker guard(proc_->mm().page_table().lock());
    const arch::Softleaf leaf = arch::make_writable_device_private_entry(
                                    kernel_->softleaf_format(), arch::PfnOrOffset::of_pfn(old))
                                    .value();
    proc_->mm().page_table().walk_pte(a_).value().store(
        kernel_->codec().make_swap(arch::EntryLevel::kPte, leaf, arch::SwpBit::kNone).value());
  }
  std::vector<page::Page*> pages = pin(a_, 1, FollFlags::kNone).value();
  EXPECT_EQ(dev.calls, 1);
  EXPECT_NE(kernel_->page_to_pfn(pages[0]), old);
  EXPECT_EQ(decode(*proc_, a_).kind, arch::DecodedEntry::Kind::kPresent);
  uint64_t v = 0;
  std::memcpy(&v, kernel_->page_bytes(kernel_->page_to_pfn(pages[0])).data(), sizeof v);
  EXPECT_EQ(v, 0x4242u);
  unpin_user_pages(pages);
  EXPECT_EQ(page::page_folio(pages[0]).ref_count(), 1);
}

}  // namespace
}  // namespace dpmm::mm
