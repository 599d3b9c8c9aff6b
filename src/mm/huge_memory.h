// Anonymous transparent huge pages mapped by PMD leaves (mm/huge_memory.c,
// include/linux/huge_mm.h).
//
// A PMD leaf maps 2 MiB: either an order-9 anonymous folio (folio_add_new_anon_rmap at
// RmapLevel::kPmd: one reference, one entire mapcount) or the huge zero folio (special: no
// reference, no mapcount; the mm holds one huge_zero_refcount for as long as it lives,
// MMF_HUGE_ZERO_FOLIO). Every PMD leaf has a PTE table deposited beside it (page_table.h), so a
// split never allocates.
//
// Which VMAs get THPs (thp_vma_allowable_order for PMD_ORDER): private anonymous VMAs with no
// VM_NOHUGEPAGE and none of VM_SPECIAL|VM_HUGETLB, under the Kernel's policy (always, or
// madvise with VM_HUGEPAGE; MADV_COLLAPSE ignores the policy), where the aligned 2 MiB range
// around the fault lies inside the VMA and the VMA's pgoff is congruent with its address
// (thp_vma_suitable_order).
//
// Operations on a PMD leaf and their callers:
//   fault       do_huge_pmd_anonymous_page (pmd_none), do_huge_pmd_wp_page (write to a
//               read-only leaf: reuse an exclusive folio, replace the huge zero folio by a new
//               THP, else split and let the PTE path copy), huge_pmd_set_accessed
//   split       split_huge_pmd: the leaf becomes its deposited PTE table with 512 entries of
//               the same permissions, dirty and young bits; the folio's entire mapcount moves
//               to its pages' mapcounts and it gets 511 more references (one per PTE); the
//               huge zero PMD becomes 512 zero-page PTEs. MMU_NOTIFY_CLEAR over the 2 MiB.
//               Callers: partial zap (munmap, MADV_DONTNEED/FREE), partial mprotect and mremap,
//               a VMA split inside the 2 MiB (vma_adjust_trans_huge), GUP with FOLL_SPLIT_PMD,
//               migrate_vma_collect without MIGRATE_VMA_SELECT_COMPOUND.
//   whole-PMD   zap_huge_pmd, change_huge_pmd, move_huge_pmd, copy_huge_pmd (fork).
//   folio       split_folio: a PTE-mapped order-9 folio becomes 512 order-0 folios.
// A partly unmapped THP stays large (no deferred-split shrinker) and is freed whole when its
// last mapping goes.
//
// Locking: PMD leaves change under the mm's page-table lock (pmd_lock), with mmap_lock held
// (read for faults, write for system calls). split_folio REQUIRES the folio lock.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/decoded_entry.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "mm/fault.h"
#include "mm/mm.h"
#include "mm/page_table.h"
#include "mm/vma.h"
#include "page/folio.h"

