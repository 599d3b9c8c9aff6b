// Mm: one address space (struct mm_struct, include/linux/mm_types.h).
//
// It holds mmap_lock, the VMAs in address order (the kernel's maple tree; a std::map keyed by
// start here), the page tables with their lock, the RSS counters, the TLB-flush seam, the
// anon_vmas its VMAs prepared and the MMU-notifier seam.
//
// Locking:
//   mmap_lock (RwLock, LockRank::kMmapLock) guards the VMA set. System calls take it for
//   write; the fault path runs with it held for read. The fault path may set a VMA's anon_vma
//   under the page-table lock (anon_vma_prepare), nothing else.
//   The page-table lock (PageTable::lock, LockRank::kPageTable) guards PTE changes.
//   Lock order: mmap_lock -> folio lock -> page-table lock -> zone lock.
//
// TLB-flush seam: hardware walks (access.h) run under an Mm::HwWalk guard and hold their
// translation only inside it. flush_tlb_range() bumps tlb_flush_generation() and waits until
// every walk that might have seen an old entry has finished, which is what a TLB shootdown
// guarantees: after it returns, no CPU uses a translation from before the change. Every path
// that downgrades or removes an entry flushes before it frees what the entry pointed to.
//
// MMU notifiers: invalidate_range_start/end and per-mm subscriptions (mmu_notifier.h).
//
// fork (fork.cc) and the anon rmap (rmap.h): every change to the VMA set or to a VMA's fields,
// and every unhooking of page tables, also holds Kernel::anon_vma_lock() for write, so an rmap
// walk (which holds it for read) may look at the VMAs and page tables of any mm.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/file.h"
#include "mm/kernel.h"
#include "mm/mman.h"
#include "mm/mmu_notifier.h"
#include "mm/page_table.h"
#include "mm/vma.h"

namespace dpmm::mm {

class MmuGather;

// enum in include/linux/mm_types_task.h (NR_MM_COUNTERS).
enum class RssMember : uint8_t {
  kFilePages = 0,   // MM_FILEPAGES
  kAnonPages = 1,   // MM_ANONPAGES
  kSwapEnts = 2,    // MM_SWAPENTS
  kShmemPages = 3,  // MM_SHMEMPAGES
  kCount,
};

class Mm {
 public:
  // mm_alloc + pgd_alloc. ENOMEM when no page is left for the PGD.
  static Result<std::unique_ptr<Mm>> create(Kernel& kernel);
  // exit_mmap: MMU_NOTIFY_RELEASE, unmaps every VMA, frees every page and page table.
  ~Mm();
  Mm(const Mm&) = delete;
  Mm& operator=(const Mm&) = delete;

  Kernel& kernel() const { return kernel_; }
  RwLock& mmap_lock() RETURN_CAPABILITY(mmap_lock_) { return mmap_lock_; }
  PageTable& page_table() { return *page_table_; }
  // mmap_assert_locked: tells the thread-safety analysis that the caller's contract (a
  // VmFault is only handled under mmap_lock) holds. Checks nothing at run time.
  void mmap_assert_locked() const ASSERT_SHARED_CAPABILITY(mmap_lock_) {}
  const PageTable& page_table() const { return *page_table_; }

  // ---- system calls (mmap.cc, munmap.cc, mprotect.cc). Each takes mmap_lock for write. ----

