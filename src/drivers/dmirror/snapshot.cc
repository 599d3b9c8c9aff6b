// HMM_DMIRROR_SNAPSHOT (lib/test_hmm.c dmirror_snapshot, dmirror_range_snapshot,
// dmirror_snapshot_invalidate, dmirror_mkentry): one byte per page saying what the CPU page
// tables hold, read with hmm_range_fault in snapshot mode (nothing faulted) under a temporary
// interval notifier on exactly the chunk being read.
#include <algorithm>
#include <chrono>
#include <cstring>

#include "devmem/dev_pagemap.h"
#include "devmem/design.h"
#include "drivers/dmirror/dmirror_device.h"
#include "drivers/dmirror/mirror.h"
#include "hmm/hmm_pfn.h"
#include "migrate/device_kernel.h"
#include "mm/kernel.h"

namespace dpmm::dmirror {

namespace {

// struct dmirror_interval with dmirror_mrn_ops: any invalidation of the chunk invalidates the
// whole snapshot, so the callback only moves the sequence, under the mirror's mutex.
class SnapshotInterval final : public hmm::MmuIntervalNotifierOps {
 public:
  explicit SnapshotInterval(Mutex& mutex) : mutex_(mutex) {}
  bool invalidate(hmm::MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                  uint64_t cur_seq) override {
    if (range.blockable()) {
      mutex_.lock();
    } else if (!mutex_.try_lock()) {
      return false;
    }
    sub.set_seq(cur_seq);
    mutex_.unlock();
    return true;
  }

 private:
  Mutex& mutex_;
};

}  // namespace

uint8_t Dmirror::mkentry(const hmm::HmmRange& range, uint64_t entry) const {
  (void)range;
  if ((entry & hmm::kHmmPfnError) != 0) return kHmmDmirrorProtError;
  if ((entry & hmm::kHmmPfnValid) == 0) return kHmmDmirrorProtNone;

  migrate::DeviceKernel& dk = mdevice_.device_kernel();
  const devmem::DeviceMemory& dm = dk.device_memory();
  page::Page* page = MUST(hmm::hmm_pfn_to_page(dm, entry), "page of a VALID snapshot answer");
  uint8_t perm = kHmmDmirrorProtNone;
  if (devmem::is_device_private_page(page)) {
    // Migrated to this device or to another one?
    perm = DmirrorDevice::page_to_device(page) == &mdevice_ ? kHmmDmirrorProtDevPrivateLocal
                                                             : kHmmDmirrorProtDevPrivateRemote;
  } else if (devmem::is_device_coherent_page(page)) {
    perm = DmirrorDevice::page_to_device(page) == &mdevice_ ? kHmmDmirrorProtDevCoherentLocal
                                                             : kHmmDmirrorProtDevCoherentRemote;
  } else if (dk.kernel().is_zero_pfn(dm.page_to_pfn(page))) {
    perm = kHmmDmirrorProtZero;
  }
  perm |= (entry & hmm::kHmmPfnWrite) != 0 ? kHmmDmirrorProtWrite : kHmmDmirrorProtRead;
  const arch::ArchParams& ap = dk.kernel().arch();
  // hmm_pfn_to_map_order, in the answer layout of the design's kernel.
  const unsigned order =
      hmm::hmm_pfn_format(devmem::swap_numbering_kind(dk.design())).map_order(entry);
  if (order + kPageShift == ap.pmd_shift) {
    perm |= kHmmDmirrorProtPmd;
  } else if (order + kPageShift == ap.pud_shift) {
    perm |= kHmmDmirrorProtPud;
  }
  return perm;
}

Status Dmirror::range_snapshot(hmm::HmmRange& range, std::span<uint8_t> perm) {
  mm::Mm* mm = mirrored_mm();
  assert(mm != nullptr && "snapshot without the mirrored mm");
  SnapshotInterval ops(mutex_);
  hmm::MmuIntervalNotifier notifier;
  range.notifier = &notifier;
  TRY(notifier.insert(*mm, range.start, range.end - range.start, ops));

  const auto timeout = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(kHmmRangeDefaultTimeoutMs);
  Status ret = ok();
  while (true) {
    if (std::chrono::steady_clock::now() > timeout) {
      ret = make_error(Errno::kEBUSY, "range [{:#x}, {:#x}) kept changing for {} ms",
                       range.start.raw(), range.end.raw(), kHmmRangeDefaultTimeoutMs);
      break;
    }
    range.notifier_seq = notifier.read_begin();
    Status st = [&]() -> Status {
      ReadLocker l(mm->mmap_lock());
      return hmm::hmm_range_fault(*mm, range);
    }();
    if (st.is_error()) {
      if (st.error().code() == Errno::kEBUSY) continue;
      ret = st;
      break;
    }
    MutexLocker g(mutex_);
    if (notifier.read_retry(range.notifier_seq)) continue;
    const uint64_t n = (range.end - range.start) >> kPageShift;
    for (uint64_t i = 0; i < n; ++i) perm[i] = mkentry(range, range.hmm_pfns[i]);
    break;
  }
  notifier.remove();
  range.notifier = nullptr;
  return ret;
}

Status Dmirror::snapshot(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  const VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  if (mirrored_mm() == nullptr) return make_error(Errno::kEINVAL, "the mirrored process is gone");

  uint64_t pfns[kDmirrorFaultChunk];
  uint8_t perm[kDmirrorFaultChunk];
  hmm::HmmRange range;
  range.dev_private_owner = mdevice_.owner();  // default_flags = pfn_flags_mask = 0
  std::byte* uptr = nullptr;
  for (VirtAddr addr = start, next; addr < end; addr = next) {
    next = std::min(addr + kDmirrorFaultChunk * kPageSize, end);
    range.start = addr;
    range.end = next;
    const uint64_t n = (next - addr) >> kPageShift;
    range.hmm_pfns = std::span<uint64_t>(pfns, n);
    TRY(range_snapshot(range, std::span<uint8_t>(perm, n)));
    if (uptr == nullptr) {
      if (cmd.ptr == 0) return make_error(Errno::kEFAULT, "cmd.ptr is NULL");
      uptr = reinterpret_cast<std::byte*>(cmd.ptr);
    }
    std::memcpy(uptr, perm, n);
    cmd.cpages += n;
    uptr += n;
  }
  return ok();
}

}  // namespace dpmm::dmirror
