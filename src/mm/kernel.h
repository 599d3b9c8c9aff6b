// Kernel: what the kernel keeps once per machine, for one simulated machine.
//
// It owns the machine description, the bytes of its RAM (phys::BackingStore), the memory node
// with its zones and buddy allocator (page::Node), the page-table entry codec of the machine's
// arch in the swap numbering of the design under test, and the shared zero page
// (ZERO_PAGE(0), mm/memory.c / arch pgtable.h). Every Mm, page table and folio of the mm layer
// belongs to one Kernel, and the Kernel outlives them (its destructor asserts that no Mm is
// left).
//
// The device-memory layer plugs in through set_device_private_handler() (device_private.h):
// the kernel instance stands for the global state through which the real kernel reaches
// page_pgmap(page)->ops.
#pragma once

#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "arch/entry.h"
#include "arch/swap_numbering.h"
#include "base/lock.h"
#include "base/result.h"
#include "base/types.h"
#include "page/folio.h"
#include "page/node.h"
#include "phys/backing_store.h"
#include "phys/machine.h"

namespace dpmm::mm {

class DevicePrivateFaultHandler;
class Hstate;
struct HugetlbMeminfo;

// /sys/kernel/mm/transparent_hugepage/enabled (mm/huge_memory.c transparent_hugepage_flags):
// which anonymous VMAs may get PMD-sized folios at fault time.
enum class ThpPolicy : uint8_t {
  kNever,    // "never": no THP at fault time (MADV_COLLAPSE still collapses)
  kMadvise,  // "madvise": only VMAs with VM_HUGEPAGE (MADV_HUGEPAGE); most distributions
  kAlways,   // "always": every suitable anonymous VMA without VM_NOHUGEPAGE
};
// .../transparent_hugepage/use_zero_page: read faults map the huge zero folio.
enum class UseHugeZeroPage : bool { kNo, kYes };

struct KernelOptions {
  // Which swap-type numbering page-table entries use: the design's (legacy or dpas).
  arch::SwapNumberingKind numbering = arch::SwapNumberingKind::kLegacy;
  // kNo initialises every descriptor up front, so free-page counts are exact from the start
  // (tests that compare counts want that); kYes builds large machines fast.
  page::DeferredInit deferred_init = page::DeferredInit::kYes;
  // Whether the node has ZONE_DEVICE_PRIVATE (the dpas-zone design; migrate::DeviceKernel).
  page::DevicePrivateZone device_private_zone = page::DevicePrivateZone::kAbsent;
  // Physical ranges outside System RAM that the CPU can address and that hold bytes: device
  // memory a coherent pagemap will cover (MEMORY_DEVICE_COHERENT). The backing store covers
  // them, so page_bytes() works for their PFNs; the node does not (no buddy pages).
  std::vector<phys::PhysRange> cpu_device_ranges;
  // Transparent huge pages (huge_memory.h).
  ThpPolicy transparent_hugepage = ThpPolicy::kMadvise;
  UseHugeZeroPage use_zero_page = UseHugeZeroPage::kYes;
  // The hugetlb pool's size at boot (the hugepages= parameter; 0, as on a boot without it).
  // The kernel fills it with what the buddy has, maybe fewer (hstate.h).
  uint64_t nr_hugepages = 0;
};

class Kernel {
 public:
  // Builds the node from the machine's System RAM, maps its bytes and allocates the zero page.
  //   EINVAL  the machine has no usable RAM (node_from_machine); ERANGE RAM outside the vmemmap
  //   ENOMEM  the host refused the RAM mappings, or no page was left for the zero page
  static Result<std::unique_ptr<Kernel>> create(phys::Machine machine, KernelOptions options);
  // create() on phys::builtin_machine(name): ENOENT listing the names for an unknown one.
  static Result<std::unique_ptr<Kernel>> create_builtin(std::string_view name,
                                                        KernelOptions options);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  const phys::Machine& machine() const { return machine_; }
  // The machine itself, for the device-memory layer (its iomem tree takes device regions).
  phys::Machine& machine() { return machine_; }
  const arch::ArchParams& arch() const { return codec_.params(); }
  const arch::EntryCodec& codec() const { return codec_; }
  arch::SoftleafFormat softleaf_format() const { return codec_.format(); }
  page::Node& node() { return *node_; }
  const phys::BackingStore& backing_store() const { return *store_; }

  // ---- the user address-space layout (arch/x86/include/asm/page_64_types.h,
  // arch/arm64/include/asm/processor.h, mm/util.c mmap_base) ----
  // TASK_SIZE: x86_64 (1 << 47) - PAGE_SIZE (4-level user space; dpmm walks 4 levels on
  // both arches, so 5-level machines get 4-level user space too); arm64 1 << 48.
  VirtAddr task_size() const;
  // mmap_min_addr: CONFIG_DEFAULT_MMAP_MIN_ADDR = 65536 on x86_64, 32768 on arm64.
  VirtAddr mmap_min_addr() const;
  // mmap_base without randomisation: TASK_SIZE minus the minimum stack gap (128 MiB).
  VirtAddr mmap_base() const;

