#include "mm/huge_memory.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/device_private.h"
#include "mm/migration_entry.h"
#include "mm/rmap.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

// VM_SPECIAL | VM_HUGETLB: never THP (VM_NO_KHUGEPAGED).
constexpr VmFlags kVmNoThp = VmFlags::kIo | VmFlags::kDontExpand | VmFlags::kPfnMap |
                             VmFlags::kMixedMap | VmFlags::kHugetlb;

uint64_t encode_pmd(const Kernel& k, Pfn pfn, Prot prot) {
  return MUST(k.codec().make_present(EntryLevel::kPmd, pfn, prot),
              "a 2 MiB-aligned RAM pfn with a user protection encodes as a PMD leaf");
}

uint64_t encode_pte(const Kernel& k, Pfn pfn, Prot prot) {
  return MUST(k.codec().make_present(EntryLevel::kPte, pfn, prot),
              "a RAM pfn with a PMD leaf's protection encodes as a PTE");
}

// The huge zero folio's leaf: read-only and special (pmd_mkspecial, mm/huge_memory.c
// set_huge_zero_folio).
uint64_t huge_zero_pmd(const Kernel& k, const Vma& vma, Pfn zero) {
  return encode_pmd(k, zero, (vma.page_prot & ~Prot::kWrite) | Prot::kSpecial);
}

// map_anon_folio_pmd: a new anon THP mapped writable (VM_WRITE is set: access_error passed a
// write fault, or the caller checked), dirty and young.
uint64_t anon_thp_pmd(const Kernel& k, const Vma& vma, Pfn pfn) {
  Prot p = vma.page_prot | Prot::kDirty | Prot::kAccessed;
  if (has(vma.flags, VmFlags::kWrite)) p = p | Prot::kWrite;  // maybe_pmd_mkwrite
  return encode_pmd(k, pfn, p);
}

// vma_alloc_anon_folio_pmd: an order-9 folio of zeroes, uptodate. nullopt when no order-9
// block is free (THP_FAULT_FALLBACK).
std::optional<page::Folio> alloc_anon_folio_pmd(Kernel& k) {
  Result<page::Folio> f = k.alloc_folio(Order(kHpagePmdOrder));
  if (f.is_error()) return std::nullopt;
  f->set_flag(page::PageFlag::kUptodate);  // __folio_mark_uptodate
  return *f;
}

// pmd_same, allowing for accessed/dirty set by a hardware walk since `orig` was read.
bool pmd_same_leaf(const Kernel& k, uint64_t now, uint64_t orig) {
  if (now == orig) return true;
  const std::optional<DecodedEntry> a = pmd_trans_huge(k, now);
  const std::optional<DecodedEntry> b = pmd_trans_huge(k, orig);
  if (!a || !b) return false;
  constexpr Prot kHw = Prot::kAccessed | Prot::kDirty;
  return a->pfn == b->pfn && (a->prot & ~kHw) == (b->prot & ~kHw);
}

// do_huge_zero_wp_pmd (mm/huge_memory.c, 6.13+): a write to the huge zero PMD gets a new THP
// of zeroes in its place; no order-9 block means fallback (split, then the PTE path).
std::optional<FaultResult> do_huge_zero_wp_pmd(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  const VirtAddr haddr = vmf.address.align_down(kHpagePmdSize);
  mm.mmap_assert_locked();
  mm.anon_vma_prepare(vma);
  std::optional<page::Folio> folio = alloc_anon_folio_pmd(k);
  if (!folio) return std::nullopt;
  const MmuNotifierRange range = mm.notifier_range(MmuNotifyEvent::kClear, haddr,
                                                   haddr + kHpagePmdSize);
  mm.invalidate_range_start(range);
  bool mapped = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd_same_leaf(k, pmd.load(), orig_pmd)) {
      // pmdp_huge_clear_flush, then map_anon_folio_pmd; the deposited table stays.
      pmd.exchange(0);
      folio_add_new_anon_rmap(*folio, vma, haddr, RmapExclusive::kYes, RmapLevel::kPmd);
      pmd.store(anon_thp_pmd(k, vma, k.page_to_pfn(folio->head())));
      mm.add_rss(RssMember::kAnonPages, static_cast<int64_t>(kHpagePmdNr));
      mapped = true;
    }
  }
  if (mapped) mm.flush_tlb_range(haddr, haddr + kHpagePmdSize);
  mm.invalidate_range_end(range);
  if (!mapped) page::folio_put(*folio);
  return FaultResult::handled();
}

// do_huge_pmd_wp_page.
std::optional<FaultResult> do_huge_pmd_wp_page(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  const DecodedEntry d = *pmd_trans_huge(k, orig_pmd);
  if (is_huge_zero_pmd(k, d)) {
    if (std::optional<FaultResult> r = do_huge_zero_wp_pmd(vmf, pmd, orig_pmd)) return r;
    split_huge_pmd(mm, vma, pmd, vmf.address);
    return std::nullopt;
  }
  page::Page* page = vm_normal_page_pmd(k, d);
  page::Folio folio = page::page_folio(page);
  // A shared mapping's THP (shmem) is not modelled: every PMD leaf is private anon.
  assert(folio.is_anon() && "a PMD leaf maps an anon THP");
  bool reuse = page_anon_exclusive(page);
  if (!reuse) {
    // The folio lock orders us against other reuse checks; take it without the page-table
    // lock (folio lock ranks below it) and recheck the PMD afterwards.
    if (!page::folio_try_get(folio)) return FaultResult{FaultOutcome::kRetry, "THP being freed"};
    page::folio_lock(folio);
    // wp_can_reuse: the mapping's reference and ours, nothing else (no swap cache here).
    if (page_anon_exclusive(page)) {
      reuse = true;
    } else if (folio.ref_count() == 2 && folio.mapcount() == 1) {
      page->set_flag(page::PageFlag::kAnonExclusive);  // folio_move_anon_rmap + SetPageAnonExclusive
      reuse = true;
    }
    page::folio_unlock(folio);
    page::folio_put(folio);
  }
  if (!reuse) {
    split_huge_pmd(mm, vma, pmd, vmf.address);
    return std::nullopt;
  }
  // pmd_mkyoung, pmd_mkdirty, maybe_pmd_mkwrite, pmdp_set_access_flags.
  const uint64_t entry = encode_pmd(k, d.pfn, d.prot | Prot::kWrite | Prot::kDirty | Prot::kAccessed);
  SpinLocker guard(mm.page_table().lock());
  uint64_t expected = pmd.load();
  if (pmd_same_leaf(k, expected, orig_pmd)) pmd.compare_exchange(expected, entry);
  return FaultResult::handled();
}

