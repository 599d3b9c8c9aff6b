#include "mm/mm.h"

#include <cassert>
#include <thread>

#include <fmt/format.h>

namespace dpmm::mm {
namespace {

// Hardware walks the calling thread is inside (HwWalk nesting), to catch a flush from inside
// a walk, which would wait for itself.
thread_local int tls_hw_walk_depth = 0;

}  // namespace

std::string_view mmu_notify_event_name(MmuNotifyEvent e) {
  switch (e) {
    case MmuNotifyEvent::kUnmap: return "MMU_NOTIFY_UNMAP";
    case MmuNotifyEvent::kClear: return "MMU_NOTIFY_CLEAR";
    case MmuNotifyEvent::kProtectionVma: return "MMU_NOTIFY_PROTECTION_VMA";
    case MmuNotifyEvent::kProtectionPage: return "MMU_NOTIFY_PROTECTION_PAGE";
    case MmuNotifyEvent::kSoftDirty: return "MMU_NOTIFY_SOFT_DIRTY";
    case MmuNotifyEvent::kRelease: return "MMU_NOTIFY_RELEASE";
    case MmuNotifyEvent::kMigrate: return "MMU_NOTIFY_MIGRATE";
    case MmuNotifyEvent::kExclusive: return "MMU_NOTIFY_EXCLUSIVE";
  }
  return "MMU_NOTIFY_?";
}

Result<std::unique_ptr<Mm>> Mm::create(Kernel& kernel) {
  std::unique_ptr<PageTable> table = TRY(PageTable::create(kernel));
  return std::unique_ptr<Mm>(new Mm(kernel, std::move(table)));
}

Mm::Mm(Kernel& kernel, std::unique_ptr<PageTable> table)
    : kernel_(kernel), page_table_(std::move(table)) {
  kernel_.mm_created();
}

Mm::~Mm() {
  {
    WriteLocker guard(mmap_lock_);
    const MmuNotifierRange range =
        notifier_range(MmuNotifyEvent::kRelease, VirtAddr(0), VirtAddr(kPgtableTop));
    invalidate_range_start(range);
    MmuGather tlb(*this, VirtAddr(0), VirtAddr(kPgtableTop));
    for (const auto& [start, vma] : vmas_) zap_range_locked(vma, vma.start, vma.end, tlb);
    tlb.remove_tables(page_table_->free_pgd_range(VirtAddr(0), VirtAddr(kPgtableTop),
                                                  VirtAddr(0), VirtAddr(kPgtableTop)));
    tlb.finish();
    vmas_.clear();
    invalidate_range_end(range);
  }
  page_table_.reset();
  kernel_.mm_destroyed();
}

const Vma* Mm::find_vma(VirtAddr addr) const {
  auto it = vmas_.upper_bound(addr.raw());
  if (it != vmas_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > addr) return &prev->second;
  }
  return it == vmas_.end() ? nullptr : &it->second;
}

const Vma* Mm::vma_lookup(VirtAddr addr) const {
  const Vma* vma = find_vma(addr);
  return vma != nullptr && vma->start <= addr ? vma : nullptr;
}

std::vector<Vma> Mm::vmas() const {
  std::vector<Vma> out;
  out.reserve(vmas_.size());
  for (const auto& [start, vma] : vmas_) out.push_back(vma);
  return out;
}

std::vector<Vma> Mm::snapshot_vmas() {
  ReadLocker guard(mmap_lock_);
  return vmas();
}

AnonVma* Mm::anon_vma_prepare(const Vma& vma) {
  if (AnonVma* a = vma.anon_vma()) return a;
  SpinLocker guard(page_table_->lock());
  if (AnonVma* a = vma.anon_vma()) return a;
  AnonVma* a = anon_vmas_.with([&](std::vector<std::unique_ptr<AnonVma>>& all) {
    all.push_back(std::make_unique<AnonVma>(AnonVma{this}));
    return all.back().get();
  });
  vma.set_anon_vma(a);
  return a;
}

Mm::HwWalk::HwWalk(Mm& mm) : mm_(mm) {
  ++tls_hw_walk_depth;
  // A seq_cst read-modify-write, paired with the one in flush_tlb_range: either the flusher
  // sees this walk, or this walk sees every entry the flusher changed before it looked (the
  // store-load order both sides need; an RMW rather than a fence, which TSan cannot model).
  mm_.hw_walkers_.fetch_add(1, std::memory_order_seq_cst);
}

Mm::HwWalk::~HwWalk() {
  mm_.hw_walkers_.fetch_sub(1, std::memory_order_release);
  --tls_hw_walk_depth;
}

void Mm::flush_tlb_range(VirtAddr start, VirtAddr end) {
  assert(tls_hw_walk_depth == 0 && "TLB flush from inside a hardware walk waits for itself");
  assert(start <= end && "flush of an inverted range");
  tlb_gen_.fetch_add(1, std::memory_order_seq_cst);
  // A walk holds its translation for one page copy, so the wait is short; walks never block
  // inside the guard. The first look is a seq_cst RMW (see HwWalk).
  unsigned spins = 0;
  for (int64_t n = hw_walkers_.fetch_add(0, std::memory_order_seq_cst); n != 0;
       n = hw_walkers_.load(std::memory_order_acquire)) {
    if (++spins < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void Mm::invalidate_range_start(const MmuNotifierRange& range) {
  if (MmuNotifierHook* hook = notifier_hook_.load()) hook->invalidate_range_start(range);
}

void Mm::invalidate_range_end(const MmuNotifierRange& range) {
  if (MmuNotifierHook* hook = notifier_hook_.load()) hook->invalidate_range_end(range);
}

std::string Mm::maps() {
  ReadLocker guard(mmap_lock_);
  std::string out;
  for (const auto& [start, vma] : vmas_) {
    out += fmt::format("{:012x}-{:012x} {} pgoff:{:#x}\n", vma.start.raw(), vma.end.raw(),
                       vm_flags_to_string(vma.flags), vma.pgoff);
  }
  return out;
}

MmuGather::~MmuGather() {
  assert(finished_ && "an mmu_gather went away without tlb_finish_mmu");
}

void MmuGather::remove_tables(std::vector<page::Folio> tables) {
  tables_.insert(tables_.end(), tables.begin(), tables.end());
}

void MmuGather::finish() {
  assert(!finished_ && "tlb_finish_mmu twice");
  finished_ = true;
  mm_.flush_tlb_range(start_, end_);
  for (page::Folio f : folios_) page::folio_put(f);
  for (page::Folio t : tables_) page::folio_put(t);
}

}  // namespace dpmm::mm
