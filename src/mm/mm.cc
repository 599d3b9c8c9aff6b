#include "mm/mm.h"

#include "mm/rmap.h"

#include <cassert>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace dpmm::mm {
namespace {

// Hardware walks the calling thread is inside (HwWalk nesting), to catch a flush from inside
// a walk, which would wait for itself.
thread_local int tls_hw_walk_depth = 0;

}  // namespace

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
    // exit_mmap: mmu_notifier_release first, then unmap_vmas under MMU_NOTIFY_UNMAP (heard only
    // by subscribers that outlive release, mmu_notifier.h).
    notifiers_.release(*this);
    const MmuNotifierRange range =
        notifier_range(MmuNotifyEvent::kUnmap, VirtAddr(0), VirtAddr(kPgtableTop));
    invalidate_range_start(range);
    MmuGather tlb(*this, VirtAddr(0), VirtAddr(kPgtableTop));
    for (const auto& [start, vma] : vmas_) zap_range_locked(vma, vma.start, vma.end, tlb);
    std::vector<Vma> gone;
    {
      WriteLocker rmap(kernel_.anon_vma_lock());
      tlb.remove_tables(page_table_->free_pgd_range(VirtAddr(0), VirtAddr(kPgtableTop),
                                                    VirtAddr(0), VirtAddr(kPgtableTop)));
      while (!vmas_.empty()) gone.push_back(vma_unlink_locked(vmas_.begin()));
      // unlink_anon_vmas: this mm's references go; an anon_vma forked from stays for its
      // children's folios.
      std::vector<AnonVma*> mine =
          anon_vmas_.with([](std::vector<AnonVma*>& all) { return std::exchange(all, {}); });
      for (AnonVma* a : mine) {
        a->mm = nullptr;
        put_anon_vma_locked(kernel_, a);
      }
    }
    tlb.finish();
    for (const Vma& v : gone) vma_close(v);  // remove_vma, after the pages went
    invalidate_range_end(range);
    // The interval notifiers may outlive the mm (mmgrab): tell their tree it is gone.
    if (interval_tree_ != nullptr) interval_tree_->mm_gone();
  }
  page_table_.reset();
  // mm_put_huge_zero_folio (__mmput).
  if (huge_zero_held_.load(std::memory_order_acquire)) kernel_.put_huge_zero_folio();
  kernel_.mm_destroyed();
}

Result<Pfn> Mm::mm_get_huge_zero_folio() {
  if (huge_zero_held_.load(std::memory_order_acquire)) {
    // This mm's reference keeps the folio alive, so the pfn is stable.
    return kernel_.get_huge_zero_pfn_held();
  }
  const Pfn pfn = TRY(kernel_.get_huge_zero_folio());
  // test_and_set_bit(MMF_HUGE_ZERO_FOLIO): a racing fault may have taken it first.
  if (huge_zero_held_.exchange(true, std::memory_order_acq_rel)) kernel_.put_huge_zero_folio();
  return pfn;
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
  AnonVma* a = anon_vmas_.with([&](std::vector<AnonVma*>& all) {
    all.push_back(anon_vma_alloc(*this));
    return all.back();
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

void Mm::flush_tlb_range([[maybe_unused]] VirtAddr start, [[maybe_unused]] VirtAddr end) {
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
  notifiers_.invalidate_range_start(range);
}

void Mm::invalidate_range_end(const MmuNotifierRange& range) {
  notifiers_.invalidate_range_end(range);
}

Status Mm::mmu_notifier_register(MmuNotifier& n, MmuNotifierKind kind) {
  // mm_take_all_locks: no invalidation of this mm is in flight while the list changes.
  WriteLocker guard(mmap_lock_);
  WriteLocker rmap(kernel_.anon_vma_lock());
  return notifiers_.add(n, kind);
}

Result<std::shared_ptr<MmuIntervalTreeSubscriber>> Mm::interval_tree_subscriber(
    const std::function<std::shared_ptr<MmuIntervalTreeSubscriber>()>& make) {
  if (interval_tree_ != nullptr) return interval_tree_;
  std::shared_ptr<MmuIntervalTreeSubscriber> sub = make();
  {
    // mm_take_all_locks, as mmu_notifier_register: mmap_lock (held) and the anon_vma lock.
    WriteLocker rmap(kernel_.anon_vma_lock());
    TRY(notifiers_.add(*sub, MmuNotifierKind::kIntervalTree));
  }
  interval_tree_ = sub;
  interval_tree_raw_.store(sub.get(), std::memory_order_release);
  return sub;
}

const Vma* Mm::rmap_vma_lookup(VirtAddr addr) const {
  auto it = vmas_.upper_bound(addr.raw());
  if (it == vmas_.begin()) return nullptr;
  const Vma& vma = std::prev(it)->second;
  return vma.contains(addr) ? &vma : nullptr;
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