  // mmap(addr, len, prot, flags, -1, 0) (mm/mmap.c do_mmap, mm/vma.c mmap_region).
  // MAP_PRIVATE|MAP_ANONYMOUS is anonymous memory; MAP_SHARED|MAP_ANONYMOUS is a private
  // shmem file behind the VMA (shmem_zero_setup, vm_pgoff 0); MAP_SHARED|MAP_ANONYMOUS|
  // MAP_HUGETLB an unlinked hugetlbfs file (hugetlb_file_setup, hugetlbfs.h).
  //   EINVAL      len 0; MAP_FIXED with an unaligned addr; no MAP_SHARED/MAP_PRIVATE type;
  //               unknown PROT_ bits; hugetlb: MAP_FIXED at an address not huge-page
  //               aligned, MAP_HUGETLB with a file not on hugetlbfs, a hugetlbfs offset not
  //               huge-page aligned
  //   ENOMEM      hugetlb: the pool cannot reserve every huge page (hugetlb.h)
  //   ENOMEM      len rounds past TASK_SIZE; a fixed range beyond TASK_SIZE; no room for it;
  //               more than max_map_count VMAs
  //   EEXIST      MAP_FIXED_NOREPLACE over an existing mapping
  //   EOPNOTSUPP  MAP_SHARED_VALIDATE with a flag the kernel does not know
  //   EBADF       no MAP_ANONYMOUS (an fd of -1 names no file)
  // A hint is page-aligned up and used when the range is free; otherwise top-down placement
  // below mmap_base(). The new VMA merges with compatible neighbours.
  Result<VirtAddr> mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags)
      EXCLUDES(mmap_lock_);
  // mmap(addr, len, prot, flags, fd, offset) of an open file (file.h). With MAP_ANONYMOUS the
  // file is ignored, as the kernel ignores the fd. The VMA holds a reference on the file;
  // f_op->mmap runs before the VMA becomes visible. Errors as above, and:
  //   EBADF      a null file without MAP_ANONYMOUS
  //   EINVAL     offset not page aligned
  //   EOVERFLOW  offset + len passes the file's largest size (file_mmap_ok)
  //   EACCES     the file is not open for reading; MAP_SHARED with PROT_WRITE of a file not
  //              open for writing
  //   ENODEV     the file has no f_op->mmap
  //   whatever f_op->mmap returns (the mapping is undone)
  Result<VirtAddr> mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags,
                        std::shared_ptr<File> file, uint64_t offset) EXCLUDES(mmap_lock_);
  // mremap (mm/mremap.c): shrink in place, grow in place when the space after is free, or
  // move (MREMAP_MAYMOVE; MREMAP_FIXED to new_addr, unmapping what was there). A move carries
  // every PTE as it is (present, swap, device-private, migration entries: refcounts and
  // mapcounts stay) under MMU_NOTIFY_UNMAP of the old range; the VMA keeps its vm_pgoff, so
  // the rmap finds the pages at their new address. MREMAP_DONTUNMAP leaves the old range
  // mapped and empty, without its anon_vma. A hugetlb mapping's lengths round up to whole
  // huge pages; it may shrink in place or move (MREMAP_FIXED) with its PMD leaves and its
  // reservations (move_hugetlb_page_tables), never grow. Takes mmap_lock for write.
  //   EINVAL  unknown flags; FIXED or DONTUNMAP without MAYMOVE; DONTUNMAP with
  //           old_len != new_len; old_addr or new_addr unaligned; new_len 0; the new range
  //           beyond TASK_SIZE or overlapping the old one; old_len 0 of a private mapping;
  //           DONTUNMAP of a VM_DONTEXPAND/VM_PFNMAP mapping (so of any hugetlb one);
  //           hugetlb: old_addr or new_addr not huge-page aligned, or new_len > old_len
  //   EFAULT  no VMA at old_addr, the old range crosses its end, or growing a VM_DONTEXPAND
  //           or VM_PFNMAP mapping
  //   ENOMEM  cannot grow in place without MREMAP_MAYMOVE; no room; map count
  Result<VirtAddr> mremap(VirtAddr old_addr, uint64_t old_len, uint64_t new_len,
                          MremapFlags flags, VirtAddr new_addr = VirtAddr(0))
      EXCLUDES(mmap_lock_);
  // madvise (mm/madvise.c), madvise.cc lists each advice. Takes mmap_lock for write (the
  // kernel takes it for read for some advice; the effect is the same).
  //   EINVAL  unknown advice; start unaligned; the range wraps; advice the VMA refuses
  //           (DONTNEED/FREE of VM_LOCKED/VM_PFNMAP, FREE of VM_HUGETLB, DONTNEED of a
  //           hugetlb VMA from a start inside a huge page, FREE of a non-anonymous
  //           VMA, COLLAPSE where no PMD-sized page may go)
  //   ENOMEM  part of the range is not mapped (the mapped parts are still advised), or
  //           MADV_COLLAPSE could not allocate its huge page (always for shmem: docs/mm.md)
  //   EAGAIN / EBUSY  MADV_COLLAPSE's other failures (madvise_collapse_errno)
  Status madvise(VirtAddr start, uint64_t len, Madvise advice) EXCLUDES(mmap_lock_);
  // munmap (mm/vma.c do_vmi_munmap): splits VMAs at the ends, zaps and frees every page and
  // the page tables no VMA needs any more. Holes are fine.
  //   EINVAL  addr unaligned, len 0, or the range beyond TASK_SIZE; the range would cut a
  //           hugetlb page (hugetlb_vm_op_split)
  //   ENOMEM  a split would exceed max_map_count
  Status munmap(VirtAddr addr, uint64_t len) EXCLUDES(mmap_lock_);
  // mprotect (mm/mprotect.c do_mprotect_pkey, mprotect_fixup, change_protection): splits and
  // merges VMAs, rewrites PTEs (write-protect, PROT_NONE, or back). VMAs before a hole keep
  // their new protection, as in the kernel.
  //   EINVAL  addr unaligned; unknown PROT_ bits; the range would cut a hugetlb page
  //   ENOMEM  the range overflows, or part of it is not mapped
  //   EACCES  the VMA may not get the protection (VM_MAY* clear)
  Status mprotect(VirtAddr addr, uint64_t len, MmapProt prot) EXCLUDES(mmap_lock_);

  // ---- VMAs ----
  // find_vma: the first VMA with end > addr, or null.
  const Vma* find_vma(VirtAddr addr) const REQUIRES_SHARED(mmap_lock_);
  // vma_lookup: the VMA containing addr, or null.
  const Vma* vma_lookup(VirtAddr addr) const REQUIRES_SHARED(mmap_lock_);
  std::vector<Vma> vmas() const REQUIRES_SHARED(mmap_lock_);
  size_t map_count() const REQUIRES_SHARED(mmap_lock_) { return vmas_.size(); }
  // vmas() taking mmap_lock for read.
  std::vector<Vma> snapshot_vmas() EXCLUDES(mmap_lock_);
  // sysctl_max_map_count (DEFAULT_MAX_MAP_COUNT = 65530).
  static constexpr size_t kMaxMapCount = 65530;

  // anon_vma_prepare (mm/rmap.c): the VMA's anon_vma, allocating it on first use.
  // REQUIRES: mmap_lock held for read; EXCLUDES the page-table lock (taken inside).
  AnonVma* anon_vma_prepare(const Vma& vma) REQUIRES_SHARED(mmap_lock_);

  // mm_get_huge_zero_folio (mm/huge_memory.c): the huge zero folio's head pfn; the first call
  // takes this mm's one reference on it (MMF_HUGE_ZERO_FOLIO), dropped when the mm exits.
  // ENOMEM when it does not exist and no order-9 block is free.
  Result<Pfn> mm_get_huge_zero_folio();

  // ---- RSS (get_mm_counter / add_mm_counter) ----
  int64_t rss(RssMember m) const {
    return rss_[static_cast<unsigned>(m)].load(std::memory_order_relaxed);
  }
  void add_rss(RssMember m, int64_t delta) {
    rss_[static_cast<unsigned>(m)].fetch_add(delta, std::memory_order_relaxed);
  }

  // ---- TLB seam ----
  // Held by the MMU model for one translation and the access through it. Not reentrant with
  // flush_tlb_range on the same thread.
  class HwWalk {
   public:
    explicit HwWalk(Mm& mm);
    ~HwWalk();
    HwWalk(const HwWalk&) = delete;
    HwWalk& operator=(const HwWalk&) = delete;

   private:
    Mm& mm_;
  };
  // flush_tlb_range: the changes to [start, end) made so far are seen by every later access.
  // Waits for in-flight hardware walks. REQUIRES: the calling thread is not inside a HwWalk.
  void flush_tlb_range(VirtAddr start, VirtAddr end);
  uint64_t tlb_flush_generation() const { return tlb_gen_.load(std::memory_order_acquire); }

  // ---- MMU notifiers (mmu_notifier.h) ----
  // mmu_notifier_register: takes mmap_lock and the anon_vma lock for write (excluding every
  // invalidation of this mm), then adds `n`. EEXIST when already registered; EINVAL once the
  // mm is exiting. `n` must outlive its registration.
  Status mmu_notifier_register(MmuNotifier& n,
                               MmuNotifierKind kind = MmuNotifierKind::kSubscription)
      EXCLUDES(mmap_lock_);
  // mmu_notifier_unregister: returns once no callback into `n` is running; none follows.
  // ENOENT when `n` is not registered. Must not be called from a callback of this mm.
  Status mmu_notifier_unregister(MmuNotifier& n) { return notifiers_.remove(n); }
  size_t nr_mmu_notifiers() { return notifiers_.size(); }
  // mmu_notifier_register(NULL, mm) (the interval-tree half): the mm's interval-tree
  // subscriber, built by `make` and registered as kIntervalTree the first time, the same one
  // afterwards. EINVAL once the mm is exiting. REQUIRES: mmap_lock held for write.
  Result<std::shared_ptr<MmuIntervalTreeSubscriber>> interval_tree_subscriber(
      const std::function<std::shared_ptr<MmuIntervalTreeSubscriber>()>& make)
      REQUIRES(mmap_lock_);
  // The subscriber above once registered, else null; no lock needed (the kernel's
  // smp_load_acquire of mm->notifier_subscriptions). It lives as long as the mm.
  MmuIntervalTreeSubscriber* interval_tree_subscriber_if_any() const {
    return interval_tree_raw_.load(std::memory_order_acquire);
  }
  void invalidate_range_start(const MmuNotifierRange& range);
  void invalidate_range_end(const MmuNotifierRange& range);
  MmuNotifierRange notifier_range(MmuNotifyEvent event, VirtAddr start, VirtAddr end,
                                  const void* owner = nullptr) {
    return MmuNotifierRange{this, start, end, event, owner};
  }

  // ---- fork (fork.cc) ----
  // dup_mmap + copy_page_range (kernel/fork.c, mm/memory.c): a new Mm with a copy of every
  // VMA (VM_DONTCOPY skipped, VM_WIPEONFORK copied empty), anonymous pages shared
  // copy-on-write, non-present entries copied by the kernel's rules (fork.cc). Takes
  // mmap_lock for write.
  //   ENOMEM  no page for the child's tables or PGD, or a device-exclusive folio was locked
  //           (copy_pte_range's -EBUSY, which copy_pmd_range turns into -ENOMEM)
  //   EFAULT  a device-private entry no installed handler can resolve
  Result<std::unique_ptr<Mm>> fork() EXCLUDES(mmap_lock_);
  // MMF_HAS_PINNED: some page of this mm was ever pinned (GUP FOLL_PIN). Makes fork check
  // folio_maybe_dma_pinned and copy pinned anon pages at once.
  void set_has_pinned() { has_pinned_.store(true, std::memory_order_relaxed); }
  bool has_pinned() const { return has_pinned_.load(std::memory_order_relaxed); }

  // ---- rmap (rmap.h) ----
  // The VMA containing addr, for an rmap walk. REQUIRES: kernel().anon_vma_lock() held (every
  // writer of the VMA set holds it for write), not necessarily mmap_lock.
  const Vma* rmap_vma_lookup(VirtAddr addr) const NO_THREAD_SAFETY_ANALYSIS;
  // Calls f(vma) for each VMA in address order until f returns false, for an rmap walk.
  // REQUIRES: kernel().anon_vma_lock() held (read or write).
  template <typename F>
  void rmap_for_each_vma(F&& f) const NO_THREAD_SAFETY_ANALYSIS {
    for (const auto& [start, vma] : vmas_) {
      if (!f(vma)) return;
    }
  }
  // zap_page_range_single (MADV_DONTNEED, and unmap_mapping_range from an rmap walk): clears
  // [start, end) of `vma` under MMU_NOTIFY_CLEAR, flushes and puts the pages. REQUIRES: this
  // mm's mmap_lock, or the anon_vma lock held for read (either keeps the VMA and its tables).
  void zap_vma_range_rmap_locked(const Vma& vma, VirtAddr start, VirtAddr end)
      NO_THREAD_SAFETY_ANALYSIS;

  // ---- statistics ----
  uint64_t nr_faults() const { return nr_faults_.load(std::memory_order_relaxed); }
  void count_fault() { nr_faults_.fetch_add(1, std::memory_order_relaxed); }

  // /proc/pid/maps-style text, one VMA a line. Takes mmap_lock for read.
  std::string maps() EXCLUDES(mmap_lock_);

 private:
  using VmaMap = std::map<uint64_t, Vma>;  // keyed by start

  Mm(Kernel& kernel, std::unique_ptr<PageTable> table);

  // vma_ops.cc
  // split_vma: cuts the VMA at `addr` (strictly inside it); returns the upper part.
  // ENOMEM beyond kMaxMapCount.
  Result<VmaMap::iterator> split_vma_locked(VmaMap::iterator it, VirtAddr addr)
      REQUIRES(mmap_lock_);
  // Merges the VMA with its neighbours where they are compatible (vma_merge_*); returns the
  // merged VMA.
  VmaMap::iterator merge_around_locked(VmaMap::iterator it) REQUIRES(mmap_lock_);
  static bool can_merge(const Vma& lo, const Vma& hi);
  // The VMAs around [start, end): end of the one before (or 0), start of the one after (or
  // the top of the tables), as free_pgtables' floor and ceiling.
  VirtAddr floor_below_locked(VirtAddr start) const REQUIRES_SHARED(mmap_lock_);
  VirtAddr ceiling_above_locked(VirtAddr end) const REQUIRES_SHARED(mmap_lock_);

  // mmap.cc
  // mmap_region: places [start, start + len) (MAP_FIXED replacing), builds the VMA, runs
  // shmem_zero_setup or f_op->mmap, links it and merges. `file` may be null (anonymous).
  Result<VirtAddr> mmap_region_locked(VirtAddr start, uint64_t len, VmFlags vm_flags,
                                      uint64_t pgoff, std::shared_ptr<File> file,
                                      MmapFlags flags) REQUIRES(mmap_lock_);
  // mmap_region's first step, shared by both: MAP_FIXED_NOREPLACE's EEXIST when [start, end)
  // is not free, else the unmap of whatever MAP_FIXED replaces; ENOMEM past max_map_count.
  Status mmap_clear_range_locked(VirtAddr start, VirtAddr end, MmapFlags flags)
      REQUIRES(mmap_lock_);
  // mmap_region for a private anonymous hugetlb mapping at a free or MAP_FIXED range: makes
  // the reservation, links the VMA (never merged). ENOMEM: no reservation; map count.
  Result<VirtAddr> mmap_hugetlb_region_locked(VirtAddr start, uint64_t len, VmFlags vm_flags,
                                              MmapFlags flags) REQUIRES(mmap_lock_);
  // do_mmap after the argument checks of both overloads.
  Result<VirtAddr> do_mmap(VirtAddr addr, uint64_t len, MmapProt prot, MmapFlags flags,
                           std::shared_ptr<File> file, uint64_t offset) EXCLUDES(mmap_lock_);
  // The only ways VMAs enter and leave vmas_ (besides split/merge bookkeeping): they keep
  // each file's i_mmap in step. REQUIRES the anon_vma lock held for write too.
  VmaMap::iterator vma_link_locked(Vma vma) REQUIRES(mmap_lock_);
  // Returns the unlinked VMA for vma_close, which the munmap and exit paths call after their
  // tlb_finish_mmu, as the kernel's remove_vma runs after the pages are freed (a hugetlb
  // folio freed by the unmap may restore a reservation that the close then gives back).
  Vma vma_unlink_locked(VmaMap::iterator it) REQUIRES(mmap_lock_);
  // remove_vma's vm_ops->close (hugetlb_vm_op_close). No lock needed beyond the caller's.
  void vma_close(const Vma& vma);
  // `align` > kPageSize places the range at that alignment (a hugetlb mapping's huge page
  // size; MAP_FIXED at an unaligned address is then EINVAL, prepare_hugepage_range).
  Result<VirtAddr> get_unmapped_area_locked(VirtAddr hint, uint64_t len, MmapFlags flags,
                                            uint64_t align = kPageSize) const
      REQUIRES_SHARED(mmap_lock_);
  bool range_free_locked(VirtAddr start, VirtAddr end) const REQUIRES_SHARED(mmap_lock_);

  // munmap.cc: do_vmi_munmap on a validated, page-aligned range.
  Status do_munmap_locked(VirtAddr start, VirtAddr end) REQUIRES(mmap_lock_);

  // mprotect.cc
  Status mprotect_fixup_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end,
                               VmFlags newflags) REQUIRES(mmap_lock_);
  void change_protection_locked(const Vma& vma, VirtAddr start, VirtAddr end)
      REQUIRES(mmap_lock_);

  // fork.cc
  Status dup_mmap_locked(Mm& child) REQUIRES(mmap_lock_);
  Status copy_page_range_locked(Mm& child, const Vma& dst_vma, const Vma& src_vma)
      REQUIRES(mmap_lock_);
  // The child of a fork is reachable by no one but the forking thread until fork returns, so
  // its VMAs are written without taking its mmap_lock (the kernel's mmap_write_lock_nested,
  // which dpmm's RwLock and lock ranks have no form for).
  void assert_private_to_fork() const ASSERT_CAPABILITY(mmap_lock_) {}

  // mremap.cc: vma_to_resize: the VMA holding [addr, addr + old_len), checked for a resize to
  // new_len (EFAULT, EINVAL as Mm::mremap).
  Result<VmaMap::iterator> vma_to_resize_locked(VirtAddr addr, uint64_t old_len,
                                                uint64_t new_len, MremapFlags flags)
      REQUIRES(mmap_lock_);
  // move_vma: `len` bytes at old_addr of the VMA at `it` go to new_addr with
  // new_len; returns new_addr.
  Result<VirtAddr> move_vma_locked(VmaMap::iterator it, VirtAddr old_addr, uint64_t old_len,
                                   uint64_t new_len, VirtAddr new_addr, MremapFlags flags)
      REQUIRES(mmap_lock_);
  // move_page_tables: every entry of [old_addr, old_addr + len) moves to new_addr as is.
  void move_page_tables_locked(VirtAddr old_addr, VirtAddr new_addr, uint64_t len)
      REQUIRES(mmap_lock_);

  // madvise.cc
  Status madvise_vma_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end, Madvise advice)
      REQUIRES(mmap_lock_);
  Status madvise_update_flags_locked(VmaMap::iterator it, VirtAddr start, VirtAddr end,
                                     VmFlags newflags) REQUIRES(mmap_lock_);
  void madvise_free_locked(const Vma& vma, VirtAddr start, VirtAddr end) REQUIRES(mmap_lock_);
  Status madvise_collapse_locked(const Vma& vma, VirtAddr start, VirtAddr end)
      REQUIRES(mmap_lock_);

  // zap.cc: unmap_page_range over [start, end) of `vma`, handing pages to `tlb`.
  void zap_range_locked(const Vma& vma, VirtAddr start, VirtAddr end, MmuGather& tlb)
      REQUIRES(mmap_lock_);

  Kernel& kernel_;
  std::unique_ptr<PageTable> page_table_;
  RwLock mmap_lock_{LockRank::kMmapLock};
  VmaMap vmas_ GUARDED_BY(mmap_lock_);
  // The anon_vmas this mm's VMAs own (anon_vma_prepare, anon_vma_fork); the mm holds one
  // reference on each and drops it at exit (rmap.h).
  Protected<std::vector<AnonVma*>, Mutex> anon_vmas_{LockRank::kLeaf};
  std::array<std::atomic<int64_t>, static_cast<unsigned>(RssMember::kCount)> rss_{};
  std::atomic<uint64_t> tlb_gen_{0};
  std::atomic<int64_t> hw_walkers_{0};
  MmuNotifierSubscriptions notifiers_;
  std::shared_ptr<MmuIntervalTreeSubscriber> interval_tree_ GUARDED_BY(mmap_lock_);
  std::atomic<MmuIntervalTreeSubscriber*> interval_tree_raw_{nullptr};
  std::atomic<bool> has_pinned_{false};
  std::atomic<bool> huge_zero_held_{false};  // MMF_HUGE_ZERO_FOLIO
  std::atomic<uint64_t> nr_faults_{0};
};

// mmu_gather (mm/mmu_gather.c): pages and page tables unmapped by one operation, freed only
// after the TLB flush that makes the unmapping visible to every CPU.
class MmuGather {
 public:
  MmuGather(Mm& mm, VirtAddr start, VirtAddr end) : mm_(mm), start_(start), end_(end) {}
  // Asserts finish() ran.
  ~MmuGather();
  MmuGather(const MmuGather&) = delete;
  MmuGather& operator=(const MmuGather&) = delete;

  // A mapping's reference to put after the flush (tlb_remove_page).
  void remove_folio(page::Folio folio) { folios_.push_back(folio); }
  // A page-table page to free after the flush (tlb_remove_table).
  void remove_tables(std::vector<page::Folio> tables);
  // tlb_finish_mmu: flush, then put every folio and table.
  void finish();

 private:
  Mm& mm_;
  VirtAddr start_;
  VirtAddr end_;
  std::vector<page::Folio> folios_;
  std::vector<page::Folio> tables_;
  bool finished_ = false;
};

}  // namespace dpmm::mm
