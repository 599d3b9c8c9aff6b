#include "mm/page_table.h"

#include <algorithm>
#include <cassert>

#include "arch/decoded_entry.h"
#include "mm/kernel.h"

namespace dpmm::mm {
namespace {

PtLevel child_of(PtLevel level) {
  switch (level) {
    case PtLevel::kPgd: return PtLevel::kPud;
    case PtLevel::kPud: return PtLevel::kPmd;
    case PtLevel::kPmd: return PtLevel::kPte;
    case PtLevel::kPte: break;
  }
  assert(false && "a PTE table has no child tables");
  return PtLevel::kPte;
}

}  // namespace

Result<std::unique_ptr<PageTable>> PageTable::create(Kernel& kernel) {
  page::Folio pgd = TRY(kernel.alloc_folio(Order(0)));
  return std::unique_ptr<PageTable>(new PageTable(kernel, pgd));
}

PageTable::PageTable(Kernel& kernel, page::Folio pgd)
    : kernel_(kernel), pgd_pfn_(kernel.page_to_pfn(pgd.head())) {}

PageTable::~PageTable() {
  assert(nr_tables_.load() == 0 && "pgd_free with lower tables still hooked");
  assert(nr_deposited() == 0 && "pgd_free with deposited tables");
  for (unsigned i = 0; i < kPtrsPerTable; ++i) {
    assert(slot(pgd_pfn_, i).load() == 0 && "pgd_free of a PGD with entries");
  }
  page::folio_put(page::Folio(MUST(kernel_.pfn_to_page(pgd_pfn_), "the PGD is RAM")));
}

EntrySlot PageTable::slot(Pfn table, unsigned index) const {
  assert(index < kPtrsPerTable && "table index out of range");
  auto* words = reinterpret_cast<uint64_t*>(kernel_.page_bytes(table).data());
  return EntrySlot(words + index);
}

std::optional<Pfn> PageTable::table_of(uint64_t word) const {
  return kernel_.codec().table_pfn(word);
}

EntrySlot PageTable::pgd_offset(VirtAddr addr) const {
  return slot(pgd_pfn_, pt_index(PtLevel::kPgd, addr));
}

std::optional<EntrySlot> PageTable::pud_offset(EntrySlot pgd, VirtAddr addr) const {
  const std::optional<Pfn> t = table_of(pgd.load());
  if (!t) return std::nullopt;
  return slot(*t, pt_index(PtLevel::kPud, addr));
}

std::optional<EntrySlot> PageTable::pmd_offset(EntrySlot pud, VirtAddr addr) const {
  const std::optional<Pfn> t = table_of(pud.load());
  if (!t) return std::nullopt;
  return slot(*t, pt_index(PtLevel::kPmd, addr));
}

std::optional<EntrySlot> PageTable::pte_offset(EntrySlot pmd, VirtAddr addr) const {
  const std::optional<Pfn> t = table_of(pmd.load());
  if (!t) return std::nullopt;
  return slot(*t, pt_index(PtLevel::kPte, addr));
}

Result<EntrySlot> PageTable::populate(EntrySlot entry, PtLevel child, VirtAddr addr) {
  if (const std::optional<Pfn> t = table_of(entry.load())) return slot(*t, pt_index(child, addr));
  if (entry.load() != 0)
    return make_error(Errno::kEEXIST, "{} entry for {} holds {:#x}, not a table",
                      child == PtLevel::kPte ? "PMD" : "upper-level", addr, entry.load());
  // Allocate outside the lock (the allocation may grow the zone), then publish under it.
  page::Folio table = TRY(kernel_.alloc_folio(Order(0)));
  const Pfn pfn = kernel_.page_to_pfn(table.head());
  const uint64_t word = MUST(kernel_.codec().make_table(pfn), "a RAM pfn fits a table entry");
  bool installed = false;
  {
    SpinLocker guard(lock_);
    if (entry.load() == 0) {
      // Release store: a walker that sees the entry sees the zeroed table behind it.
      entry.store(word);
      installed = true;
      nr_tables_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!installed) page::folio_put(table);
  const std::optional<Pfn> t = table_of(entry.load());
  if (!t)
    return make_error(Errno::kEEXIST, "entry for {} changed to {:#x} while populating", addr,
                      entry.load());
  return slot(*t, pt_index(child, addr));
}

void PageTable::deposit_table(VirtAddr haddr, page::Folio table) {
  assert(haddr.is_aligned(kHpagePmdSize) && "deposit for an unaligned PMD");
  [[maybe_unused]] const bool fresh =
      deposited_.emplace(haddr.raw(), kernel_.page_to_pfn(table.head())).second;
  assert(fresh && "two tables deposited for one PMD");
  nr_tables_.fetch_add(1, std::memory_order_relaxed);
}

page::Folio PageTable::withdraw_table(VirtAddr haddr) {
  auto it = deposited_.find(haddr.raw());
  assert(it != deposited_.end() && "withdraw with nothing deposited");
  const Pfn pfn = it->second;
  deposited_.erase(it);
  nr_tables_.fetch_sub(1, std::memory_order_relaxed);
  return page::Folio(MUST(kernel_.pfn_to_page(pfn), "tables are RAM"));
}

void PageTable::hook_table_locked(EntrySlot pmd, page::Folio table) {
  const Pfn pfn = kernel_.page_to_pfn(table.head());
  pmd.store(MUST(kernel_.codec().make_table(pfn), "a RAM pfn fits a table entry"));
  nr_tables_.fetch_add(1, std::memory_order_relaxed);
}

page::Folio PageTable::unhook_table_locked(EntrySlot pmd) {
  const std::optional<Pfn> t = table_of(pmd.load());
  assert(t && "unhook of a PMD that is not a table");
  pmd.store(0);
  nr_tables_.fetch_sub(1, std::memory_order_relaxed);
  return page::Folio(MUST(kernel_.pfn_to_page(*t), "tables are RAM"));
}

size_t PageTable::nr_deposited() {
  SpinLocker guard(lock_);
  return deposited_.size();
}

Result<EntrySlot> PageTable::pud_alloc(EntrySlot pgd, VirtAddr addr) {
  return populate(pgd, PtLevel::kPud, addr);
}
Result<EntrySlot> PageTable::pmd_alloc(EntrySlot pud, VirtAddr addr) {
  return populate(pud, PtLevel::kPmd, addr);
}
Result<EntrySlot> PageTable::pte_alloc(EntrySlot pmd, VirtAddr addr) {
  return populate(pmd, PtLevel::kPte, addr);
}

std::optional<EntrySlot> PageTable::walk_pmd(VirtAddr addr) const {
  const std::optional<EntrySlot> pud = pud_offset(pgd_offset(addr), addr);
  if (!pud) return std::nullopt;
  return pmd_offset(*pud, addr);
}

std::optional<EntrySlot> PageTable::walk_pte(VirtAddr addr) const {
  const std::optional<EntrySlot> pmd = walk_pmd(addr);
  if (!pmd) return std::nullopt;
  return pte_offset(*pmd, addr);
}

Result<EntrySlot> PageTable::walk_pmd_alloc(VirtAddr addr) {
  const EntrySlot pud = TRY(pud_alloc(pgd_offset(addr), addr));
  return pmd_alloc(pud, addr);
}

std::vector<page::Folio> PageTable::free_pgd_range(VirtAddr addr, VirtAddr end, VirtAddr floor,
                                                   VirtAddr ceiling) {
  std::vector<page::Folio> out;
  SpinLocker guard(lock_);
  free_range_below(pgd_pfn_, PtLevel::kPgd, addr, end, floor, ceiling, out);
  return out;
}

void PageTable::free_range_below(Pfn table, PtLevel level, VirtAddr addr, VirtAddr end,
                                 VirtAddr floor, VirtAddr ceiling,
                                 std::vector<page::Folio>& out) {
  if (level == PtLevel::kPte) return;
  const uint64_t span = pt_entry_span(level);
  const PtLevel child = child_of(level);
  for (uint64_t a = addr.align_down(span).raw(); a < end.raw(); a += span) {
    const EntrySlot e = slot(table, pt_index(level, VirtAddr(a)));
    const std::optional<Pfn> child_table = table_of(e.load());
    if (!child_table) continue;
    const VirtAddr lo(std::max(a, addr.raw()));
    const VirtAddr hi(std::min(a + span, end.raw()));
    free_range_below(*child_table, child, lo, hi, floor, ceiling, out);
    // The child table serves [a, a + span); it may go only if no VMA can use any of it.
    if (a < floor.raw() || a + span > ceiling.raw()) continue;
    for (unsigned i = 0; i < kPtrsPerTable; ++i) {
      assert(slot(*child_table, i).load() == 0 && "freeing a page table that still has entries");
    }
    e.store(0);
    nr_tables_.fetch_sub(1, std::memory_order_relaxed);
    out.push_back(page::Folio(MUST(kernel_.pfn_to_page(*child_table), "tables are RAM")));
  }
}

}  // namespace dpmm::mm