// huge_pmd_set_accessed / touch_pmd.
FaultResult huge_pmd_set_accessed(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  const Kernel& k = vmf.mm->kernel();
  const DecodedEntry d = *pmd_trans_huge(k, orig_pmd);
  Prot want = d.prot | Prot::kAccessed;
  if (has(vmf.flags, FaultFlags::kWrite)) want = want | Prot::kDirty;
  if (want == d.prot) return FaultResult::handled();
  const uint64_t entry = encode_pmd(k, d.pfn, want);
  SpinLocker guard(vmf.mm->page_table().lock());
  uint64_t expected = orig_pmd;
  pmd.compare_exchange(expected, entry);
  return FaultResult::handled();
}

// is_cow_mapping: private and may become writable (mm/internal.h).
bool cow_mapping(const Vma& vma) {
  return !has(vma.flags, VmFlags::kShared) && has(vma.flags, VmFlags::kMayWrite);
}

// `where` advanced by `i` pages, in its own numbering.
arch::PfnOrOffset advance(arch::PfnOrOffset where, uint64_t i) {
  return where.is_pfn() ? arch::PfnOrOffset::of_pfn(Pfn(where.raw_index() + i))
                        : arch::PfnOrOffset::of_offset(DevPrivOffset(where.raw_index() + i));
}

constexpr arch::SwpBit kSwpSoftBits = arch::SwpBit::kSoftDirty | arch::SwpBit::kUffdWp;

// A migration PMD word with `leaf` and the software bits of `old` (a swap PMD).
uint64_t migration_pmd(const Kernel& k, arch::Softleaf leaf, arch::SwpBit bits) {
  return MUST(k.codec().make_swap(EntryLevel::kPmd, leaf, bits & kSwpSoftBits),
              "a migration PMD encodes");
}

// __split_huge_pmd_locked's migration branch: 512 migration PTEs of the entry's kind.
void split_migration_pmd_locked(const Kernel& k, uint64_t word, uint64_t* words) {
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, word);
  const arch::PfnOrOffset where =
      MUST(arch::softleaf_to_pfn_or_offset(d.leaf), "migration entries hold one");
  const MigrationKind kind = migration_kind_of(d.leaf);
  const arch::SwpBit bits = d.swp_bits & kSwpSoftBits;
  for (uint64_t i = 0; i < kHpagePmdNr; ++i) {
    const arch::Softleaf leaf = migration_entry_like(d.leaf, advance(where, i), kind);
    EntrySlot(words + i).store(
        MUST(k.codec().make_swap(EntryLevel::kPte, leaf, bits), "a migration PTE encodes"));
  }
}

// The readable form of a device-private PMD word (make_readable_device_private_entry, the
// swap software bits kept); the word itself when it is already readable.
uint64_t device_private_pmd_readable(const Kernel& k, uint64_t word) {
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, word);
  if (!arch::softleaf_is_device_private_write(d.leaf)) return word;
  const arch::PfnOrOffset where =
      MUST(arch::softleaf_to_pfn_or_offset(d.leaf), "device-private entries hold one");
  return make_device_private_pmd(k, where, Prot::kNone, d.swp_bits);
}

// __split_huge_pmd_locked's device-private branch. REQUIRES: the page-table lock.
void split_device_private_pmd_locked(Mm& mm, EntrySlot pmd, VirtAddr haddr, uint64_t* words) {
  Kernel& k = mm.kernel();
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, pmd.load());
  const arch::PfnOrOffset where =
      MUST(arch::softleaf_to_pfn_or_offset(d.leaf), "device-private entries hold one");
  const bool write = arch::softleaf_is_device_private_write(d.leaf);
  // Only the soft-dirty and uffd-wp bits carry over; PMD swap entries have no exclusive bit
  // (PageAnonExclusive of the pages says it).
  const arch::SwpBit bits = d.swp_bits & (arch::SwpBit::kSoftDirty | arch::SwpBit::kUffdWp);
  page::Page* head = device_private_pmd_page(k, d.leaf);
  if (head != nullptr) {
    page::Folio folio = page::page_folio(head);
    const RmapExclusive excl =
        page_anon_exclusive(head) ? RmapExclusive::kYes : RmapExclusive::kNo;
    page::folio_ref_add(folio, static_cast<int>(kHpagePmdNr) - 1);
    folio_add_anon_rmap_ptes(folio, head, kHpagePmdNr, excl);
    folio_remove_rmap_pmd(folio);
  }
  for (uint64_t i = 0; i < kHpagePmdNr; ++i) {
    const arch::PfnOrOffset at = advance(where, i);
    const arch::Softleaf leaf =
        MUST(write ? arch::make_writable_device_private_entry(k.softleaf_format(), at)
                   : arch::make_readable_device_private_entry(k.softleaf_format(), at),
             "a page of a device-private THP has an entry");
    EntrySlot(words + i).store(
        MUST(k.codec().make_swap(EntryLevel::kPte, leaf, bits), "a device-private PTE encodes"));
  }
  (void)haddr;
}