namespace dpmm::mm {

// Who asks whether a VMA may hold a PMD-sized folio (TVA_PAGEFAULT, TVA_FORCED_COLLAPSE).
enum class ThpAsker : uint8_t { kPageFault, kForcedCollapse };

// thp_vma_suitable_order(vma, addr, PMD_ORDER): the 2 MiB range around addr lies in the VMA
// and the VMA's pgoff lines up with its address at 2 MiB.
bool thp_vma_suitable_pmd(const Vma& vma, VirtAddr addr);
// thp_vma_allowable_order(vma, vm_flags, tva_flags, PMD_ORDER), for anonymous VMAs (shmem
// THPs are not modelled): policy, VM_HUGEPAGE/VM_NOHUGEPAGE, VM_SPECIAL, VM_HUGETLB. Says
// nothing of a particular address (see thp_vma_suitable_pmd).
bool thp_vma_allowable_pmd(const Kernel& k, const Vma& vma, ThpAsker asker);

// The decoded PMD when it is a present leaf (pmd_trans_huge), else nullopt.
std::optional<arch::DecodedEntry> pmd_trans_huge(const Kernel& k, uint64_t word);
// is_huge_zero_pmd.
bool is_huge_zero_pmd(const Kernel& k, const arch::DecodedEntry& d);
// ---- device-private PMDs (a device-private THP: an order-9 device-private folio mapped by
// one PMD swap entry, swp_entry_to_pmd(make_{readable,writable}_device_private_entry), which
// holds one reference and the folio's entire mapcount as a present leaf does; a deposited
// PTE table sits beside it like beside any PMD leaf) ----
// softleaf_from_pmd: the softleaf a non-present, non-none PMD holds; none otherwise.
arch::Softleaf softleaf_from_pmd(const Kernel& k, uint64_t word);
// pmd_is_device_private_entry.
bool pmd_is_device_private_entry(const Kernel& k, uint64_t word);
// pmd_is_huge (is_swap_pmd || pmd_trans_huge): the PMD maps its 2 MiB itself, by a present
// leaf, a device-private entry or a migration entry.
bool pmd_is_huge(const Kernel& k, uint64_t word);
// softleaf_to_page of a device-private PMD's entry: the folio's head page, through the
// installed device-private handler; null without one.
page::Page* device_private_pmd_page(const Kernel& k, arch::Softleaf leaf);
// The device-private PMD word for the order-9 folio whose head `where` names (legacy: PFN;
// dpas: offset), writable or not, with the given swap software bits (soft-dirty, uffd-wp).
uint64_t make_device_private_pmd(const Kernel& k, arch::PfnOrOffset where, arch::Prot access,
                                 arch::SwpBit bits);

// ---- PMD migration entries (a THP or a device THP under migration: one PMD swap entry of
// a migration type naming the head, as set_pmd_migration_entry leaves it; it holds neither
// a reference nor a mapcount, and still counts in RSS) ----
// pmd_is_migration_entry (the device-private migration types of dpas included).
bool pmd_is_migration_entry(const Kernel& k, uint64_t word);
// set_pmd_migration_entry: the present THP leaf or device-private PMD at `pmd` (mapping
// `folio`, locked by the caller, who also holds a reference) becomes a migration PMD: WRITE
// when it was writable, READ_EXCLUSIVE when read-only but PageAnonExclusive, else READ;
// young/dirty kept in the entry, soft-dirty and uffd-wp as swap bits; the entry names the
// head by PFN, or by offset for a dpas device-private folio (the PMD's own numbering). The
// PMD's rmap and reference go; the deposited table stays. A present leaf is flushed.
//   EBUSY  an exclusive anon folio that may be pinned (the PMD is put back unchanged)
// REQUIRES: the page-table lock; the PMD maps `folio`.
Status set_pmd_migration_entry(Mm& mm, VirtAddr haddr, EntrySlot pmd, page::Folio folio)
    REQUIRES(mm.page_table().lock());
// What remove_migration_pmd maps: a present leaf (RAM, coherent) or a device-private PMD.
enum class PmdTarget : uint8_t { kPresent, kDevicePrivate };
// remove_migration_pmd: the migration PMD at `pmd` becomes a mapping of the order-9
// `new_folio` (its head at `where`: a PFN, or for a dpas device-private folio its offset):
// vma.page_prot, writable when the entry was WRITE, young and dirty as the entry says (dirty
// only if the folio is), or a device-private PMD readable/writable the same way. Takes a
// reference and a PMD mapcount, exclusive unless the entry was READ.
// REQUIRES: the page-table lock; pmd_is_migration_entry.
void remove_migration_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, page::Folio new_folio,
                          arch::PfnOrOffset where, PmdTarget target)
    REQUIRES(mm.page_table().lock());
// pmd_migration_entry_wait: a fault on a migration PMD whose word was `orig_pmd` sleeps until
// the migration unlocks the folio, then is handled (the access retries).
FaultResult pmd_migration_entry_wait(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd);

// vm_normal_page_pmd: the head page of the folio a present PMD leaf maps; null for the huge
// zero folio.
page::Page* vm_normal_page_pmd(const Kernel& k, const arch::DecodedEntry& d);

// ---- faults (REQUIRES: mmap_lock held for read; vmf.address, vmf.vma, vmf.flags set) ----
// do_huge_pmd_anonymous_page on a none PMD. nullopt is VM_FAULT_FALLBACK: map PTEs instead
// (the 2 MiB range does not fit, or no order-9 block is free).
std::optional<FaultResult> do_huge_pmd_anonymous_page(VmFault& vmf, EntrySlot pmd);
// A fault on a present PMD leaf whose word was `orig_pmd`: do_huge_pmd_wp_page for a write to
// a read-only leaf, else huge_pmd_set_accessed. nullopt is VM_FAULT_FALLBACK: the leaf was
// split; the caller goes on at the PTE level.
std::optional<FaultResult> huge_pmd_fault(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd);

// do_huge_pmd_device_private: a CPU fault on a device-private PMD whose word was `orig_pmd`.
// Under the page-table lock the entry is rechecked (changed: handled, refault), its folio
// locked and referenced; then, without the lock, the pagemap's migrate_to_ram runs with
// vmf.page the head page and vmf.pte nullopt (the driver learns the page is PMD-mapped);
// then the folio is unlocked and put. A folio locked by someone else is waited for and the
// fault handled (refault), as the PTE path does. No handler: kSigBus.
FaultResult do_huge_pmd_device_private(VmFault& vmf, EntrySlot pmd, uint64_t orig_pmd);

