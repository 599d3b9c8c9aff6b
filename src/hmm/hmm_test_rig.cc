#include <gtest/gtest.h>

#include "hmm/hmm_test_rig.h"

#include <algorithm>
#include <cstring>

#include "arch/decoded_entry.h"
#include "arch/softleaf.h"
#include "mm/anon_rmap.h"
#include "mm/huge_memory.h"
#include "page/folio_lock.h"
#include "phys/test_machine.h"

namespace dpmm::hmm::testing {
HmmRig::HmmRig(devmem::Design design) : design_(design) {
  phys::Machine m = phys::testing::small_machine("hmm-test", arch::ArchKind::kX86_64, 256);
  mm::KernelOptions o;
  o.numbering = devmem::swap_numbering_kind(design);
  o.deferred_init = page::DeferredInit::kNo;
  o.device_private_zone = devmem::device_private_zone(design);
  kernel_ = MUST(mm::Kernel::create(std::move(m), o), "test kernel builds");
  dm_ = MUST(devmem::DeviceMemory::create(kernel_->machine(), kernel_->node(), design),
             "device memory");
  kernel_->set_device_private_handler(this);
}

HmmRig::~HmmRig() {
  kernel_->set_device_private_handler(nullptr);
  dm_.reset();
  kernel_.reset();
}

page::Page* HmmRig::softleaf_to_page(arch::Softleaf entry) {
  Result<page::Page*> p = dm_->device_private_entry_to_page(entry);
  return p.is_ok() ? *p : nullptr;
}

mm::FaultResult HmmRig::migrate_to_ram(mm::VmFault& vmf) {
  switch (devmem::page_pgmap(vmf.page)->ops()->migrate_to_ram(vmf)) {
    case devmem::VmFaultCode::kHandled: return mm::FaultResult::handled();
    case devmem::VmFaultCode::kOom: return {mm::FaultOutcome::kOom, "device: OOM"};
    case devmem::VmFaultCode::kSigBus: return {mm::FaultOutcome::kSigBus, "device: SIGBUS"};
    case devmem::VmFaultCode::kRetry: return {mm::FaultOutcome::kRetry, "device: retry"};
  }
  return {mm::FaultOutcome::kSigBus, "device: unknown code"};
}

TestDevice::TestDevice(HmmRig& rig, uint64_t npages, std::string name) : rig_(rig) {
  devmem::DevPagemapConfig c;
  c.type = devmem::MemoryType::kDevicePrivate;
  c.ops = this;
  c.owner = &owner_token_;
  c.nr_pages = PageCount(npages);
  c.name = std::move(name);
  pgmap_ = std::make_unique<devmem::DevPagemap>(c);
  MUST(rig_.dm().register_pagemap(*pgmap_), "test pagemap registers");
  MutexLocker g(lock_);
  for (uint64_t n = 0; n < npages; ++n) {
    free_.push_back(MUST(rig_.dm().pfn_or_offset_to_page(pgmap_->range().index(n)),
                         "a registered page resolves"));
  }
}

TestDevice::~TestDevice() { rig_.dm().unregister_pagemap(*pgmap_); }

page::Page* TestDevice::plant(mm::Process& p, VirtAddr addr, Writable w) {
  mm::Mm& mm = p.mm();
  mm::Kernel& k = rig_.kernel();
  ReadLocker ml(mm.mmap_lock());  // before the folio lock zone_device_page_init takes
  page::Page* dpage = nullptr;
  {
    MutexLocker g(lock_);
    EXPECT_FALSE(free_.empty()) << "test device out of pages";
    dpage = free_.back();
    free_.pop_back();
  }
  page::Folio dfolio = MUST(devmem::zone_device_page_init(dpage, *pgmap_, Order(0)),
                            "a free device page initialises");
  const mm::Vma* vma = mm.vma_lookup(addr);
  EXPECT_NE(vma, nullptr);
  mm::EntrySlot slot = mm.page_table().walk_pte(addr).value();
  std::optional<page::Folio> src;
  {
    SpinLocker pl(mm.page_table().lock());
    const arch::DecodedEntry d = k.codec().decode(arch::EntryLevel::kPte, slot.load());
    EXPECT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent) << "plant needs a present page";
    page::Page* spage = MUST(k.pfn_to_page(d.pfn), "RAM page");
    src = page::page_folio(spage);
    {
      MutexLocker g(lock_);
      std::memcpy(store_[dpage].data(), k.page_bytes(d.pfn).data(), kPageSize);
    }
    mm::folio_add_new_anon_rmap(dfolio, *vma, addr.page_base(), mm::RmapExclusive::kYes);
    const arch::PfnOrOffset where = rig_.dm().page_to_pfn_or_offset(dpage);
    const arch::Softleaf leaf =
        w == Writable::kYes
            ? MUST(arch::make_writable_device_private_entry(k.softleaf_format(), where), "entry")
            : MUST(arch::make_readable_device_private_entry(k.softleaf_format(), where), "entry");
    slot.store(MUST(k.codec().make_swap(arch::EntryLevel::kPte, leaf, arch::SwpBit::kNone),
                    "encodes"));
    mm::folio_remove_rmap_pte(*src, spage);
  }
  mm.flush_tlb_range(addr.page_base(), addr.page_base() + kPageSize);
  page::folio_put(*src);     // the old mapping's reference
  page::folio_unlock(dfolio);  // the allocation's reference is now the entry's
  return dpage;
}

