// Four-level page tables made of the arch's real words in real RAM pages.
//
// Every table (PGD, PUD, PMD, PTE) is one page allocated from the machine's node; its 512
// entries are the page's bytes in the backing store, each a 64-bit word in the arch's format
// (arch::EntryCodec). Words are read and written only through EntrySlot, with atomic
// operations, because the MMU model (access.h) walks the tables without any lock, as hardware
// does.
//
// Levels and indices (4 KiB pages, 4 levels; arch/x86/include/asm/pgtable_64_types.h,
// arch/arm64/include/asm/pgtable-hwdef.h):
//   PGD bits 39..47, PUD bits 30..38, PMD bits 21..29, PTE bits 12..20.
// Upper-level (PGD, PUD, PMD) table entries are table descriptors: the same word at every
// level on both arches (x86 _PAGE_TABLE, arm64 PMD_TYPE_TABLE), built with
// EntryCodec::make_table and decoded at EntryLevel::kPmd. PUD leaves (1 GiB pages) are not
// modelled. A PMD entry may also be a 2 MiB leaf (an anonymous THP or the huge zero folio,
// huge_memory.h): the walks below stop at it (pte_offset returns nullopt for a leaf).
//
// Deposited tables (pgtable_trans_huge_deposit / _withdraw, mm/pgtable-generic.c): every
// anonymous PMD leaf has a PTE table put aside when it is made, so that splitting it never
// needs an allocation. dpmm keeps them in a map keyed by the PMD's address; they count in
// nr_tables() as the kernel counts them in mm->pgtables_bytes.
//
// Locking (mm/memory.c, Documentation/mm/split_page_table_lock.rst):
//   - populating an empty upper entry (pud_alloc, pmd_alloc, pte_alloc) takes the page-table
//     lock and re-checks, freeing its new table if someone else populated the entry first;
//   - PTE changes REQUIRE the page-table lock (one per mm: mm->page_table_lock; dpmm has no
//     split PTE locks), so that pte_same() checks under it are meaningful;
//   - tables are freed (free_pgd_range) only with mmap_lock held for write, and the caller
//     waits for in-flight hardware walks (Mm::flush_tlb_range) before the pages go back to
//     the allocator -- the kernel's TLB shootdown before freeing tables (mm/mmu_gather.c).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "page/folio.h"

namespace dpmm::mm {

class Kernel;

inline constexpr unsigned kPtrsPerTable = 512;  // PTRS_PER_PGD/PUD/PMD/PTE
inline constexpr unsigned kPmdShift = 21;
inline constexpr unsigned kPudShift = 30;
// HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, HPAGE_PMD_NR (include/linux/huge_mm.h).
inline constexpr unsigned kHpagePmdOrder = kPmdShift - kPageShift;
inline constexpr uint64_t kHpagePmdSize = uint64_t{1} << kPmdShift;
inline constexpr uint64_t kHpagePmdNr = uint64_t{1} << kHpagePmdOrder;
inline constexpr unsigned kPgdShift = 39;
// The end of what a 4-level table maps: 2^48.
inline constexpr uint64_t kPgtableTop = uint64_t{1} << 48;

enum class PtLevel : uint8_t { kPgd, kPud, kPmd, kPte };

// Bytes one entry of a table at `level` maps (PGDIR_SIZE, PUD_SIZE, PMD_SIZE, PAGE_SIZE).
constexpr uint64_t pt_entry_span(PtLevel level) {
  switch (level) {
    case PtLevel::kPgd: return uint64_t{1} << kPgdShift;
    case PtLevel::kPud: return uint64_t{1} << kPudShift;
    case PtLevel::kPmd: return uint64_t{1} << kPmdShift;
    case PtLevel::kPte: return kPageSize;
  }
  return 0;
}
// pgd_index, pud_index, pmd_index, pte_index.
constexpr unsigned pt_index(PtLevel level, VirtAddr addr) {
  return static_cast<unsigned>((addr.raw() / pt_entry_span(level)) & (kPtrsPerTable - 1));
}

// One entry of a table page. Loads are acquire (READ_ONCE plus the ordering a walker needs to
// see a table's contents after seeing the entry that points to it); stores are release.
class EntrySlot {
 public:
  explicit EntrySlot(uint64_t* word) : word_(word) {}
  uint64_t load() const {  // ptep_get / pmdp_get
    return std::atomic_ref<uint64_t>(*word_).load(std::memory_order_acquire);
  }
  void store(uint64_t v) const {  // set_pte_at / set_pmd / WRITE_ONCE
    std::atomic_ref<uint64_t>(*word_).store(v, std::memory_order_release);
  }
  uint64_t exchange(uint64_t v) const {  // ptep_get_and_clear when v == 0
    return std::atomic_ref<uint64_t>(*word_).exchange(v, std::memory_order_acq_rel);
  }
  // Replaces `expected` by `desired`; on failure `expected` holds the current word.
  bool compare_exchange(uint64_t& expected, uint64_t desired) const {
    return std::atomic_ref<uint64_t>(*word_).compare_exchange_strong(expected, desired,
                                                                     std::memory_order_acq_rel);
  }
  bool operator==(const EntrySlot&) const = default;

