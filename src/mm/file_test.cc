// Files, the shmem page cache and file mappings: pread/pwrite/ftruncate bytes, MAP_SHARED and
// MAP_PRIVATE faults (COW into anon pages), shared anonymous memory across fork, the file
// rmap, truncation of mapped pages, mmap's file errno cases, and a driver's mmap with
// vm_insert_page (VM_MIXEDMAP).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "arch/decoded_entry.h"
#include "mm/anon_rmap.h"
#include "mm/pagemap.h"
#include "mm/process.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/test_machine.h"
#include "mm/vm_insert_page.h"

namespace dpmm::mm {
namespace {

constexpr MmapProt kRw = MmapProt::kRead | MmapProt::kWrite;

std::vector<std::byte> ints(uint64_t bytes, int sign) {
  std::vector<std::byte> out(bytes);
  for (uint64_t i = 0; i < bytes / 4; ++i) {
    const int32_t v = sign * static_cast<int32_t>(i);
    std::memcpy(out.data() + 4 * i, &v, 4);
  }
  return out;
}

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    k_ = testing::make_test_kernel();
    free0_ = k_->nr_free_pages();
    p_ = Process::create(*k_).value();
  }
  void TearDown() override {
    child_.reset();
    p_.reset();
    EXPECT_EQ(k_->nr_free_pages(), free0_);
  }
  arch::DecodedEntry pte(Process& p, VirtAddr a) {
    const EntrySlot s = p.mm().page_table().walk_pte(a).value();
    return k_->codec().decode(arch::EntryLevel::kPte, s.load());
  }
  page::Folio folio_at(Process& p, VirtAddr a) {
    return page::page_folio(k_->pfn_to_page(pte(p, a).pfn).value());
  }
  page::Folio cached(ShmemFile& f, uint64_t index) {
    page::Folio folio = f.page_cache().get_folio(index).value();
    page::folio_put(folio);  // the cache still holds it
    return folio;
  }
  std::vector<std::byte> read(Process& p, VirtAddr a, uint64_t n) {
    std::vector<std::byte> out(n);
    EXPECT_TRUE(p.read(a, out).is_ok());
    return out;
  }

  std::unique_ptr<Kernel> k_;
  uint64_t free0_ = 0;
  std::unique_ptr<Process> p_;
  std::unique_ptr<Process> child_;
};

