// make_device_exclusive (mm/rmap.c, the single-page form of David Hildenbrand's rework).
#include "hmm/device_exclusive.h"

#include <cassert>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "base/trace.h"
#include "mm/gup.h"
#include "page/folio_lock.h"

namespace dpmm::hmm {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

Result<DeviceExclusive> make_device_exclusive(mm::Mm& mm, VirtAddr addr, const void* owner) {
  mm.mmap_assert_locked();
  TraceScope trace("make_device_exclusive", TraceCategory::kHmm, addr.raw());
  addr = addr.page_base();
  mm::Kernel& k = mm.kernel();

  // Fault the page in writable: breaks COW, takes the page back from another device's
  // exclusive entry or device-private memory.
  std::vector<page::Page*> got = TRY(mm::get_user_pages_remote(
      mm, addr, 1, mm::FollFlags::kGet | mm::FollFlags::kWrite | mm::FollFlags::kSplitPmd));
  assert(got.size() == 1 && "one page asked, one page got");
  page::Page* page = got.front();
  page::Folio folio = page::page_folio(page);

  if (!folio.is_anon() || folio.is_hugetlb()) {
    page::folio_put(folio);
    return make_error(Errno::kEOPNOTSUPP,
                      "make_device_exclusive: {:#x} is not an anonymous non-hugetlb page",
                      addr.raw());
  }
  if (!page::folio_trylock(folio)) {
    page::folio_put(folio);
    return make_error(Errno::kEBUSY, "make_device_exclusive: the folio at {:#x} is locked",
                      addr.raw());
  }

  const mm::MmuNotifierRange range =
      mm.notifier_range(mm::MmuNotifyEvent::kExclusive, addr, addr + kPageSize, owner);
  mm.invalidate_range_start(range);

  const Pfn pfn = k.page_to_pfn(page);
  bool installed = false;
  const std::optional<mm::EntrySlot> pte = mm.page_table().walk_pte(addr);
  if (pte) {
    SpinLocker guard(mm.page_table().lock());
    const uint64_t word = pte->load();
    const DecodedEntry d = k.codec().decode(EntryLevel::kPte, word);
    // folio_walk_start again: still this page, mapped by a PTE, writable.
    if (d.kind == DecodedEntry::Kind::kPresent && d.pfn == pfn &&
        arch::has(d.prot, Prot::kWrite)) {
      arch::SwpBit bits = arch::SwpBit::kNone;
      if (arch::has(d.prot, Prot::kSoftDirty)) bits = bits | arch::SwpBit::kSoftDirty;
      if (arch::has(d.prot, Prot::kUffdWp)) bits = bits | arch::SwpBit::kUffdWp;
      const arch::Softleaf leaf = MUST(arch::make_device_exclusive_entry(k.softleaf_format(), pfn),
                                       "a RAM pfn fits a device-exclusive entry");
      const uint64_t entry = MUST(k.codec().make_swap(EntryLevel::kPte, leaf, bits),
                                  "a device-exclusive entry encodes");
      // ptep_clear_flush + set_pte_at in one exchange: the PTE never shows the page again.
      // A hardware walk's dirty bit lands by compare-and-swap on the old word or not at all,
      // so the word we take out carries the final dirty state.
      const uint64_t old = pte->exchange(entry);
      const DecodedEntry was = k.codec().decode(EntryLevel::kPte, old);
      if (arch::has(was.prot, Prot::kDirty)) folio.set_flag(page::PageFlag::kDirty);
      installed = true;
    }
  }
  if (installed) {
    // The flush of ptep_clear_flush: no CPU access through the old translation goes on after
    // the device owns the page.
    mm.flush_tlb_range(addr, addr + kPageSize);
  }
  mm.invalidate_range_end(range);
  if (!installed) {
    page::folio_unlock(folio);
    page::folio_put(folio);
    return make_error(Errno::kEBUSY,
                      "make_device_exclusive: the PTE at {:#x} changed before it could be "
                      "made exclusive",
                      addr.raw());
  }
  // The entry keeps the mapping's reference and mapcount; the GUP reference is the caller's.
  return DeviceExclusive{page, folio};
}

}  // namespace dpmm::hmm