// The page-table locks of several mms, in address order (so two splitters never deadlock).
// The analysis cannot follow a lock set held across a loop: split_folio's contract says it.
void lock_page_tables(const std::vector<Mm*>& mms) NO_THREAD_SAFETY_ANALYSIS {
  for (Mm* m : mms) m->page_table().lock().lock();
}
void unlock_page_tables(const std::vector<Mm*>& mms) NO_THREAD_SAFETY_ANALYSIS {
  for (auto it = mms.rbegin(); it != mms.rend(); ++it) (*it)->page_table().lock().unlock();
}

}  // namespace

bool thp_vma_suitable_pmd(const Vma& vma, VirtAddr addr) {
  // An anonymous VMA's pgoff is its start >> PAGE_SHIFT unless mremap moved it: a THP's pages
  // must then still sit at one 2 MiB-aligned page offset.
  if ((((vma.start.raw() >> kPageShift) - vma.pgoff) & (kHpagePmdNr - 1)) != 0) return false;
  const uint64_t haddr = addr.raw() & ~(kHpagePmdSize - 1);
  return haddr >= vma.start.raw() && haddr + kHpagePmdSize <= vma.end.raw();
}

bool thp_vma_allowable_pmd(const Kernel& k, const Vma& vma, ThpAsker asker) {
  if (!vma.is_anonymous()) return false;  // shmem and file THPs are not modelled
  if (has_any(vma.flags, VmFlags::kNoHugePage | kVmNoThp)) return false;
  if (asker == ThpAsker::kForcedCollapse) return true;
  switch (k.thp_policy()) {
    case ThpPolicy::kNever: return false;
    case ThpPolicy::kMadvise: return has(vma.flags, VmFlags::kHugePage);
    case ThpPolicy::kAlways: return true;
  }
  return false;
}

std::optional<DecodedEntry> pmd_trans_huge(const Kernel& k, uint64_t word) {
  if (word == 0) return std::nullopt;
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, word);
  if (d.kind != DecodedEntry::Kind::kPresent) return std::nullopt;
  return d;
}

bool is_huge_zero_pmd(const Kernel& k, const DecodedEntry& d) {
  return d.kind == DecodedEntry::Kind::kPresent && k.is_huge_zero_pfn(d.pfn);
}

arch::Softleaf softleaf_from_pmd(const Kernel& k, uint64_t word) {
  return k.codec().softleaf_from(EntryLevel::kPmd, word);
}

bool pmd_is_device_private_entry(const Kernel& k, uint64_t word) {
  if (word == 0) return false;
  return arch::softleaf_is_device_private(softleaf_from_pmd(k, word));
}

bool pmd_is_huge(const Kernel& k, uint64_t word) {
  return pmd_trans_huge(k, word).has_value() || pmd_is_device_private_entry(k, word) ||
         pmd_is_migration_entry(k, word);
}

bool pmd_is_migration_entry(const Kernel& k, uint64_t word) {
  if (word == 0) return false;
  return arch::softleaf_is_migration(softleaf_from_pmd(k, word));
}

Status set_pmd_migration_entry(Mm& mm, VirtAddr haddr, EntrySlot pmd, page::Folio folio) {
  Kernel& k = mm.kernel();
  const DecodedEntry before = k.codec().decode(EntryLevel::kPmd, pmd.load());
  const bool present = before.kind == DecodedEntry::Kind::kPresent;
  assert((present || arch::softleaf_is_device_private(before.leaf)) &&
         "set_pmd_migration_entry of a PMD that is neither a THP nor a device THP");
  const arch::PfnOrOffset where =
      present ? arch::PfnOrOffset::of_pfn(before.pfn)
              : MUST(arch::softleaf_to_pfn_or_offset(before.leaf), "device-private entries hold one");
  // pmdp_invalidate for a present leaf (then the flush), pmdp_huge_clear_flush otherwise.
  const uint64_t val = pmd.exchange(0);
  if (present) mm.flush_tlb_range(haddr, haddr + kHpagePmdSize);
  // Decoded again: a hardware walk may have set accessed/dirty since `before` was read.
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, val);
  page::Page* head = folio.head();
  const bool anon_exclusive = folio.is_anon() && page_anon_exclusive(head);
  if (anon_exclusive) {
    // folio_try_share_anon_rmap_pmd: a device-private folio is never pinned.
    if (present && folio_maybe_dma_pinned(folio)) {
      pmd.store(val);
      return make_error(Errno::kEBUSY, "set_pmd_migration_entry: the exclusive THP at {} may be "
                        "pinned", haddr);
    }
    head->clear_flag(page::PageFlag::kAnonExclusive);
  }
  const bool write =
      present ? has(d.prot, Prot::kWrite) : arch::softleaf_is_device_private_write(d.leaf);
  const MigrationKind kind = write            ? MigrationKind::kWrite
                             : anon_exclusive ? MigrationKind::kReadExclusive
                                              : MigrationKind::kRead;
  arch::Softleaf leaf = make_migration_entry(k.softleaf_format(), where, kind);
  arch::SwpBit bits = arch::SwpBit::kNone;
  if (present) {
    if (has(d.prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);  // folio_mark_dirty
    if (has(d.prot, Prot::kAccessed)) leaf = arch::make_migration_entry_young(leaf);
    if (has(d.prot, Prot::kDirty)) leaf = arch::make_migration_entry_dirty(leaf);
    if (has(d.prot, Prot::kSoftDirty)) bits = bits | arch::SwpBit::kSoftDirty;
    if (has(d.prot, Prot::kUffdWp)) bits = bits | arch::SwpBit::kUffdWp;
  } else {
    bits = d.swp_bits;
  }
  pmd.store(migration_pmd(k, leaf, bits));
  folio_remove_rmap_pmd(folio);
  page::folio_put(folio);  // the PMD's reference; the caller holds another
  return ok();
}