page::Page* TestDevice::plant_huge(mm::Process& p, VirtAddr addr, Writable w) {
  mm::Mm& mm = p.mm();
  mm::Kernel& k = rig_.kernel();
  ReadLocker ml(mm.mmap_lock());
  page::Page* dhead = MUST(rig_.dm().pfn_or_offset_to_page(pgmap_->range().index(0)),
                           "a registered page resolves");
  {
    MutexLocker g(lock_);
    for (uint64_t i = 0; i < mm::kHpagePmdNr; ++i) {
      auto it = std::find(free_.begin(), free_.end(), dhead + i);
      EXPECT_NE(it, free_.end()) << "plant_huge needs the device's first 512 pages free";
      if (it != free_.end()) free_.erase(it);
    }
  }
  page::Folio dfolio = MUST(devmem::zone_device_folio_init(dhead, *pgmap_, Order(mm::kHpagePmdOrder)),
                            "512 free device pages initialise");
  const mm::Vma* vma = mm.vma_lookup(addr);
  EXPECT_NE(vma, nullptr);
  mm::EntrySlot pmd = mm.page_table().walk_pmd(addr).value();
  std::optional<page::Folio> src;
  {
    SpinLocker pl(mm.page_table().lock());
    const std::optional<arch::DecodedEntry> d = mm::pmd_trans_huge(k, pmd.load());
    EXPECT_TRUE(d.has_value()) << "plant_huge needs a PMD-mapped THP";
    page::Page* shead = MUST(k.pfn_to_page(d->pfn), "RAM page");
    src = page::page_folio(shead);
    {
      MutexLocker g(lock_);
      for (uint64_t i = 0; i < mm::kHpagePmdNr; ++i)
        std::memcpy(store_[dhead + i].data(), k.page_bytes(d->pfn + PageCount(i)).data(),
                    kPageSize);
    }
    mm::folio_add_new_anon_rmap(dfolio, *vma, addr, mm::RmapExclusive::kYes, mm::RmapLevel::kPmd);
    pmd.store(mm::make_device_private_pmd(k, rig_.dm().page_to_pfn_or_offset(dhead),
                                          w == Writable::kYes ? arch::Prot::kWrite
                                                              : arch::Prot::kNone,
                                          arch::SwpBit::kNone));
    mm::folio_remove_rmap_pmd(*src);
  }
  mm.flush_tlb_range(addr, addr + mm::kHpagePmdSize);
  page::folio_put(*src);
  page::folio_unlock(dfolio);
  return dhead;
}

std::array<std::byte, kPageSize> TestDevice::bytes(const page::Page* page) {
  MutexLocker g(lock_);
  return store_.at(page);
}

void TestDevice::folio_free(page::Folio folio) {
  frees_.fetch_add(1);
  MutexLocker g(lock_);
  for (uint64_t i = 0; i < folio.nr_pages().raw(); ++i) {
    store_.erase(folio.head() + i);
    free_.push_back(folio.head() + i);
  }
}