TEST_F(FileTest, ShmemPreadPwriteFtruncate) {
  auto f = ShmemFile::create(*k_, 3 * kPageSize + 100).value();
  EXPECT_EQ(f->size(), 3 * kPageSize + 100);
  std::vector<std::byte> buf(3 * kPageSize + 100, std::byte{0x55});
  // A hole reads as zeros and allocates nothing (SGP_READ).
  EXPECT_EQ(f->pread(buf, 0).value(), buf.size());
  EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_EQ(f->page_cache().nr_pages(), 0u);

  const std::vector<std::byte> data = ints(2 * kPageSize, 1);
  EXPECT_EQ(f->pwrite(data, kPageSize).value(), data.size());
  EXPECT_EQ(f->page_cache().nr_pages(), 2u);
  page::Folio p1 = cached(*f, 1);
  EXPECT_EQ(p1.ref_count(), 1);  // the cache's reference only
  EXPECT_EQ(p1.mapcount(), 0);
  EXPECT_FALSE(p1.is_anon());
  EXPECT_EQ(AddressSpace::of_folio(p1), &f->page_cache());
  EXPECT_EQ(p1.index(), 1u);
  EXPECT_TRUE(p1.test_flag(page::PageFlag::kSwapBacked));
  EXPECT_TRUE(p1.test_flag(page::PageFlag::kDirty));

  std::vector<std::byte> back(2 * kPageSize);
  EXPECT_EQ(f->pread(back, kPageSize).value(), back.size());
  EXPECT_EQ(back, data);
  // Short read at EOF, nothing past it.
  EXPECT_EQ(f->pread(back, 3 * kPageSize).value(), 100u);
  EXPECT_EQ(f->pread(back, 4 * kPageSize).value(), 0u);
  // pwrite past EOF grows the file.
  EXPECT_EQ(f->pwrite(data, 5 * kPageSize).value(), data.size());
  EXPECT_EQ(f->size(), 7 * kPageSize);

  // Shrinking drops the cut pages and zeroes the tail of the last one.
  ASSERT_TRUE(f->ftruncate(kPageSize + 8).is_ok());
  EXPECT_EQ(f->page_cache().nr_pages(), 1u);
  ASSERT_TRUE(f->ftruncate(2 * kPageSize).is_ok());
  std::vector<std::byte> page(kPageSize);
  EXPECT_EQ(f->pread(page, kPageSize).value(), kPageSize);
  EXPECT_TRUE(std::equal(page.begin(), page.begin() + 8, data.begin()));
  EXPECT_TRUE(std::all_of(page.begin() + 8, page.end(), [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_EQ(f->ftruncate(uint64_t{1} << 63).error().code(), Errno::kEINVAL);
}

TEST_F(FileTest, SharedMappingReadsAndWritesThePageCache) {
  constexpr uint64_t kSize = 4 * kPageSize;
  auto f = ShmemFile::create(*k_, kSize).value();
  const std::vector<std::byte> data = ints(kSize, 1);
  ASSERT_EQ(f->pwrite(data, 0).value(), kSize);
  // hmm.file_read: a read-only shared mapping shows the file's bytes.
  const VirtAddr ro = p_->mmap_file(VirtAddr(0), kSize, MmapProt::kRead, MmapFlags::kShared, f).value();
  EXPECT_EQ(read(*p_, ro, kSize), data);
  page::Folio f0 = cached(*f, 0);
  EXPECT_EQ(pte(*p_, ro).pfn, k_->page_to_pfn(f0.head()));
  EXPECT_EQ(f0.ref_count(), 2);  // cache + PTE
  EXPECT_EQ(f0.mapcount(), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 4);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
  EXPECT_NE(pagemap_entry(p_->mm(), ro) & kPmFile, 0u);
  EXPECT_EQ(p_->write_u32(ro, 1).error().code(), Errno::kEFAULT);
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(ro);
    EXPECT_FALSE(vma->is_anonymous());
    EXPECT_TRUE(has(vma->flags, VmFlags::kShared | VmFlags::kMayShare));
    EXPECT_FALSE(has(vma->flags, VmFlags::kAccount));
  }

  // hmm.file_write: writes through a second, writable shared mapping land in the file.
  const VirtAddr rw = p_->mmap_file(VirtAddr(0), kSize, kRw, MmapFlags::kShared, f).value();
  const std::vector<std::byte> neg = ints(kSize, -1);
  ASSERT_TRUE(p_->write(rw, neg).is_ok());
  std::vector<std::byte> back(kSize);
  EXPECT_EQ(f->pread(back, 0).value(), kSize);
  EXPECT_EQ(back, neg);
  EXPECT_EQ(read(*p_, ro, kSize), neg);  // the same page through the other mapping
  EXPECT_EQ(f0.ref_count(), 3);
  EXPECT_EQ(f0.mapcount(), 2);
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 8);

  // The rmap finds both mappings of a page-cache folio.
  auto found = folio_find_mappings(*k_, f0, arch::PfnOrOffset::of_pfn(k_->page_to_pfn(f0.head())),
                                   PvmwFlags::kNone);
  std::vector<uint64_t> addrs;
  for (const RmapMapping& m : found) addrs.push_back(m.address.raw());
  std::sort(addrs.begin(), addrs.end());
  std::vector<uint64_t> want{ro.raw(), rw.raw()};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(addrs, want);

  ASSERT_TRUE(p_->munmap(rw, kSize).is_ok());
  ASSERT_TRUE(p_->munmap(ro, kSize).is_ok());
  EXPECT_EQ(f0.ref_count(), 1);
  EXPECT_EQ(f0.mapcount(), 0);
  EXPECT_TRUE(f0.test_flag(page::PageFlag::kDirty));
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 0);
}