void remove_migration_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, page::Folio new_folio,
                          arch::PfnOrOffset where, PmdTarget target) {
  Kernel& k = mm.kernel();
  const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, pmd.load());
  assert(d.kind == DecodedEntry::Kind::kSwap && arch::softleaf_is_migration(d.leaf) &&
         "remove_migration_pmd of a PMD that is not a migration entry");
  assert(new_folio.order().raw() == kHpagePmdOrder && "a PMD maps a PMD-order folio");
  const bool write = arch::softleaf_is_migration_write(d.leaf);
  page::folio_get(new_folio);
  uint64_t word = 0;
  switch (target) {
    case PmdTarget::kDevicePrivate:
      word = make_device_private_pmd(k, where, write ? Prot::kWrite : Prot::kNone,
                                     d.swp_bits & kSwpSoftBits);
      break;
    case PmdTarget::kPresent: {
      // folio_mk_pmd(vm_page_prot), old unless the entry was young.
      Prot p = vma.page_prot;
      if (has(d.swp_bits, arch::SwpBit::kSoftDirty)) p = p | Prot::kSoftDirty;
      if (write) {
        p = p | Prot::kWrite;
      } else if (has(d.swp_bits, arch::SwpBit::kUffdWp)) {
        p = p | Prot::kUffdWp;
      }
      if (arch::softleaf_is_migration_young(d.leaf)) p = p | Prot::kAccessed;
      if (new_folio.test_flag(page::PageFlag::kDirty) && arch::softleaf_is_migration_dirty(d.leaf))
        p = p | Prot::kDirty;
      word = encode_pmd(k, MUST(where.to_pfn(), "a present PMD maps a PFN"), p);
      break;
    }
  }
  if (new_folio.is_anon()) {
    folio_add_anon_rmap_pmd(new_folio, arch::softleaf_is_migration_read(d.leaf)
                                           ? RmapExclusive::kNo
                                           : RmapExclusive::kYes);
  }
  pmd.store(word);
}

FaultResult pmd_migration_entry_wait(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  Mm& mm = *vmf.mm;
  return migration_entry_wait(
      mm, pmd, orig_pmd, migration_entry_page(mm.kernel(), softleaf_from_pmd(mm.kernel(), orig_pmd)));
}

page::Page* device_private_pmd_page(const Kernel& k, arch::Softleaf leaf) {
  DevicePrivateFaultHandler* h = k.device_private_handler();
  return h != nullptr ? h->softleaf_to_page(leaf) : nullptr;
}

uint64_t make_device_private_pmd(const Kernel& k, arch::PfnOrOffset where, Prot access,
                                 arch::SwpBit bits) {
  const arch::Softleaf leaf =
      MUST(has(access, Prot::kWrite)
               ? arch::make_writable_device_private_entry(k.softleaf_format(), where)
               : arch::make_readable_device_private_entry(k.softleaf_format(), where),
           "a device-private THP's head has an entry");
  return MUST(k.codec().make_swap(EntryLevel::kPmd, leaf, bits & ~arch::SwpBit::kExclusive),
              "a device-private PMD encodes");
}

page::Page* vm_normal_page_pmd(const Kernel& k, const DecodedEntry& d) {
  assert(d.kind == DecodedEntry::Kind::kPresent && "vm_normal_page_pmd of a non-leaf");
  if (is_huge_zero_pmd(k, d) || has(d.prot, Prot::kSpecial)) return nullptr;
  return MUST(k.pfn_to_page(d.pfn), "a PMD leaf maps RAM");
}

std::optional<FaultResult> do_huge_pmd_anonymous_page(VmFault& vmf, EntrySlot pmd) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  const VirtAddr haddr = vmf.address.align_down(kHpagePmdSize);
  if (!thp_vma_suitable_pmd(vma, haddr)) return std::nullopt;
  mm.mmap_assert_locked();
  mm.anon_vma_prepare(vma);
  if (!has(vmf.flags, FaultFlags::kWrite) && k.use_huge_zero_page() == UseHugeZeroPage::kYes) {
    // A read maps the huge zero folio (mm_get_huge_zero_folio); no order-9 block: fallback.
    Result<Pfn> zero = mm.mm_get_huge_zero_folio();
    if (zero.is_error()) return std::nullopt;
    Result<page::Folio> table = k.alloc_folio(Order(0));  // pte_alloc_one
    if (table.is_error()) return FaultResult{FaultOutcome::kOom, "no page for a deposited table"};
    bool set = false;
    {
      SpinLocker guard(mm.page_table().lock());
      if (pmd.load() == 0) {
        mm.page_table().deposit_table(haddr, *table);
        pmd.store(huge_zero_pmd(k, vma, *zero));
        set = true;
      }
    }
    if (!set) page::folio_put(*table);
    return FaultResult::handled();
  }
  std::optional<page::Folio> folio = alloc_anon_folio_pmd(k);
  if (!folio) return std::nullopt;
  Result<page::Folio> table = k.alloc_folio(Order(0));
  if (table.is_error()) {
    page::folio_put(*folio);
    return FaultResult{FaultOutcome::kOom, "no page for a deposited table"};
  }
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd.load() == 0) {
      folio_add_new_anon_rmap(*folio, vma, haddr, RmapExclusive::kYes, RmapLevel::kPmd);
      mm.page_table().deposit_table(haddr, *table);
      pmd.store(anon_thp_pmd(k, vma, k.page_to_pfn(folio->head())));
      mm.add_rss(RssMember::kAnonPages, static_cast<int64_t>(kHpagePmdNr));
      return FaultResult::handled();
    }
  }
  // Someone else populated the PMD first.
  page::folio_put(*table);
  page::folio_put(*folio);
  return FaultResult::handled();
}