devmem::VmFaultCode TestDevice::migrate_to_ram(mm::VmFault& vmf) {
  migrate_calls_.fetch_add(1);
  mm::Mm& mm = *vmf.mm;
  mm::Kernel& k = rig_.kernel();
  if (!vmf.pte) return migrate_huge_to_ram(vmf);
  page::Folio dst = MUST(k.alloc_folio(Order(0)), "a RAM page for migrate_to_ram");
  const Pfn dst_pfn = k.page_to_pfn(dst.head());
  {
    MutexLocker g(lock_);
    std::memcpy(k.page_bytes(dst_pfn).data(), store_.at(vmf.page).data(), kPageSize);
  }
  const arch::Softleaf leaf = k.codec().softleaf_from(arch::EntryLevel::kPte, vmf.orig_pte);
  arch::Prot prot = vmf.vma->page_prot | arch::Prot::kAccessed;
  if (arch::softleaf_is_device_private_write(leaf))
    prot = prot | arch::Prot::kWrite | arch::Prot::kDirty;
  page::Folio src = page::page_folio(vmf.page);
  {
    SpinLocker pl(mm.page_table().lock());
    if (vmf.pte->load() != vmf.orig_pte) {
      page::folio_put(dst);
      return devmem::VmFaultCode::kHandled;
    }
    mm::folio_add_new_anon_rmap(dst, *vmf.vma, vmf.address, mm::RmapExclusive::kYes);
    vmf.pte->store(MUST(k.codec().make_present(arch::EntryLevel::kPte, dst_pfn, prot), "pte"));
    mm::folio_remove_rmap_pte(src, vmf.page);
  }
  page::folio_put(src);  // the entry's reference; the fault path holds another
  return devmem::VmFaultCode::kHandled;
}

devmem::VmFaultCode TestDevice::migrate_huge_to_ram(mm::VmFault& vmf) {
  mm::Mm& mm = *vmf.mm;
  mm::Kernel& k = rig_.kernel();
  const VirtAddr haddr = vmf.address.align_down(mm::kHpagePmdSize);
  Result<page::Folio> dst_or = k.alloc_folio(Order(mm::kHpagePmdOrder));
  if (dst_or.is_error()) return devmem::VmFaultCode::kOom;
  page::Folio dst = *dst_or;
  const Pfn dst_pfn = k.page_to_pfn(dst.head());
  {
    MutexLocker g(lock_);
    for (uint64_t i = 0; i < mm::kHpagePmdNr; ++i)
      std::memcpy(k.page_bytes(dst_pfn + PageCount(i)).data(), store_.at(vmf.page + i).data(),
                  kPageSize);
  }
  const arch::Softleaf leaf = k.codec().softleaf_from(arch::EntryLevel::kPmd, vmf.orig_pte);
  arch::Prot prot = vmf.vma->page_prot | arch::Prot::kAccessed;
  if (arch::softleaf_is_device_private_write(leaf))
    prot = prot | arch::Prot::kWrite | arch::Prot::kDirty;
  page::Folio src = page::page_folio(vmf.page);
  const mm::EntrySlot pmd = mm.page_table().walk_pmd(haddr).value();
  {
    SpinLocker pl(mm.page_table().lock());
    if (pmd.load() != vmf.orig_pte) {
      page::folio_put(dst);
      return devmem::VmFaultCode::kHandled;
    }
    mm::folio_add_new_anon_rmap(dst, *vmf.vma, haddr, mm::RmapExclusive::kYes,
                                mm::RmapLevel::kPmd);
    pmd.store(MUST(k.codec().make_present(arch::EntryLevel::kPmd, dst_pfn, prot), "pmd"));
    mm::folio_remove_rmap_pmd(src);
  }
  page::folio_put(src);
  return devmem::VmFaultCode::kHandled;
}

uint64_t pte_word(mm::Mm& mm, VirtAddr addr) {
  std::optional<mm::EntrySlot> s = mm.page_table().walk_pte(addr);
  return s ? s->load() : 0;
}

Pfn present_pfn(mm::Mm& mm, VirtAddr addr) {
  const arch::DecodedEntry d =
      mm.kernel().codec().decode(arch::EntryLevel::kPte, pte_word(mm, addr));
  EXPECT_EQ(d.kind, arch::DecodedEntry::Kind::kPresent) << arch::describe(d);
  return d.pfn;
}

page::Page* present_page(mm::Mm& mm, VirtAddr addr) {
  return MUST(mm.kernel().pfn_to_page(present_pfn(mm, addr)), "RAM page");
}

std::string design_param_name(const ::testing::TestParamInfo<devmem::Design>& p) {
  std::string n(devmem::design_name(p.param));
  for (char& ch : n) ch = ch == '-' ? '_' : ch;
  return n;
}

}  // namespace dpmm::hmm::testing