TEST_F(FileTest, PrivateMappingCopiesOnWriteAndLeavesTheFile) {
  constexpr uint64_t kSize = 2 * kPageSize;
  auto f = ShmemFile::create(*k_, kSize).value();
  const std::vector<std::byte> data = ints(kSize, 1);
  ASSERT_EQ(f->pwrite(data, 0).value(), kSize);
  const VirtAddr a = p_->mmap_file(VirtAddr(0), kSize, kRw, MmapFlags::kPrivate, f).value();
  // Page 0: read maps the cache folio read-only, then a write copies it (wp_page_copy).
  EXPECT_EQ(p_->read_u32(a + 4).value(), 1u);
  page::Folio f0 = cached(*f, 0);
  EXPECT_EQ(pte(*p_, a).pfn, k_->page_to_pfn(f0.head()));
  EXPECT_FALSE(arch::has(pte(*p_, a).prot, arch::Prot::kWrite));
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 1);
  ASSERT_TRUE(p_->write_u32(a + 4, 0xdead).is_ok());
  EXPECT_NE(pte(*p_, a).pfn, k_->page_to_pfn(f0.head()));
  EXPECT_TRUE(folio_at(*p_, a).is_anon());
  EXPECT_EQ(f0.mapcount(), 0);
  EXPECT_EQ(f0.ref_count(), 1);
  // Page 1: a write over a none PTE copies at once (do_cow_fault); the file folio is not mapped.
  ASSERT_TRUE(p_->write_u32(a + kPageSize, 7).is_ok());
  page::Folio f1 = cached(*f, 1);
  EXPECT_EQ(f1.mapcount(), 0);
  EXPECT_TRUE(folio_at(*p_, a + kPageSize).is_anon());
  EXPECT_EQ(folio_at(*p_, a + kPageSize).index(), 1u);  // linear_page_index of a file VMA
  EXPECT_EQ(p_->read_u32(a + kPageSize + 4).value(), static_cast<uint32_t>(kPageSize / 4 + 1));
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 2);
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 0);
  // The file kept its bytes.
  std::vector<std::byte> back(kSize);
  EXPECT_EQ(f->pread(back, 0).value(), kSize);
  EXPECT_EQ(back, data);
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(a);
    EXPECT_FALSE(vma->is_anonymous());
    EXPECT_NE(vma->anon_vma(), nullptr);
    EXPECT_TRUE(has(vma->flags, VmFlags::kAccount));
  }
}

TEST_F(FileTest, SharedAnonymousMemoryIsSeenAcrossFork) {
  // hmm.anon_write_child_shared: the child's writes show in the parent.
  constexpr uint64_t kSize = 4 * kPageSize;
  const VirtAddr a =
      p_->mmap(VirtAddr(0), kSize, kRw, MmapFlags::kShared | MmapFlags::kAnonymous).value();
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(a);
    ASSERT_NE(vma->file, nullptr);
    EXPECT_FALSE(vma->is_anonymous());
    EXPECT_EQ(vma->pgoff, 0u);
    EXPECT_EQ(vma->file->name(), "dev/zero");
  }
  ASSERT_TRUE(p_->write(a, ints(kSize, 1)).is_ok());
  child_ = p_->fork().value();
  // Shared pages are not copied at fork; the child refaults them from the page cache.
  EXPECT_FALSE(child_->mm().page_table().walk_pte(a).has_value() &&
               child_->mm().page_table().walk_pte(a)->load() != 0);
  EXPECT_EQ(read(*child_, a, kSize), ints(kSize, 1));
  EXPECT_EQ(pte(*child_, a).pfn, pte(*p_, a).pfn);
  ASSERT_TRUE(child_->write(a, ints(kSize, -1)).is_ok());
  EXPECT_EQ(read(*p_, a, kSize), ints(kSize, -1));
  EXPECT_EQ(folio_at(*p_, a).mapcount(), 2);
  EXPECT_EQ(folio_at(*p_, a).ref_count(), 3);
  child_.reset();
  EXPECT_EQ(folio_at(*p_, a).mapcount(), 1);
  EXPECT_EQ(read(*p_, a, kSize), ints(kSize, -1));
}

