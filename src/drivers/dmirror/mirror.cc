// struct dmirror: open/release, the invalidate callback, READ, WRITE and the device fault
// path (lib/test_hmm.c dmirror_fops_open, dmirror_fops_release, dmirror_interval_invalidate,
// dmirror_read, dmirror_write, dmirror_fault, dmirror_range_fault, dmirror_do_fault,
// dmirror_do_read, dmirror_do_write, dmirror_check_atomic).
#include "drivers/dmirror/mirror.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>

#include "drivers/dmirror/copy_engine.h"
#include "drivers/dmirror/dmirror_device.h"
#include "hmm/hmm_pfn.h"
#include "migrate/device_kernel.h"
#include "mm/process.h"

namespace dpmm::dmirror {

namespace {

uint64_t vpn(VirtAddr a) { return a.raw() >> kPageShift; }

// The host buffer behind cmd.ptr (a user pointer in the kernel; docs/dmirror.md). A null
// pointer faults, as copy_to_user / copy_from_user of NULL does.
Result<std::byte*> host_buffer(uint64_t ptr) {
  if (ptr == 0) return make_error(Errno::kEFAULT, "cmd.ptr is NULL");
  return reinterpret_cast<std::byte*>(ptr);
}

}  // namespace

Dmirror::Dmirror(DmirrorDevice& mdevice, mm::Process& process)
    : mdevice_(mdevice), process_(process) {}

Dmirror::~Dmirror() {
  assert(!notifier_.is_inserted() && "dmirror destroyed without release()");
}

Status Dmirror::open() {
  // mmu_interval_notifier_insert(&dmirror->notifier, current->mm, 0, ULONG_MAX & PAGE_MASK).
  return notifier_.insert(process_.mm(), VirtAddr(0), ~uint64_t{0} & ~(kPageSize - 1), *this);
}

void Dmirror::release() {
  notifier_.remove();
  mdevice_.evict_chunks();
  MutexLocker g(mutex_);
  pt_.clear();
}

DevicePageTable Dmirror::pt_snapshot() {
  MutexLocker g(mutex_);
  return pt_;
}

bool Dmirror::invalidate(hmm::MmuIntervalNotifier& sub, const mm::MmuNotifierRange& range,
                         uint64_t cur_seq) {
  // This device's own migrations update pt as they go (finalize_and_map, and the erase in
  // devmem_fault_alloc_and_copy), so their MMU_NOTIFY_MIGRATE ranges are skipped.
  if (range.event == mm::MmuNotifyEvent::kMigrate && range.owner == mdevice_.owner()) {
    return true;
  }
  if (range.blockable()) {
    mutex_.lock();
  } else if (!mutex_.try_lock()) {
    return false;
  }
  sub.set_seq(cur_seq);
  // xa_for_each_range(start >> PAGE_SHIFT, end >> PAGE_SHIFT): both ends inclusive.
  pt_.erase_range(vpn(range.start), vpn(range.end));
  mutex_.unlock();
  return true;
}

// ---- device faults (hmm_range_fault) ----

Status Dmirror::do_fault(const hmm::HmmRange& range) {
  const devmem::DeviceMemory& dm = mdevice_.device_kernel().device_memory();
  uint64_t i = 0;
  for (uint64_t pfn = vpn(range.start); pfn < vpn(range.end); ++pfn, ++i) {
    const uint64_t w = range.hmm_pfns[i];
    // hmm_range_fault populated every page it was asked to: an ERROR or invalid answer
    // after success is a bug below (the kernel WARNs).
    assert((w & hmm::kHmmPfnError) == 0 && "hmm_range_fault answered ERROR on success");
    assert((w & hmm::kHmmPfnValid) != 0 && "hmm_range_fault answered !VALID on success");
    page::Page* page = MUST(hmm::hmm_pfn_to_page(dm, w), "page of a VALID hmm_pfn");
    // An owned device-private page is reported, not faulted. The kernel stores that page
    // itself, whose kmap is not its data; dpmm stores the backing page that holds the data,
    // as migrate_finalize_and_map does (docs/dmirror.md).
    if (devmem::is_device_private_page(page)) {
      assert(DmirrorDevice::page_to_device(page) == &mdevice_ && "a foreign page reported");
      page = mdevice_.backing_page(page);
    }
    DptEntry e{page, DptTag::kRead};
    if ((w & hmm::kHmmPfnWrite) != 0) {
      e.tag = DptTag::kWrite;
    } else if ((range.default_flags & hmm::kHmmPfnReqWrite) != 0) {
      // An owned read-only device-private entry is answered without WRITE even when WRITE was
      // requested (kernel-baseline §6); the kernel WARNs and fails the command.
      return make_error(Errno::kEFAULT,
                        "write requested at {:#x} but hmm_range_fault granted read only",
                        pfn << kPageShift);
    }
    pt_.store(pfn, e);
  }
  return ok();
}

Status Dmirror::range_fault(hmm::HmmRange& range) {
  mm::Mm* mm = mirrored_mm();
  assert(mm != nullptr && "range_fault without the mirrored mm");
  const auto timeout = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(kHmmRangeDefaultTimeoutMs);
  while (true) {
    if (std::chrono::steady_clock::now() > timeout) {
      return make_error(Errno::kEBUSY, "range [{:#x}, {:#x}) kept changing for {} ms",
                        range.start.raw(), range.end.raw(), kHmmRangeDefaultTimeoutMs);
    }
    range.notifier_seq = range.notifier->read_begin();
    Status st = [&]() -> Status {
      ReadLocker l(mm->mmap_lock());
      return hmm::hmm_range_fault(*mm, range);
    }();
    if (st.is_error()) {
      if (st.error().code() == Errno::kEBUSY) continue;
      return st;
    }
    MutexLocker g(mutex_);
    if (range.notifier->read_retry(range.notifier_seq)) continue;
    return do_fault(range);
  }
}

Status Dmirror::fault(VirtAddr start, VirtAddr end, FaultWrite write) {
  // mmget_not_zero failing: the kernel returns 0, and its READ/WRITE loop would then find the
  // same hole forever. dpmm ends the command instead (docs/dmirror.md).
  if (mirrored_mm() == nullptr) {
    return make_error(Errno::kEFAULT, "the mirrored process is gone");
  }
  uint64_t pfns[kDmirrorFaultChunk];
  hmm::HmmRange range;
  range.notifier = &notifier_;
  range.pfn_flags_mask = 0;
  range.default_flags =
      hmm::kHmmPfnReqFault | (write == FaultWrite::kYes ? hmm::kHmmPfnReqWrite : 0);
  range.dev_private_owner = mdevice_.owner();
  for (VirtAddr addr = start; addr < end; addr = range.end) {
    range.start = addr;
    range.end = std::min(addr + kDmirrorFaultChunk * kPageSize, end);
    range.hmm_pfns = std::span<uint64_t>(pfns, (range.end - range.start) >> kPageShift);
    TRY(range_fault(range));
  }
  return ok();
}

// ---- READ / WRITE ----

Status Dmirror::do_read(VirtAddr start, VirtAddr end, Bounce& bounce) {
  std::byte* ptr = bounce.buf.get() + ((start - bounce.addr) & ~(kPageSize - 1));
  for (uint64_t pfn = vpn(start); pfn < vpn(end); ++pfn) {
    const DptEntry* e = pt_.load(pfn);
    if (e == nullptr) return make_error(Errno::kENOENT, "no device mapping at {:#x}", pfn << 12);
    // memcpy_from_page: the entry's page holds the data (a system page, a coherent page or
    // the backing page of a device-private one).
    mdevice_.engine().copy(std::span<std::byte>(ptr, kPageSize),
                           mdevice_.cpu_page_bytes(e->page));
    ptr += kPageSize;
    ++bounce.cpages;
  }
  return ok();
}

Status Dmirror::do_write(VirtAddr start, VirtAddr end, Bounce& bounce) {
  const std::byte* ptr = bounce.buf.get() + ((start - bounce.addr) & ~(kPageSize - 1));
  for (uint64_t pfn = vpn(start); pfn < vpn(end); ++pfn) {
    const DptEntry* e = pt_.load(pfn);
    if (e == nullptr || e->tag != DptTag::kWrite) {
      return make_error(Errno::kENOENT, "no writable device mapping at {:#x}", pfn << 12);
    }
    mdevice_.engine().copy(mdevice_.cpu_page_bytes(e->page),
                           std::span<const std::byte>(ptr, kPageSize));
    ptr += kPageSize;
    ++bounce.cpages;
  }
  return ok();
}

Status Dmirror::read(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  Bounce bounce(start, size);
  Status ret = ok();
  while (true) {
    {
      MutexLocker g(mutex_);
      ret = do_read(start, end, bounce);
    }
    if (ret.is_ok() || ret.error().code() != Errno::kENOENT) break;
    start = VirtAddr(cmd.addr) + (bounce.cpages << kPageShift);
    ret = fault(start, end, FaultWrite::kNo);
    if (ret.is_error()) break;
    ++cmd.faults;
  }
  if (ret.is_ok()) {
    Result<std::byte*> out = host_buffer(cmd.ptr);
    if (out.is_error()) {
      ret = out.error();
    } else {
      std::memcpy(*out, bounce.buf.get(), bounce.size);
    }
  }
  cmd.cpages = bounce.cpages;
  return ret;
}

Status Dmirror::write(HmmDmirrorCmd& cmd) {
  const uint64_t size = cmd.npages << kPageShift;
  VirtAddr start(cmd.addr);
  const VirtAddr end(cmd.addr + size);
  if (end < start) return make_error(Errno::kEINVAL, "range wraps");
  Bounce bounce(start, size);
  const std::byte* in = TRY(host_buffer(cmd.ptr));
  std::memcpy(bounce.buf.get(), in, size);
  Status ret = ok();
  while (true) {
    {
      MutexLocker g(mutex_);
      ret = do_write(start, end, bounce);
    }
    if (ret.is_ok() || ret.error().code() != Errno::kENOENT) break;
    start = VirtAddr(cmd.addr) + (bounce.cpages << kPageShift);
    ret = fault(start, end, FaultWrite::kYes);
    if (ret.is_error()) break;
    ++cmd.faults;
  }
  cmd.cpages = bounce.cpages;
  return ret;
}

Status Dmirror::read_back(HmmDmirrorCmd& cmd, VirtAddr start, VirtAddr end) {
  Bounce bounce(start, end - start);
  Status ret = ok();
  {
    MutexLocker g(mutex_);
    ret = do_read(start, end, bounce);
  }
  if (ret.is_ok()) {
    Result<std::byte*> out = host_buffer(cmd.ptr);
    if (out.is_error()) {
      ret = out.error();
    } else {
      std::memcpy(*out, bounce.buf.get(), bounce.size);
    }
  }
  cmd.cpages = bounce.cpages;
  return ret;
}

Status Dmirror::check_atomic(VirtAddr start, VirtAddr end) {
  MutexLocker g(mutex_);
  for (uint64_t pfn = vpn(start); pfn < vpn(end); ++pfn) {
    const DptEntry* e = pt_.load(pfn);
    if (e != nullptr && e->tag == DptTag::kAtomic) {
      return make_error(Errno::kEPERM, "{:#x} is still mapped for device atomics", pfn << 12);
    }
  }
  return ok();
}

}  // namespace dpmm::dmirror
