#include "mm/kernel.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mm/hstate.h"
#include "mm/page_table.h"
#include "page/node_from_machine.h"
#include "page/zone_type.h"
#include "phys/builtin_machines.h"

namespace dpmm::mm {

Result<std::unique_ptr<Kernel>> Kernel::create(phys::Machine machine, KernelOptions options) {
  std::vector<phys::PhysRange> backed = machine.system_ram();
  backed.insert(backed.end(), options.cpu_device_ranges.begin(), options.cpu_device_ranges.end());
  std::sort(backed.begin(), backed.end(),
            [](const phys::PhysRange& a, const phys::PhysRange& b) { return a.start < b.start; });
  std::unique_ptr<phys::BackingStore> store = TRY(phys::BackingStore::create(backed));
  page::NodeOptions node_options;
  node_options.deferred_init = options.deferred_init;
  node_options.device_private_zone = options.device_private_zone;
  std::unique_ptr<page::Node> node = TRY(page::node_from_machine(machine, node_options));
  arch::EntryCodec codec(machine.params(), options.numbering);
  std::unique_ptr<Kernel> k(
      new Kernel(std::move(machine), std::move(store), std::move(node), std::move(codec)));
  // The zero page is reserved for the kernel's lifetime: mapped without references or
  // mapcounts (pte_special), never freed while an Mm exists.
  page::Folio zero = TRY(k->alloc_folio(Order(0)));
  zero.set_flag(page::PageFlag::kReserved);
  k->zero_pfn_ = k->page_to_pfn(zero.head());
  k->thp_policy_ = options.transparent_hugepage;
  k->use_zero_page_ = options.use_zero_page;
  k->hstate_ = std::make_unique<Hstate>(*k);
  if (options.nr_hugepages != 0) k->set_nr_hugepages(options.nr_hugepages);
  return k;
}

Result<std::unique_ptr<Kernel>> Kernel::create_builtin(std::string_view name,
                                                       KernelOptions options) {
  return create(TRY(phys::builtin_machine(name)), options);
}

Kernel::Kernel(phys::Machine machine, std::unique_ptr<phys::BackingStore> store,
               std::unique_ptr<page::Node> node, arch::EntryCodec codec)
    : machine_(std::move(machine)),
      store_(std::move(store)),
      node_(std::move(node)),
      codec_(std::move(codec)) {}

Kernel::~Kernel() {
  if (live_mms_.load(std::memory_order_relaxed) != 0) {
    std::fprintf(stderr, "dpmm: a Kernel was destroyed while %d Mm(s) still use it\n",
                 live_mms_.load());
    std::abort();
  }
  assert(huge_zero_refcount_.load() == 0 && "the huge zero folio outlived every Mm");
  hstate_.reset();  // the pool's folios go back to the buddy
  page::Page* zero = MUST(pfn_to_page(zero_pfn_), "the zero page is RAM of this machine");
  zero->clear_flag(page::PageFlag::kReserved);
  node_->free_pages(zero, Order(0));
}

Result<Pfn> Kernel::get_huge_zero_folio() {
  while (true) {
    // atomic_inc_not_zero: a live huge zero folio gets one more user.
    int cur = huge_zero_refcount_.load(std::memory_order_acquire);
    while (cur != 0) {
      if (huge_zero_refcount_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) {
        return page_to_pfn(huge_zero_folio_.load(std::memory_order_acquire));
      }
    }
    page::Folio folio = TRY(alloc_folio(Order(kHpagePmdOrder)));  // zeroed, as __GFP_ZERO
    page::Page* expected = nullptr;
    if (!huge_zero_folio_.compare_exchange_strong(expected, folio.head(),
                                                  std::memory_order_acq_rel)) {
      // Someone else installed one first (or the shrinker has not yet cleared the old one).
      page::folio_put(folio);
      continue;
    }
    folio.set_flag(page::PageFlag::kReserved);  // is_zero_folio for GUP (gup.cc)
    huge_zero_pfn_.store(page_to_pfn(folio.head()).raw(), std::memory_order_release);
    // The shrinker's reference and the caller's.
    huge_zero_refcount_.store(2, std::memory_order_release);
    return page_to_pfn(folio.head());
  }
}

void Kernel::put_huge_zero_folio() {
  const int left = huge_zero_refcount_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  assert(left >= 1 && "put_huge_zero_folio without a reference");
  if (left != 1) return;
  // shrink_huge_zero_folio_scan, run at once: only the shrinker's reference is left.
  int one = 1;
  if (!huge_zero_refcount_.compare_exchange_strong(one, 0, std::memory_order_acq_rel)) return;
  page::Page* head = huge_zero_folio_.load(std::memory_order_acquire);
  huge_zero_pfn_.store(~uint64_t{0}, std::memory_order_release);
  huge_zero_folio_.store(nullptr, std::memory_order_release);
  head->clear_flag(page::PageFlag::kReserved);
  page::folio_put(page::Folio(head));
}

void Kernel::set_nr_hugepages(uint64_t n) { hstate_->set_max_huge_pages(n); }

HugetlbMeminfo Kernel::hugetlb_meminfo() const { return hstate_->meminfo(); }

VirtAddr Kernel::task_size() const {
  if (arch().kind == arch::ArchKind::kX86_64) return VirtAddr((uint64_t{1} << 47) - kPageSize);
  return VirtAddr(uint64_t{1} << 48);
}

VirtAddr Kernel::mmap_min_addr() const {
  return VirtAddr(arch().kind == arch::ArchKind::kX86_64 ? 65536 : 32768);
}

VirtAddr Kernel::mmap_base() const {
  constexpr uint64_t kMinGap = uint64_t{128} << 20;  // MIN_GAP in mm/util.c
  return task_size() - kMinGap;
}

Result<page::Folio> Kernel::alloc_folio(Order order) {
  page::Page* head = TRY(node_->alloc_pages(order));
  page::Folio folio(head);
  const Pfn pfn = page_to_pfn(head);
  for (uint64_t i = 0; i < order.pages().raw(); ++i) {
    std::span<std::byte> bytes = page_bytes(pfn + PageCount(i));
    std::memset(bytes.data(), 0, bytes.size());
  }
  return folio;
}

std::span<std::byte> Kernel::page_bytes(Pfn pfn) const {
  return MUST(store_->page_bytes(pfn), "page_bytes of a pfn that is not RAM");
}

uint64_t Kernel::nr_free_pages() const {
  uint64_t total = 0;
  for (page::ZoneType t : {page::ZoneType::kDma32, page::ZoneType::kNormal,
                           page::ZoneType::kMovable}) {
    if (node_->has_zone(t)) total += node_->zone(t).stats().nr_free_pages;
  }
  return total;
}

}  // namespace dpmm::mm