TEST_F(FileTest, TruncateUnmapsMappedPagesAndFaultsPastEofAreSigbus) {
  constexpr uint64_t kSize = 3 * kPageSize;
  auto f = ShmemFile::create(*k_, kSize).value();
  const VirtAddr a = p_->mmap_file(VirtAddr(0), kSize, kRw, MmapFlags::kShared, f).value();
  const VirtAddr b = p_->mmap_file(VirtAddr(0), kSize, kRw, MmapFlags::kPrivate, f).value();
  ASSERT_TRUE(p_->fill(a, kSize, std::byte{0x11}).is_ok());
  ASSERT_TRUE(p_->write_u32(b + 2 * kPageSize, 5).is_ok());  // a private COW copy
  const uint64_t free_before = k_->nr_free_pages();
  ASSERT_TRUE(f->ftruncate(kPageSize).is_ok());
  EXPECT_EQ(f->page_cache().nr_pages(), 1u);
  // Two cache pages and the private copy of page 2 went (even_cows); their tables stay.
  EXPECT_EQ(k_->nr_free_pages(), free_before + 3);
  EXPECT_EQ(p_->mm().page_table().walk_pte(a + kPageSize)->load(), 0u);
  EXPECT_EQ(p_->mm().page_table().walk_pte(b + 2 * kPageSize)->load(), 0u);
  EXPECT_EQ(p_->read_u32(a + kPageSize).error().code(), Errno::kEFAULT);  // SIGBUS
  EXPECT_EQ(p_->read_u32(b + 2 * kPageSize).error().code(), Errno::kEFAULT);
  EXPECT_EQ(p_->read_u32(a).value(), 0x11111111u);
  EXPECT_EQ(p_->mm().rss(RssMember::kShmemPages), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 0);
}

// A file with FMode and mmap behaviour chosen by the test.
class TestFile final : public File {
 public:
  TestFile(FMode mode, bool has_mmap, Status result)
      : File(mode, nullptr), has_mmap_(has_mmap), result_(std::move(result)) {}
  std::string name() const override { return "testfile"; }
  bool has_mmap() const override { return has_mmap_; }
  Status mmap(Mm& mm, Vma& vma) override {
    (void)mm;
    (void)vma;
    return result_;
  }

 private:
  bool has_mmap_;
  Status result_;
};

// The dmirror device file's mmap: a zeroed kernel page per page, inserted with vm_insert_page.
class DriverFile final : public File {
 public:
  explicit DriverFile(Kernel& k) : File(FMode::kRead | FMode::kWrite, nullptr), k_(k) {}
  std::string name() const override { return "dmirror"; }
  Status mmap(Mm& mm, Vma& vma) override {
    for (VirtAddr a = vma.start; a < vma.end; a += kPageSize) {
      page::Folio page = TRY(k_.alloc_folio(Order(0)));
      Status st = vm_insert_page(mm, vma, a, page.head());
      page::folio_put(page);  // the PTE holds its own reference
      TRY(st);
      pages.push_back(page);
    }
    return ok();
  }
  std::vector<page::Folio> pages;

 private:
  Kernel& k_;
};

TEST_F(FileTest, MmapOfAFileErrnoCases) {
  auto f = ShmemFile::create(*k_, kPageSize).value();
  auto errno_of = [&](uint64_t len, MmapProt prot, MmapFlags flags, std::shared_ptr<File> file,
                      uint64_t off) {
    auto r = p_->mmap_file(VirtAddr(0), len, prot, flags, std::move(file), off);
    return r.is_error() ? r.error().code() : Errno::kEPERM;
  };
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, nullptr, 0), Errno::kEBADF);
  EXPECT_EQ(p_->mmap(VirtAddr(0), kPageSize, kRw, MmapFlags::kPrivate).error().code(),
            Errno::kEBADF);
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, f, 100), Errno::kEINVAL);
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, f, UINT64_MAX & ~(kPageSize - 1)),
            Errno::kEOVERFLOW);
  EXPECT_EQ(errno_of(0, kRw, MmapFlags::kShared, f, 0), Errno::kEINVAL);
  auto ro = std::make_shared<TestFile>(FMode::kRead, true, ok());
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, ro, 0), Errno::kEACCES);
  auto wo = std::make_shared<TestFile>(FMode::kWrite, true, ok());
  EXPECT_EQ(errno_of(kPageSize, MmapProt::kRead, MmapFlags::kPrivate, wo, 0), Errno::kEACCES);
  auto nommap = std::make_shared<TestFile>(FMode::kRead | FMode::kWrite, false, ok());
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, nommap, 0), Errno::kENODEV);
  auto failing = std::make_shared<TestFile>(FMode::kRead | FMode::kWrite, true,
                                            make_error(Errno::kENXIO, "driver says no"));
  EXPECT_EQ(errno_of(kPageSize, kRw, MmapFlags::kShared, failing, 0), Errno::kENXIO);
  EXPECT_TRUE(p_->mm().snapshot_vmas().empty());
  // A read-only file may be mapped shared read-only: VM_MAYWRITE and VM_SHARED go.
  const VirtAddr a = p_->mmap_file(VirtAddr(0), kPageSize, MmapProt::kRead, MmapFlags::kShared, ro).value();
  const Vma vma = p_->mm().snapshot_vmas().at(0);
  EXPECT_EQ(vma.start, a);
  EXPECT_FALSE(has_any(vma.flags, VmFlags::kMayWrite | VmFlags::kShared));
  EXPECT_TRUE(has(vma.flags, VmFlags::kMayShare));
  EXPECT_EQ(p_->mprotect(a, kPageSize, kRw).error().code(), Errno::kEACCES);
  // No ->fault: SIGBUS on first touch.
  EXPECT_EQ(p_->read_u32(a).error().code(), Errno::kEFAULT);
  // With MAP_ANONYMOUS the file is ignored (the kernel ignores the fd).
  const VirtAddr b = p_->mmap_file(VirtAddr(0), kPageSize, kRw,
                                   MmapFlags::kPrivate | MmapFlags::kAnonymous, f, 0).value();
  EXPECT_TRUE(p_->mm().snapshot_vmas().at(0).start == b || p_->mm().snapshot_vmas().at(1).start == b);
  for (const Vma& v : p_->mm().snapshot_vmas()) {
    if (v.start == b) {
      EXPECT_TRUE(v.is_anonymous());
    }
  }
}

