// Faults on a none PTE of a file VMA (mm/memory.c do_fault, do_read_fault, do_cow_fault,
// do_shared_fault, __do_fault, finish_fault, set_pte_range).
//
//   read                      the file's folio (vm_ops->fault), mapped with vm_page_prot:
//                             read-only in a private mapping, writable (not dirty) in a
//                             shared writable one
//   write, private mapping    do_cow_fault: a new anon page with a copy of the file's bytes,
//                             mapped writable and dirty; the file's folio is not mapped
//   write, shared mapping     do_shared_fault: the file's folio mapped writable and dirty,
//                             the folio marked dirty
// The folio comes back from the fault hook referenced and locked; on success the reference
// becomes the PTE's. A PTE filled by someone else meanwhile wins; ours is dropped.
#include <cstring>
#include <variant>

#include "arch/decoded_entry.h"
#include "mm/anon_rmap.h"
#include "mm/fault.h"
#include "mm/file.h"
#include "mm/file_rmap.h"
#include "page/folio_lock.h"

namespace dpmm::mm {
namespace {

using arch::EntryLevel;
using arch::Prot;

uint64_t encode_pte(const Kernel& k, Pfn pfn, Prot prot) {
  return MUST(k.codec().make_present(EntryLevel::kPte, pfn, prot),
              "a RAM pfn with a user protection encodes");
}

// __do_fault: the file's folio, referenced and locked, or the fault's outcome.
std::variant<page::Folio, FaultResult> do_file_fault(VmFault& vmf) {
  const Vma& vma = *vmf.vma;
  Result<page::Folio> got = vma.file->fault(vma.linear_page_index(vmf.address));
  if (got.is_ok()) return *got;
  if (got.error().code() == Errno::kENOMEM)
    return FaultResult{FaultOutcome::kOom, "no page for the file's page cache"};
  return FaultResult{FaultOutcome::kSigBus, "the file has no page there (->fault: SIGBUS)"};
}

// finish_fault + set_pte_range for the file's own folio. Consumes the caller's reference and
// unlocks the folio.
enum class MapWritable : bool { kNo, kYes };

FaultResult finish_fault(VmFault& vmf, page::Folio folio, MapWritable writable) {
  const bool write = writable == MapWritable::kYes;
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  Prot prot = vma.page_prot | Prot::kAccessed;
  if (write) prot = prot | Prot::kWrite | Prot::kDirty;  // maybe_mkwrite(pte_mkdirty())
  const uint64_t entry = encode_pte(k, k.page_to_pfn(folio.head()), prot);
  bool mapped = false;
  {
    SpinLocker guard(mm.page_table().lock());
    if (vmf.pte->load() == vmf.orig_pte) {
      mm.add_rss(mm_counter_file(folio), 1);
      folio_add_file_rmap_pte(folio, folio.head());
      vmf.pte->store(entry);
      mapped = true;
    }
  }
  // fault_dirty_shared_page: the page cache learns of the write.
  if (mapped && write) folio.set_flag(page::PageFlag::kDirty);
  page::folio_unlock(folio);
  if (!mapped) page::folio_put(folio);
  return FaultResult::handled();
}

FaultResult do_read_fault(VmFault& vmf) {
  auto got = do_file_fault(vmf);
  if (auto* r = std::get_if<FaultResult>(&got)) return *r;
  return finish_fault(vmf, std::get<page::Folio>(got), MapWritable::kNo);
}

FaultResult do_shared_fault(VmFault& vmf) {
  auto got = do_file_fault(vmf);
  if (auto* r = std::get_if<FaultResult>(&got)) return *r;
  return finish_fault(vmf, std::get<page::Folio>(got), MapWritable::kYes);
}

FaultResult do_cow_fault(VmFault& vmf) {
  Mm& mm = *vmf.mm;
  Kernel& k = mm.kernel();
  const Vma& vma = *vmf.vma;
  mm.mmap_assert_locked();
  mm.anon_vma_prepare(vma);
  Result<page::Folio> fresh = k.alloc_folio(Order(0));
  if (fresh.is_error()) return {FaultOutcome::kOom, "no page for a private copy of a file page"};
  page::Folio copy = *fresh;
  auto got = do_file_fault(vmf);
  if (auto* r = std::get_if<FaultResult>(&got)) {
    page::folio_put(copy);
    return *r;
  }
  page::Folio file_folio = std::get<page::Folio>(got);
  const Pfn pfn = k.page_to_pfn(copy.head());
  std::memcpy(k.page_bytes(pfn).data(), k.page_bytes(k.page_to_pfn(file_folio.head())).data(),
              kPageSize);
  page::folio_unlock(file_folio);
  page::folio_put(file_folio);
  copy.set_flag(page::PageFlag::kUptodate);
  const uint64_t entry =
      encode_pte(k, pfn, vma.page_prot | Prot::kWrite | Prot::kDirty | Prot::kAccessed);
  {
    SpinLocker guard(mm.page_table().lock());
    if (vmf.pte->load() == vmf.orig_pte) {
      mm.add_rss(RssMember::kAnonPages, 1);
      folio_add_new_anon_rmap(copy, vma, vmf.address, RmapExclusive::kYes);
      vmf.pte->store(entry);
      return FaultResult::handled();
    }
  }
  page::folio_put(copy);
  return FaultResult::handled();
}

}  // namespace

FaultResult do_fault(VmFault& vmf) {
  const Vma& vma = *vmf.vma;
  if (vma.file == nullptr) return {FaultOutcome::kSigBus, "do_fault on an anonymous VMA"};
  if (!has(vmf.flags, FaultFlags::kWrite)) return do_read_fault(vmf);
  if (!has(vma.flags, VmFlags::kShared)) return do_cow_fault(vmf);
  return do_shared_fault(vmf);
}

FaultResult do_pte_missing(VmFault& vmf) {
  return vmf.vma->is_anonymous() ? do_anonymous_page(vmf) : do_fault(vmf);
}

}  // namespace dpmm::mm