// ---- splitting ----
// __split_huge_pmd: splits the PMD leaf at `pmd` (covering `address`) into PTEs, under
// MMU_NOTIFY_CLEAR of its 2 MiB; nothing if it is no longer a leaf. REQUIRES: mmap_lock (read
// or write) or the anon_vma lock; EXCLUDES the page-table lock.
void split_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr address);
// A device-private PMD splits into 512 device-private PTEs of the same type (read/write) and
// software bits, naming consecutive pages of the still-large folio; the PMD's reference and
// entire mapcount become one reference and one mapcount per page, PageAnonExclusive stays.
// A migration PMD splits into 512 migration PTEs of the same type, young/dirty and software
// bits, naming consecutive pages; nothing else changes (a migration entry holds no reference).
// split_huge_pmd_address: as above for whatever PMD maps `address`, if it is a leaf.
void split_huge_pmd_address(Mm& mm, const Vma& vma, VirtAddr address);
// __split_huge_pmd_locked. REQUIRES: the page-table lock; `pmd_is_huge`.
void split_huge_pmd_locked(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr)
    REQUIRES(mm.page_table().lock());
// vma_adjust_trans_huge for one boundary: a VMA about to be cut at `addr` (not 2 MiB
// aligned) gets the PMD leaf across addr split first.
void vma_adjust_trans_huge(Mm& mm, const Vma& vma, VirtAddr addr);

// split_folio (split_huge_page_to_list_to_order to order 0): the order-9 anon folio becomes
// 512 small folios, each keeping its own page's mapcount, PageAnonExclusive, bytes, dirty and
// uptodate state, and one reference per PTE mapping it (the caller's reference stays on the
// head). REQUIRES: the folio locked and referenced by the caller; no PMD maps it.
//   EBUSY   a PMD still maps it (split_huge_pmd first)
//   EAGAIN  references beyond its mappings and the caller's (can_split_folio)
//   EINVAL  not an anonymous large folio
// A device-private folio (mapped by device-private PTEs) splits the same way; each new folio
// gets its pagemap through DevicePrivateFaultHandler::folio_split.
Status split_folio(Kernel& k, page::Folio folio) EXCLUDES(k.anon_vma_lock());
// folio_split_unmapped (mm/huge_memory.c; migrate_vma_split_unmapped_folio's step): an
// order-9 anon folio that nothing maps (its mappings are migration entries) and whose
// refcount is exactly `expected_refs` splits into 512 order-0 folios, each locked: the head
// keeps the `expected_refs` references, every other one gets one. Pages keep their bytes,
// mapping, index and flags; a device folio's pieces get their pagemap through
// DevicePrivateFaultHandler::folio_split.
//   EBUSY   still mapped (by a PMD or PTEs)
//   EAGAIN  the refcount is not `expected_refs` (someone else holds a reference)
//   EINVAL  not an anonymous PMD-order folio
// REQUIRES: the folio locked.
Status folio_split_unmapped(Kernel& k, page::Folio folio, int expected_refs);

// ---- whole-PMD operations (REQUIRES: mmap_lock held for write, or the anon_vma lock;
// EXCLUDES the page-table lock) ----
// zap_huge_pmd: clears the leaf, drops its rmap and RSS, hands the folio and the deposited
// table to `tlb`. False when the entry is not a leaf (any more). "Leaf" here and below
// includes a device-private PMD (pmd_is_huge).
bool zap_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr, MmuGather& tlb);
// change_huge_pmd: the leaf takes vma.page_prot (accessed, dirty, special kept; an exclusive
// anon folio may stay writable as change_pte_range allows). False when not a leaf. A writable
// device-private PMD becomes readable (change_non_present_huge_pmd); its folio is untouched.
bool change_huge_pmd(Mm& mm, const Vma& vma, EntrySlot pmd, VirtAddr haddr);
// move_huge_pmd (mremap): the leaf at old_addr, with its deposited table, moves to new_addr
// (both 2 MiB aligned). False when old_addr has no leaf or the destination PMD is not none
// (the caller then splits and moves PTEs).
bool move_huge_pmd(Mm& mm, VirtAddr old_addr, VirtAddr new_addr);
// copy_huge_pmd (fork): the child maps the same folio (or the huge zero folio) by a PMD;
// both become read-only for a private mapping. An exclusive folio that may be pinned is
// split in the parent instead and copied by the PTE path (the kernel's -EAGAIN retry).
// A device-private PMD is copied with a new reference and mapcount; a writable one becomes
// readable in both for a COW mapping (copy_huge_non_present_pmd, as copy_nonpresent_pte).
//   ENOMEM  no page for the child's deposited table or PMD table
// Returns whether the PMD was copied (false: the caller copies the now-split PTEs).
Result<bool> copy_huge_pmd(Mm& dst, Mm& src, const Vma& dst_vma, const Vma& src_vma,
                           EntrySlot src_pmd, VirtAddr haddr);

}  // namespace dpmm::mm