TEST_F(FileTest, DriverMmapInsertsPagesWithVmInsertPage) {
  // hmm.mixedmap: MAP_PRIVATE of the device file; the driver inserts zeroed pages.
  auto drv = std::make_shared<DriverFile>(*k_);
  const VirtAddr a = p_->mmap_file(VirtAddr(0), 2 * kPageSize, kRw, MmapFlags::kPrivate, drv).value();
  ASSERT_EQ(drv->pages.size(), 2u);
  page::Folio pg = drv->pages[0];
  EXPECT_EQ(pg.ref_count(), 1);  // the PTE's
  EXPECT_EQ(pg.mapcount(), 1);
  EXPECT_FALSE(pg.is_anon());
  EXPECT_EQ(p_->mm().rss(RssMember::kFilePages), 2);
  const arch::DecodedEntry e = pte(*p_, a);
  EXPECT_EQ(e.pfn, k_->page_to_pfn(pg.head()));
  EXPECT_FALSE(arch::has(e.prot, arch::Prot::kSpecial));
  EXPECT_FALSE(arch::has(e.prot, arch::Prot::kWrite));  // private: PAGE_COPY
  {
    ReadLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(a);
    EXPECT_TRUE(has(vma->flags, VmFlags::kMixedMap));
  }
  EXPECT_EQ(p_->read_u64(a).value(), 0u);
  {
    // A second insert over a used PTE is EBUSY.
    WriteLocker guard(p_->mm().mmap_lock());
    const Vma* vma = p_->mm().vma_lookup(a);
    EXPECT_EQ(vm_insert_page(p_->mm(), *vma, a, pg.head()).error().code(), Errno::kEBUSY);
    EXPECT_EQ(vm_insert_page(p_->mm(), *vma, a - kPageSize, pg.head()).error().code(),
              Errno::kEFAULT);
  }
  // fork copies VM_MIXEDMAP page tables (vma_needs_copy).
  child_ = p_->fork().value();
  EXPECT_EQ(pg.mapcount(), 2);
  EXPECT_EQ(pg.ref_count(), 2);
  EXPECT_EQ(child_->mm().rss(RssMember::kFilePages), 2);
  // A write to the private mapping copies the driver page.
  ASSERT_TRUE(p_->write_u64(a, 9).is_ok());
  EXPECT_TRUE(folio_at(*p_, a).is_anon());
  EXPECT_EQ(pg.mapcount(), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kFilePages), 1);
  EXPECT_EQ(p_->mm().rss(RssMember::kAnonPages), 1);
  EXPECT_EQ(child_->read_u64(a).value(), 0u);
  child_.reset();
  ASSERT_TRUE(p_->munmap(a, 2 * kPageSize).is_ok());
  EXPECT_EQ(p_->mm().rss(RssMember::kFilePages), 0);
}

}  // namespace
}  // namespace dpmm::mm