std::optional<FaultResult> huge_pmd_fault(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  const std::optional<DecodedEntry> d = pmd_trans_huge(vmf.mm->kernel(), orig_pmd);
  assert(d && "huge_pmd_fault on a PMD that is not a leaf");
  if (has(d->prot, Prot::kProtNone))
    return FaultResult{FaultOutcome::kSigSegv, "PROT_NONE PMD in an accessible VMA"};
  if (has(vmf.flags, FaultFlags::kWrite) && !has(d->prot, Prot::kWrite))
    return do_huge_pmd_wp_page(vmf, pmd, orig_pmd);
  return huge_pmd_set_accessed(vmf, pmd, orig_pmd);
}

FaultResult do_huge_pmd_device_private(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  DevicePrivateFaultHandler* handler = k.device_private_handler();
  if (handler == nullptr)
    return FaultResult{FaultOutcome::kSigBus, "device-private PMD with no handler installed"};
  page::Page* page = handler->softleaf_to_page(softleaf_from_pmd(k, orig_pmd));
  if (page == nullptr)
    return FaultResult{FaultOutcome::kSigBus, "device-private PMD names no known page"};
  std::optional<page::Folio> held;
  bool locked = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd.load() != orig_pmd) return FaultResult::handled();
    held = page::page_folio(page);
    if (page::folio_trylock(*held)) {
      page::folio_get(*held);
      locked = true;
    } else if (!page::folio_try_get(*held)) {
      return FaultResult::handled();
    }
  }
  const page::Folio folio = *held;
  if (!locked) {
    page::folio_wait_locked(folio);
    page::folio_put(folio);
    return FaultResult::handled();
  }
  vmf.page = page;
  vmf.pte.reset();  // PMD-mapped
  vmf.orig_pte = orig_pmd;
  FaultResult r = handler->migrate_to_ram(vmf);
  // As do_swap_page: the lock and reference follow vmf.page through a split.
  const page::Folio now = page::page_folio(page);
  page::folio_unlock(now);
  page::folio_put(now);
  return r;
}

void split_huge_pmd_locked(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr) {
  Kernel& k = mm.kernel();
  assert(haddr.is_aligned(kHpagePmdSize) && "split of an unaligned PMD");
  assert(pmd_is_huge(k, pmd.load()) && "__split_huge_pmd_locked of a PMD that is not a leaf");
  page::Folio table = mm.page_table().withdraw_table(haddr);
  uint64_t* words = reinterpret_cast<uint64_t*>(k.page_bytes(k.page_to_pfn(table.head())).data());
  const std::optional<DecodedEntry> d = pmd_trans_huge(k, pmd.load());
  if (pmd_is_migration_entry(k, pmd.load())) {
    split_migration_pmd_locked(k, pmd.load(), words);
  } else if (!d) {
    split_device_private_pmd_locked(mm, pmd, haddr, words);
  } else if (is_huge_zero_pmd(k, *d)) {
    // __split_huge_zero_page_pmd: 512 special zero-page PTEs, read-only.
    const uint64_t zero = encode_pte(k, k.zero_pfn(), (vma.page_prot & ~Prot::kWrite) | Prot::kSpecial);
    for (uint64_t i = 0; i < kHpagePmdNr; ++i) EntrySlot(words + i).store(zero);
  } else {
    page::Page* head = vm_normal_page_pmd(k, *d);
    page::Folio folio = page::page_folio(head);
    // Every PTE carries the PMD's permissions and its dirty/young/soft-dirty bits.
    const Prot prot = d->prot & ~Prot::kSpecial;
    const RmapExclusive excl =
        page_anon_exclusive(head) ? RmapExclusive::kYes : RmapExclusive::kNo;
    // One reference per PTE: the PMD's becomes the first page's.
    page::folio_ref_add(folio, static_cast<int>(kHpagePmdNr) - 1);
    folio_add_anon_rmap_ptes(folio, head, kHpagePmdNr, excl);
    for (uint64_t i = 0; i < kHpagePmdNr; ++i)
      EntrySlot(words + i).store(encode_pte(k, d->pfn + PageCount(i), prot));
    // Dirtiness of the leaf goes to the folio (the kernel's folio_set_dirty on a dirty PMD).
    if (has(d->prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
    folio_remove_rmap_pmd(folio);
  }
  // pmdp_invalidate then pmd_populate: hardware walks see either the leaf or the table, both
  // translating every address to the same page with the same permissions.
  mm.page_table().hook_table_locked(pmd, table);
}

void split_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr address) {
  const VirtAddr haddr = address.align_down(kHpagePmdSize);
  const MmuNotifierRange range =
      mm.notifier_range(MmuNotifyEvent::kClear, haddr, haddr + kHpagePmdSize);
  mm.invalidate_range_start(range);
  bool split = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (pmd_is_huge(mm.kernel(), pmd.load())) {
      split_huge_pmd_locked(mm, vma, pmd, haddr);
      split = true;
    }
  }
  // Writes through the old leaf's TLB entry are no different from writes through the new
  // PTEs (same pages, same permissions); the flush only retires the huge translation.
  if (split) mm.flush_tlb_range(haddr, haddr + kHpagePmdSize);
  mm.invalidate_range_end(range);
}

