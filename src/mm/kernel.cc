#include "mm/kernel.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  page::Page* zero = MUST(pfn_to_page(zero_pfn_), "the zero page is RAM of this machine");
  zero->clear_flag(page::PageFlag::kReserved);
  node_->free_pages(zero, Order(0));
}

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