  // ---- pages ----
  // A folio of 2^order RAM pages, refcount 1, every byte zero (vma_alloc_zeroed_movable_folio
  // with __GFP_ZERO). ENOMEM when the node has no block of that order.
  Result<page::Folio> alloc_folio(Order order);
  // The kPageSize bytes of a RAM page (or of a page of KernelOptions::cpu_device_ranges).
  // REQUIRES: pfn is RAM of this machine or in one of those ranges.
  std::span<std::byte> page_bytes(Pfn pfn) const;
  Pfn page_to_pfn(const page::Page* page) const {
    return node_->memmap().page_to_pfn_unchecked(page);
  }
  // The descriptor of a RAM pfn: EFAULT/ENOENT as Memmap::pfn_to_page.
  Result<page::Page*> pfn_to_page(Pfn pfn) const { return node_->memmap().pfn_to_page(pfn); }
  // Free pages over every RAM zone of the node (nr_free_pages()).
  uint64_t nr_free_pages() const;

  // ---- the shared zero page (is_zero_pfn, my_zero_pfn) ----
  Pfn zero_pfn() const { return zero_pfn_; }
  bool is_zero_pfn(Pfn pfn) const { return pfn == zero_pfn_; }

  // ---- transparent huge pages (huge_memory.h) ----
  ThpPolicy thp_policy() const { return thp_policy_; }
  UseHugeZeroPage use_huge_zero_page() const { return use_zero_page_; }
  // get_huge_zero_folio (mm/huge_memory.c): one reference on the huge zero folio (an order-9
  // folio of zeroes), allocating it if there is none; its head pfn. ENOMEM when no order-9
  // block is free. The folio lives while huge_zero_refcount > 1; see put_huge_zero_folio.
  Result<Pfn> get_huge_zero_folio();
  // put_huge_zero_folio: drops a reference. The kernel frees the folio from a shrinker once
  // only the shrinker's own reference is left; dpmm runs that shrinker at once, so a machine
  // with no mm using the huge zero folio holds no page for it (docs/mm.md).
  void put_huge_zero_folio();
  // The huge zero folio's pfn. REQUIRES: the caller (an mm) holds a reference on it.
  Pfn get_huge_zero_pfn_held() const {
    assert(huge_zero_refcount_.load(std::memory_order_acquire) > 1 && "no huge zero folio held");
    return Pfn(huge_zero_pfn_.load(std::memory_order_acquire));
  }
  // is_huge_zero_pfn: `pfn` is the head of the current huge zero folio.
  bool is_huge_zero_pfn(Pfn pfn) const {
    return pfn.raw() == huge_zero_pfn_.load(std::memory_order_acquire);
  }

  // ---- hugetlb (hstate.h, hugetlb.h) ----
  // default_hstate: the PMD-sized pool every MAP_HUGETLB mapping draws from.
  Hstate& hstate() { return *hstate_; }
  // `echo n > /proc/sys/vm/nr_hugepages` (Hstate::set_max_huge_pages).
  void set_nr_hugepages(uint64_t n);
  // The HugePages_* lines of /proc/meminfo.
  HugetlbMeminfo hugetlb_meminfo() const;

  // ---- device-private memory seam (device_private.h) ----
  // The handler the fault path and zap use for device-private entries; null until the device
  // memory layer installs one. The handler must outlive every Mm of this kernel.
  DevicePrivateFaultHandler* device_private_handler() const {
    return device_private_handler_.load(std::memory_order_acquire);
  }
  void set_device_private_handler(DevicePrivateFaultHandler* handler) {
    device_private_handler_.store(handler, std::memory_order_release);
  }

  // ---- the anon rmap (rmap.h) ----
  // anon_vma->root->rwsem, one per machine (a simplification: see docs/mm.md). Held for read
  // by rmap walks; for write by every change to any mm's VMA set or VMA fields, to the anon_vma
  // tree, and by every unhooking of page tables.
  RwLock& anon_vma_lock() RETURN_CAPABILITY(anon_vma_lock_) { return anon_vma_lock_; }

  // Mm lifetime bookkeeping (Mm's constructor and destructor).
  void mm_created() { live_mms_.fetch_add(1, std::memory_order_relaxed); }
  void mm_destroyed() { live_mms_.fetch_sub(1, std::memory_order_relaxed); }
  int nr_live_mms() const { return live_mms_.load(std::memory_order_relaxed); }

 private:
  Kernel(phys::Machine machine, std::unique_ptr<phys::BackingStore> store,
         std::unique_ptr<page::Node> node, arch::EntryCodec codec);

  phys::Machine machine_;
  std::unique_ptr<phys::BackingStore> store_;
  std::unique_ptr<page::Node> node_;
  arch::EntryCodec codec_;
  Pfn zero_pfn_;
  std::atomic<DevicePrivateFaultHandler*> device_private_handler_{nullptr};
  std::atomic<int> live_mms_{0};
  ThpPolicy thp_policy_ = ThpPolicy::kMadvise;
  UseHugeZeroPage use_zero_page_ = UseHugeZeroPage::kYes;
  // huge_zero_folio, huge_zero_pfn (~0 when none) and huge_zero_refcount (0 when none; 1 is
  // the shrinker's own reference; each user adds one).
  std::atomic<page::Page*> huge_zero_folio_{nullptr};
  std::atomic<uint64_t> huge_zero_pfn_{~uint64_t{0}};
  std::atomic<int> huge_zero_refcount_{0};
  RwLock anon_vma_lock_{LockRank::kAnonVma};
  std::unique_ptr<Hstate> hstate_;
};

}  // namespace dpmm::mm