void split_huge_pmd_address(Mm& mm, const Vma& vma, VirtAddr address) {
  const std::optional<EntrySlot> pmd = mm.page_table().walk_pmd(address);
  if (!pmd || !pmd_is_huge(mm.kernel(), pmd->load())) return;
  split_huge_pmd(mm, vma, *pmd, address);
}

void vma_adjust_trans_huge(Mm& mm, const Vma& vma, VirtAddr addr) {
  if (addr.is_aligned(kHpagePmdSize)) return;
  const VirtAddr haddr = addr.align_down(kHpagePmdSize);
  // split_huge_pmd_if_needed: only a leaf that lies inside the VMA can be there.
  if (haddr < vma.start || haddr + kHpagePmdSize > vma.end) return;
  split_huge_pmd_address(mm, vma, addr);
}

namespace {

// How a split hands out references.
enum class SplitRefs : uint8_t {
  // split_folio: one per PTE mapping each page, plus the caller's on the head; pages no PTE
  // maps are freed.
  kPerMapping,
  // folio_split_unmapped: the head keeps `head_refs` (all the folio had), every other page
  // gets one (the migration's, which finalize drops) and is locked like the head.
  kUnmappedLocked,
};

// The split proper: the compound folio becomes order-0 folios that keep their bytes, mapping,
// index, mapcounts and flags. REQUIRES: the folio locked, its refcount frozen (0) by the
// caller, no PMD mapping it.
void split_frozen_folio(Kernel& k, page::Folio folio, SplitRefs refs, int head_refs) {
  const uint64_t nr = folio.nr_pages().raw();
  page::Page* head = folio.head();
  const uint64_t mapping = folio.mapping_word();
  const uint64_t index = folio.index();
  const bool dirty = folio.test_flag(page::PageFlag::kDirty);
  const bool uptodate = folio.test_flag(page::PageFlag::kUptodate);
  const bool swapbacked = folio.test_flag(page::PageFlag::kSwapBacked);
  const bool zone_device = head->is_zone_device();
  page::clear_compound_page(folio);
  // The new folios are locked while their refcounts are still 0, so no one can have found
  // and locked one in between (clear_compound_page rewrote the first tail's flags word).
  if (refs == SplitRefs::kUnmappedLocked) {
    for (uint64_t i = 1; i < nr; ++i) {
      [[maybe_unused]] const bool locked = page::folio_trylock(page::Folio(head + i));
      assert(locked && "a new folio of a frozen split is locked by no one");
    }
  }
  if (zone_device) {
    // zone_device_private_split_cb: the new folios get their pagemap back before anything
    // can free one.
    DevicePrivateFaultHandler* h = k.device_private_handler();
    assert(h != nullptr && "split of a device folio with no device-private handler");
    for (uint64_t i = 1; i < nr; ++i) h->folio_split(folio, page::Folio(head + i));
    h->folio_split(folio, std::nullopt);
  }
  std::vector<page::Page*> unmapped;
  for (uint64_t i = nr; i-- > 0;) {  // the head last: it unfreezes the old folio's count
    page::Page* p = head + i;
    p->set_mapping_word(mapping);
    p->set_index(index + i);
    if (dirty) p->set_flag(page::PageFlag::kDirty);
    if (uptodate) p->set_flag(page::PageFlag::kUptodate);
    if (swapbacked) p->set_flag(page::PageFlag::kSwapBacked);
    if (refs == SplitRefs::kUnmappedLocked) {
      p->set_ref_count(i == 0 ? head_refs : 1);
      continue;
    }
    const int n = p->mapcount() + (i == 0 ? 1 : 0);
    if (n == 0) {
      unmapped.push_back(p);  // freed below: no PTE maps it (a partly unmapped THP)
      p->set_ref_count(1);
      continue;
    }
    p->set_ref_count(n);
  }
  for (page::Page* p : unmapped) {
    p->clear_flag(page::PageFlag::kAnonExclusive);
    p->set_mapping_word(0);
    page::folio_put(page::Folio(p));
  }
}

Status check_splittable(page::Folio folio) {
  assert(page::folio_test_locked(folio) && "split of an unlocked folio");
  if (!folio.is_anon() || folio.order().raw() != kHpagePmdOrder)
    return make_error(Errno::kEINVAL, "split_folio: only anonymous PMD-order folios split");
  if (folio.entire_mapcount() > 0)
    return make_error(Errno::kEBUSY, "split_folio: a PMD still maps the folio");
  return ok();
}

}  // namespace

Status split_folio(Kernel& k, page::Folio folio) {
  if (!folio.is_large()) return ok();
  TRY(check_splittable(folio));
  // The kernel unmaps the folio (migration entries), freezes its refcount, splits and remaps.
  // dpmm splits in place instead, holding the page-table lock of every mm that may map the
  // folio, so no PTE of it can change and no one can take a reference through one meanwhile
  // (docs/mm.md).
  ReadLocker rmap(k.anon_vma_lock());
  std::vector<Mm*> mms;
  rmap_walk_locked(k, folio, [&](Mm& mm, const Vma&, VirtAddr) {
    if (std::find(mms.begin(), mms.end(), &mm) == mms.end()) mms.push_back(&mm);
    return true;
  });
  std::sort(mms.begin(), mms.end());  // one order for every splitter
  lock_page_tables(mms);
  Status status = ok();
  // can_split_folio: the mappings' references plus the caller's.
  const int mapped = folio.mapcount();
  if (!page::folio_ref_freeze(folio, mapped + 1)) {
    status = make_error(Errno::kEAGAIN, "split_folio: the folio has {} references, {} expected",
                        folio.ref_count(), mapped + 1);
  } else {
    split_frozen_folio(k, folio, SplitRefs::kPerMapping, 0);
  }
  unlock_page_tables(mms);
  return status;
}

