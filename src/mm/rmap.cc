#include "mm/rmap.h"

#include <algorithm>
#include <cassert>

#include "mm/address_space.h"
#include "mm/file.h"

namespace dpmm::mm {

AnonVma* anon_vma_alloc(Mm& mm) { return new AnonVma{&mm, nullptr, {}, 1}; }

AnonVma* anon_vma_fork_locked(Kernel& k, Mm& child_mm, AnonVma* parent) {
  (void)k;
  assert(parent != nullptr && "anon_vma_fork without a parent anon_vma");
  AnonVma* child = new AnonVma{&child_mm, parent, {}, 1};
  parent->refcount++;
  parent->children.push_back(child);
  return child;
}

void put_anon_vma_locked(Kernel& k, AnonVma* anon_vma) {
  while (anon_vma != nullptr) {
    assert(anon_vma->refcount > 0 && "put_anon_vma underflow");
    if (--anon_vma->refcount > 0) return;
    assert(anon_vma->children.empty() && "a child holds a reference on its parent");
    AnonVma* parent = anon_vma->parent;
    if (parent != nullptr) std::erase(parent->children, anon_vma);
    delete anon_vma;
    anon_vma = parent;  // the freed child's reference on its parent
  }
  (void)k;
}

AnonVma* folio_anon_vma(page::Folio folio) {
  const uint64_t w = folio.mapping_word();
  if ((w & page::kFolioMappingFlags) != page::kFolioMappingAnon) return nullptr;
  return reinterpret_cast<AnonVma*>(w & ~page::kFolioMappingFlags);
}

std::optional<VirtAddr> vma_address(const Vma& vma, uint64_t pgoff, uint64_t nr_pages) {
  const uint64_t pages = vma.size() >> kPageShift;
  if (pgoff < vma.pgoff) {
    // A large folio that starts before the VMA: its first page inside it, if any.
    if (pgoff + nr_pages - 1 < vma.pgoff) return std::nullopt;
    return vma.start;
  }
  if (pgoff - vma.pgoff >= pages) return std::nullopt;
  return vma.start + ((pgoff - vma.pgoff) << kPageShift);
}

void rmap_walk(Kernel& k, page::Folio folio, const RmapVisitor& visit) {
  ReadLocker guard(k.anon_vma_lock());
  rmap_walk_locked(k, folio, visit);
}

namespace {

// rmap_walk_anon: the anon_vma and every anon_vma forked from it, depth first; in each live
// mm, every VMA of that anon_vma whose page-offset range holds the folio (the kernel's
// anon_vma interval tree, searched by pgoff). A VMA moved by mremap keeps its vm_pgoff, so the
// folio is found at vma_address() wherever the VMA now is.
void rmap_walk_anon(AnonVma* root, uint64_t pgoff, uint64_t nr, const RmapVisitor& visit) {
  std::vector<AnonVma*> stack{root};
  while (!stack.empty()) {
    AnonVma* av = stack.back();
    stack.pop_back();
    for (AnonVma* c : av->children) stack.push_back(c);
    if (av->mm == nullptr) continue;  // its mm exited; descendants may still map the folio
    Mm& mm = *av->mm;
    bool go_on = true;
    mm.rmap_for_each_vma([&](const Vma& vma) {
      if (vma.anon_vma() != av) return true;
      const std::optional<VirtAddr> address = vma_address(vma, pgoff, nr);
      if (!address) return true;
      go_on = visit(mm, vma, *address);
      return go_on;
    });
    if (!go_on) return;
  }
}

// rmap_walk_file: every VMA of every mm in the file's i_mmap whose page-offset range holds
// the folio, shared and private mappings alike (a private mapping maps the page-cache folio
// until a write copies it).
void rmap_walk_file(AddressSpace& mapping, uint64_t pgoff, const RmapVisitor& visit) {
  for (Mm* mm : mapping.i_mmap_mms()) {
    bool go_on = true;
    mm->rmap_for_each_vma([&](const Vma& vma) {
      if (vma.file == nullptr || vma.file->mapping() != &mapping) return true;
      const std::optional<VirtAddr> address = vma_address(vma, pgoff);
      if (!address) return true;
      go_on = visit(*mm, vma, *address);
      return go_on;
    });
    if (!go_on) return;
  }
}

}  // namespace

void rmap_walk_locked(Kernel& k, page::Folio folio, const RmapVisitor& visit) {
  (void)k;
  if (AnonVma* root = folio_anon_vma(folio)) return rmap_walk_anon(root, folio.index(), folio.nr_pages().raw(), visit);
  if (AddressSpace* mapping = AddressSpace::of_folio(folio))
    return rmap_walk_file(*mapping, folio.index(), visit);
}

std::vector<RmapMapping> folio_find_mappings(Kernel& k, page::Folio folio,
                                             arch::PfnOrOffset target, PvmwFlags flags) {
  std::vector<RmapMapping> out;
  rmap_walk(k, folio, [&](Mm& mm, const Vma& vma, VirtAddr address) {
    SpinLocker guard(mm.page_table().lock());
    if (auto found = page_vma_mapped_walk(mm, vma, address, target, flags))
      out.push_back(RmapMapping{&mm, found->address, found->entry});
    return true;
  });
  return out;
}

}  // namespace dpmm::mm
