#include "mm/access.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "arch/decoded_entry.h"
#include "mm/fault.h"

namespace dpmm::mm {
namespace {

using arch::DecodedEntry;
using arch::EntryLevel;
using arch::Prot;

// The MMU's view of one upper-level entry: the next table, if the entry is a table.
std::optional<EntrySlot> next_level(const PageTable& pt, PtLevel child, EntrySlot e,
                                    VirtAddr addr) {
  switch (child) {
    case PtLevel::kPud: return pt.pud_offset(e, addr);
    case PtLevel::kPmd: return pt.pmd_offset(e, addr);
    case PtLevel::kPte: return pt.pte_offset(e, addr);
    case PtLevel::kPgd: break;
  }
  return std::nullopt;
}

// Walks and checks; on success runs `copy` on the page's bytes from `addr` on, inside the
// walk. Returns false on a miss (the caller faults and retries).
template <typename Copy>
bool try_access_page(Mm& mm, VirtAddr addr, AccessKind kind, Copy&& copy) {
  const Kernel& k = mm.kernel();
  const PageTable& pt = mm.page_table();
  Mm::HwWalk walk(mm);
  std::optional<EntrySlot> e = pt.pgd_offset(addr);
  EntryLevel level = EntryLevel::kPte;
  for (PtLevel child : {PtLevel::kPud, PtLevel::kPmd, PtLevel::kPte}) {
    if (child == PtLevel::kPte) {
      // A PMD leaf translates the whole 2 MiB (one TLB entry per 4 KiB subpage here).
      const DecodedEntry pmd = k.codec().decode(EntryLevel::kPmd, e->load());
      if (pmd.kind == DecodedEntry::Kind::kPresent) {
        level = EntryLevel::kPmd;
        break;
      }
    }
    e = next_level(pt, child, *e, addr);
    if (!e) return false;
  }
  uint64_t word = e->load();
  while (true) {
    const DecodedEntry d = k.codec().decode(level, word);
    if (d.kind != DecodedEntry::Kind::kPresent || !d.hw_valid) return false;
    if (!arch::has(d.prot, Prot::kUser)) return false;
    if (kind == AccessKind::kWrite && !arch::has(d.prot, Prot::kWrite)) return false;
    if (kind == AccessKind::kExec && !arch::has(d.prot, Prot::kExec)) return false;
    Prot want = d.prot | Prot::kAccessed;
    if (kind == AccessKind::kWrite) want = want | Prot::kDirty;
    if (want != d.prot) {
      const uint64_t updated = MUST(k.codec().make_present(level, d.pfn, want),
                                    "adding accessed/dirty to a valid entry encodes");
      if (!e->compare_exchange(word, updated)) continue;  // changed under us: re-check
    }
    const Pfn pfn = level == EntryLevel::kPmd
                        ? d.pfn + PageCount(pt_index(PtLevel::kPte, addr))
                        : d.pfn;
    std::span<std::byte> bytes = k.page_bytes(pfn).subspan(addr.offset_in_page());
    copy(bytes);
    return true;
  }
}

Status fault_error(VirtAddr addr, AccessKind kind, const FaultResult& r) {
  const char* what = kind == AccessKind::kWrite ? "write" : kind == AccessKind::kExec ? "fetch"
                                                                                       : "read";
  if (r.outcome == FaultOutcome::kOom)
    return make_error(Errno::kENOMEM, "{} at {}: out of memory ({})", what, addr, r.reason);
  return make_error(Errno::kEFAULT, "{} at {}: {} ({})", what, addr,
                    fault_outcome_name(r.outcome), r.reason);
}

FaultFlags fault_flags_for(AccessKind kind) {
  switch (kind) {
    case AccessKind::kRead: return FaultFlags::kUser;
    case AccessKind::kWrite: return FaultFlags::kUser | FaultFlags::kWrite;
    case AccessKind::kExec: return FaultFlags::kUser | FaultFlags::kInstruction;
  }
  return FaultFlags::kUser;
}

// One page of an access: translate, faulting until the translation allows it.
template <typename Copy>
Status access_page(Mm& mm, VirtAddr addr, AccessKind kind, Copy&& copy) {
  while (!try_access_page(mm, addr, kind, copy)) {
    FaultResult r;
    {
      ReadLocker guard(mm.mmap_lock());
      r = handle_mm_fault(mm, addr, fault_flags_for(kind));
    }
    if (r.is_error()) return fault_error(addr, kind, r);
  }
  return ok();
}

// Splits [addr, addr + len) at page boundaries and runs `per_page(addr, offset, n)` on each.
template <typename PerPage>
Status for_each_page(VirtAddr addr, uint64_t len, PerPage&& per_page) {
  uint64_t done = 0;
  while (done < len) {
    const VirtAddr a = addr + done;
    const uint64_t n = std::min<uint64_t>(len - done, kPageSize - a.offset_in_page());
    TRY(per_page(a, done, n));
    done += n;
  }
  return ok();
}

}  // namespace

Status cpu_read(Mm& mm, VirtAddr addr, std::span<std::byte> out) {
  return for_each_page(addr, out.size(), [&](VirtAddr a, uint64_t off, uint64_t n) {
    return access_page(mm, a, AccessKind::kRead, [&](std::span<std::byte> bytes) {
      std::memcpy(out.data() + off, bytes.data(), n);
    });
  });
}

Status cpu_write(Mm& mm, VirtAddr addr, std::span<const std::byte> in) {
  return for_each_page(addr, in.size(), [&](VirtAddr a, uint64_t off, uint64_t n) {
    return access_page(mm, a, AccessKind::kWrite, [&](std::span<std::byte> bytes) {
      std::memcpy(bytes.data(), in.data() + off, n);
    });
  });
}

Status cpu_fill(Mm& mm, VirtAddr addr, uint64_t len, std::byte value) {
  return for_each_page(addr, len, [&](VirtAddr a, uint64_t, uint64_t n) {
    return access_page(mm, a, AccessKind::kWrite, [&](std::span<std::byte> bytes) {
      std::memset(bytes.data(), static_cast<int>(value), n);
    });
  });
}

Result<std::byte> cpu_fetch(Mm& mm, VirtAddr addr) {
  std::byte b{};
  TRY(access_page(mm, addr, AccessKind::kExec, [&](std::span<std::byte> bytes) { b = bytes[0]; }));
  return b;
}

namespace {

template <typename T>
Result<T> read_word(Mm& mm, VirtAddr addr) {
  if (!addr.is_aligned(sizeof(T))) {
    T v{};
    TRY(cpu_read(mm, addr, std::as_writable_bytes(std::span<T, 1>(&v, 1))));
    return v;
  }
  T v{};
  TRY(access_page(mm, addr, AccessKind::kRead, [&](std::span<std::byte> bytes) {
    v = std::atomic_ref<T>(*reinterpret_cast<T*>(bytes.data())).load(std::memory_order_relaxed);
  }));
  return v;
}

template <typename T>
Status write_word(Mm& mm, VirtAddr addr, T value) {
  if (!addr.is_aligned(sizeof(T)))
    return cpu_write(mm, addr, std::as_bytes(std::span<const T, 1>(&value, 1)));
  return access_page(mm, addr, AccessKind::kWrite, [&](std::span<std::byte> bytes) {
    std::atomic_ref<T>(*reinterpret_cast<T*>(bytes.data())).store(value, std::memory_order_relaxed);
  });
}

}  // namespace

Result<uint32_t> cpu_read_u32(Mm& mm, VirtAddr addr) { return read_word<uint32_t>(mm, addr); }
Result<uint64_t> cpu_read_u64(Mm& mm, VirtAddr addr) { return read_word<uint64_t>(mm, addr); }
Status cpu_write_u32(Mm& mm, VirtAddr addr, uint32_t value) {
  return write_word<uint32_t>(mm, addr, value);
}
Status cpu_write_u64(Mm& mm, VirtAddr addr, uint64_t value) {
  return write_word<uint64_t>(mm, addr, value);
}

}  // namespace dpmm::mm