Status folio_split_unmapped(Kernel& k, page::Folio folio, int expected_refs) {
  if (!folio.is_large()) return ok();
  TRY(check_splittable(folio));
  if (folio.mapcount() != 0)
    return make_error(Errno::kEBUSY, "folio_split_unmapped: the folio is still mapped {} times",
                      folio.mapcount());
  // Frozen, a concurrent migration-entry waiter's folio_try_get fails (it refaults) instead of
  // holding a reference on a folio that is coming apart.
  if (!page::folio_ref_freeze(folio, expected_refs))
    return make_error(Errno::kEAGAIN, "folio_split_unmapped: the folio has {} references, {} "
                      "expected", folio.ref_count(), expected_refs);
  split_frozen_folio(k, folio, SplitRefs::kUnmappedLocked, expected_refs);
  return ok();
}

bool zap_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr, MmuGather& tlb) {
  (void)vma;
  Kernel& k = mm.kernel();
  SpinLocker guard(mm.page_table().lock());
  const uint64_t old = pmd.load();
  if (pmd_is_migration_entry(k, old)) {
    // No reference or mapcount to drop (the migration holds the folio); the RSS it still
    // counted goes.
    pmd.exchange(0);
    tlb.remove_tables({mm.page_table().withdraw_table(haddr)});
    mm.add_rss(RssMember::kAnonPages, -static_cast<int64_t>(kHpagePmdNr));
    return true;
  }
  if (pmd_is_device_private_entry(k, old)) {
    // The entry holds a reference and the entire mapcount of its folio; no TLB entry to
    // flush (the CPU never mapped it).
    pmd.exchange(0);
    tlb.remove_tables({mm.page_table().withdraw_table(haddr)});
    if (page::Page* head = device_private_pmd_page(k, softleaf_from_pmd(k, old))) {
      page::Folio folio = page::page_folio(head);
      folio_remove_rmap_pmd(folio);
      mm.add_rss(RssMember::kAnonPages, -static_cast<int64_t>(kHpagePmdNr));
      tlb.remove_folio(folio);
    }
    return true;
  }
  const std::optional<DecodedEntry> d = pmd_trans_huge(k, old);
  if (!d) return false;
  pmd.exchange(0);  // pmdp_huge_get_and_clear_full
  tlb.remove_tables({mm.page_table().withdraw_table(haddr)});  // zap_deposited_table
  if (page::Page* head = vm_normal_page_pmd(k, *d)) {
    page::Folio folio = page::page_folio(head);
    if (has(d->prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
    folio_remove_rmap_pmd(folio);
    mm.add_rss(RssMember::kAnonPages, -static_cast<int64_t>(kHpagePmdNr));
    tlb.remove_folio(folio);
  }
  return true;
}

bool change_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr) {
  (void)haddr;
  Kernel& k = mm.kernel();
  SpinLocker guard(mm.page_table().lock());
  uint64_t old = pmd.load();
  if (pmd_is_migration_entry(k, old)) {
    // change_non_present_huge_pmd: a writable migration entry loses write (read-exclusive
    // for anon memory); remove_migration_pmd then maps the new folio read-only.
    const DecodedEntry d = k.codec().decode(EntryLevel::kPmd, old);
    if (arch::softleaf_is_migration_write(d.leaf)) {
      const arch::PfnOrOffset where =
          MUST(arch::softleaf_to_pfn_or_offset(d.leaf), "migration entries hold one");
      page::Page* head = migration_entry_page(k, d.leaf);
      const bool anon = head != nullptr && page::page_folio(head).is_anon();
      pmd.store(migration_pmd(
          k,
          migration_entry_like(d.leaf, where,
                              anon ? MigrationKind::kReadExclusive : MigrationKind::kRead),
          d.swp_bits));
    }
    return true;
  }
  if (pmd_is_device_private_entry(k, old)) {
    // change_non_present_huge_pmd: write permission comes back only by a fault through the
    // new protection.
    const uint64_t ro = device_private_pmd_readable(k, old);
    if (ro != old) pmd.store(ro);
    return true;
  }
  while (true) {
    const std::optional<DecodedEntry> d = pmd_trans_huge(k, old);
    if (!d) return false;
    constexpr Prot kKeep = Prot::kAccessed | Prot::kDirty | Prot::kSpecial | Prot::kSoftDirty |
                           Prot::kUffdWp;
    Prot p = vma.page_prot | (d->prot & kKeep);
    if (is_huge_zero_pmd(k, *d)) {
      p = p & ~Prot::kWrite;  // the huge zero folio is never writable
    } else if (!has(p, Prot::kProtNone) && !has(p, Prot::kWrite) &&
               has(vma.flags, VmFlags::kWrite) && !has(vma.flags, VmFlags::kShared)) {
      // can_change_pmd_writable: an exclusive anon THP needs no COW.
      page::Page* head = vm_normal_page_pmd(k, *d);
      if (head != nullptr && page_anon_exclusive(head)) p = p | Prot::kWrite;
    }
    const uint64_t updated = encode_pmd(k, d->pfn, p);
    if (updated == old || pmd.compare_exchange(old, updated)) return true;
  }
}

bool move_huge_pmd(Mm& mm, VirtAddr old_addr, VirtAddr new_addr) {
  Kernel& k = mm.kernel();
  assert(old_addr.is_aligned(kHpagePmdSize) && new_addr.is_aligned(kHpagePmdSize) &&
         "move_huge_pmd of unaligned addresses");
  const std::optional<EntrySlot> src = mm.page_table().walk_pmd(old_addr);
  if (!src || !pmd_is_huge(k, src->load())) return false;
  const EntrySlot dst = MUST(mm.page_table().walk_pmd_alloc(new_addr),
                             "a PMD table for mremap's destination");
  SpinLocker guard(mm.page_table().lock());
  // An empty PTE table left at the destination (its span is shared with another VMA): the
  // kernel WARNs and falls back to moving PTEs; so does dpmm, without the warning.
  if (dst.load() != 0) return false;
  const uint64_t word = src->exchange(0);
  mm.page_table().deposit_table(new_addr, mm.page_table().withdraw_table(old_addr));
  dst.store(word);
  return true;
}

Result<bool> copy_huge_pmd(Mm& dst, Mm& src, const Vma& dst_vma, const Vma& src_vma,
                           EntrySlot src_pmd, VirtAddr haddr) {
  (void)dst_vma;
  Kernel& k = src.kernel();
  const Result<EntrySlot> dst_pmd = dst.page_table().walk_pmd_alloc(haddr);
  if (dst_pmd.is_error())
    return make_error(Errno::kENOMEM, "fork: no page for the child's PMD table at {}", haddr);
  Result<page::Folio> table = k.alloc_folio(Order(0));
  if (table.is_error())
    return make_error(Errno::kENOMEM, "fork: no page for the child's deposited table at {}", haddr);
  bool dup_zero = false;
  {
    SpinLocker src_guard(src.page_table().lock());
    SpinLocker dst_guard(dst.page_table().lock());
    const uint64_t word = src_pmd.load();
    const std::optional<DecodedEntry> d = pmd_trans_huge(k, word);
    assert(pmd_is_huge(k, word) && "copy_huge_pmd of a PMD that is not a leaf");
    page::Page* head = d ? vm_normal_page_pmd(k, *d) : nullptr;
    uint64_t child_word = word;
    if (pmd_is_migration_entry(k, word)) {
      // copy_huge_non_present_pmd: a writable or read-exclusive entry becomes plain read in
      // both for a COW mapping (the folio is shared from now on); no reference or mapcount
      // (remove_migration_ptes will find the child through the rmap).
      const DecodedEntry m = k.codec().decode(EntryLevel::kPmd, word);
      if (cow_mapping(src_vma) && !arch::softleaf_is_migration_read(m.leaf)) {
        const arch::PfnOrOffset where =
            MUST(arch::softleaf_to_pfn_or_offset(m.leaf), "migration entries hold one");
        child_word =
            migration_pmd(k, migration_entry_like(m.leaf, where, MigrationKind::kRead), m.swp_bits);
        src_pmd.store(child_word);
      }
      dst.add_rss(RssMember::kAnonPages, static_cast<int64_t>(kHpagePmdNr));
    } else if (!d) {
      // copy_huge_non_present_pmd: a device-private folio cannot be pinned, so the dup
      // always succeeds; a COW mapping shares it read-only from now on.
      if (page::Page* dev = device_private_pmd_page(k, softleaf_from_pmd(k, word))) {
        page::Folio folio = page::page_folio(dev);
        page::folio_get(folio);
        MUST(folio_try_dup_anon_rmap_pmd(folio, MaybePinned::kNo),
             "an unpinnable device-private folio dups");
        dst.add_rss(RssMember::kAnonPages, static_cast<int64_t>(kHpagePmdNr));
      }
      if (cow_mapping(src_vma)) {
        child_word = device_private_pmd_readable(k, word);
        if (child_word != word) src_pmd.store(child_word);
      }
    } else if (head == nullptr) {
      // The huge zero PMD is copied as it is; the child takes its own huge zero reference.
      dup_zero = true;
    } else {
      page::Folio folio = page::page_folio(head);
      page::folio_get(folio);
      const MaybePinned pinned = src.has_pinned() && folio_maybe_dma_pinned(folio)
                                     ? MaybePinned::kYes
                                     : MaybePinned::kNo;
      if (folio_try_dup_anon_rmap_pmd(folio, pinned).is_error()) {
        page::folio_put(folio);
        page::folio_put(*table);
        // The kernel splits the PMD and lets copy_pte_range copy the pinned pages (-EAGAIN).
        split_huge_pmd_locked(src, src_vma, src_pmd, haddr);
        return false;
      }
      dst.add_rss(RssMember::kAnonPages, static_cast<int64_t>(kHpagePmdNr));
      // pmdp_set_wrprotect in the parent, pmd_mkold(pmd_wrprotect) in the child: the folio
      // is shared copy-on-write from now on.
      uint64_t cur = word;
      while (true) {
        const DecodedEntry c = k.codec().decode(EntryLevel::kPmd, cur);
        const uint64_t ro = encode_pmd(k, c.pfn, c.prot & ~Prot::kWrite);
        if (ro == cur || src_pmd.compare_exchange(cur, ro)) {
          child_word = encode_pmd(k, c.pfn, c.prot & ~(Prot::kWrite | Prot::kAccessed));
          break;
        }
      }
    }
    dst.page_table().deposit_table(haddr, *table);
    dst_pmd->store(child_word);
  }
  if (dup_zero) {
    // mm_get_huge_zero_folio cannot fail while the parent holds a reference.
    MUST(dst.mm_get_huge_zero_folio(), "the huge zero folio is alive while the parent maps it");
  }
  return true;
}

}  // namespace dpmm::mm