 private:
  uint64_t* word_;
};

class PageTable {
 public:
  // pgd_alloc: an empty PGD page. ENOMEM when the node is out of pages.
  static Result<std::unique_ptr<PageTable>> create(Kernel& kernel);
  // pgd_free. REQUIRES: every lower table already freed (exit_mmap's free_pgtables).
  ~PageTable();
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  // mm->page_table_lock.
  SpinLock& lock() RETURN_CAPABILITY(lock_) { return lock_; }
  Pfn pgd_pfn() const { return pgd_pfn_; }

  // ---- one function per level (no allocation; nullopt when the entry above is none or not
  // a table) ----
  EntrySlot pgd_offset(VirtAddr addr) const;
  std::optional<EntrySlot> pud_offset(EntrySlot pgd, VirtAddr addr) const;
  std::optional<EntrySlot> pmd_offset(EntrySlot pud, VirtAddr addr) const;
  std::optional<EntrySlot> pte_offset(EntrySlot pmd, VirtAddr addr) const;  // pte_offset_map

  // ---- allocating variants (p4d/pud_alloc, pmd_alloc, __pte_alloc): populate the entry with
  // a fresh zeroed table when it is none. ENOMEM when no page is left; EEXIST when the entry
  // holds something other than a table (a PMD leaf or swap entry: THP, later phases).
  // EXCLUDES the page-table lock (taken inside). ----
  Result<EntrySlot> pud_alloc(EntrySlot pgd, VirtAddr addr) EXCLUDES(lock_);
  Result<EntrySlot> pmd_alloc(EntrySlot pud, VirtAddr addr) EXCLUDES(lock_);
  Result<EntrySlot> pte_alloc(EntrySlot pmd, VirtAddr addr) EXCLUDES(lock_);

  // ---- whole walks ----
  std::optional<EntrySlot> walk_pmd(VirtAddr addr) const;
  std::optional<EntrySlot> walk_pte(VirtAddr addr) const;
  // The PMD entry of `addr`, allocating PUD and PMD tables as needed.
  Result<EntrySlot> walk_pmd_alloc(VirtAddr addr) EXCLUDES(lock_);

  // pgtable_trans_huge_deposit: puts the zeroed PTE table `table` aside for the PMD leaf at
  // `haddr` (PMD aligned). REQUIRES: the page-table lock; none deposited there yet.
  void deposit_table(VirtAddr haddr, page::Folio table) REQUIRES(lock_);
  // pgtable_trans_huge_withdraw: takes the table deposited for `haddr` back; the caller
  // hooks it (split), deposits it elsewhere (mremap) or frees it (zap, after the flush).
  // REQUIRES: the lock.
  page::Folio withdraw_table(VirtAddr haddr) REQUIRES(lock_);
  // pmd_populate: hooks `table` at `pmd` (a PMD entry that was none or a leaf).
  void hook_table_locked(EntrySlot pmd, page::Folio table) REQUIRES(lock_);
  // pmdp_collapse_flush's clearing half: `pmd` (a table) becomes none; returns the table,
  // which the caller deposits or frees. REQUIRES: the lock; `pmd` points to a table.
  page::Folio unhook_table_locked(EntrySlot pmd) REQUIRES(lock_);
  // The number of deposited tables (tests).
  size_t nr_deposited() EXCLUDES(lock_);

  // The page-table pages below the PGD (PUD, PMD and PTE tables), for tests and reports.
  uint64_t nr_tables() const { return nr_tables_.load(std::memory_order_relaxed); }

  // free_pgd_range (mm/memory.c): unhooks every table whose whole span lies in
  // [floor, ceiling) and that serves some part of [addr, end), returning their folios: the
  // caller puts them after flushing the TLB (mmu_gather's table batch). REQUIRES: mmap_lock
  // held for write; no VMA inside [floor, ceiling) (so those tables are empty, asserted).
  [[nodiscard]] std::vector<page::Folio> free_pgd_range(VirtAddr addr, VirtAddr end,
                                                        VirtAddr floor, VirtAddr ceiling)
      EXCLUDES(lock_);

 private:
  PageTable(Kernel& kernel, page::Folio pgd);
  // The entry at `index` of the table page `table`.
  EntrySlot slot(Pfn table, unsigned index) const;
  // Decodes an upper-level entry: the table it points to, or nullopt for none/leaf/swap.
  std::optional<Pfn> table_of(uint64_t word) const;
  Result<EntrySlot> populate(EntrySlot entry, PtLevel child, VirtAddr addr) EXCLUDES(lock_);
  // One level of free_pgd_range: frees the tables under `table` (a table at `level`) that
  // lie in [floor, ceiling) and overlap [addr, end).
  void free_range_below(Pfn table, PtLevel level, VirtAddr addr, VirtAddr end, VirtAddr floor,
                        VirtAddr ceiling, std::vector<page::Folio>& out) REQUIRES(lock_);

  Kernel& kernel_;
  const Pfn pgd_pfn_;
  SpinLock lock_{LockRank::kPageTable};
  std::atomic<uint64_t> nr_tables_{0};
  std::map<uint64_t, Pfn> deposited_ GUARDED_BY(lock_);
};

}  // namespace dpmm::mm
