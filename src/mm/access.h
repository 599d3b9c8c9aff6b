// CPU access through the page tables: what an MMU and a load/store unit do, for real threads.
//
// Each page of an access is translated by a lock-free walk of the four levels (atomic entry
// loads, as a hardware walker reads memory), checked against the decoded PTE (present to the
// MMU, user, writable for a store, executable for a fetch), and given its accessed bit and,
// for a store, its dirty bit by compare-and-swap, as x86 and arm64 (hardware DBM) set them.
// The bytes are then copied under the same Mm::HwWalk, which stands for the TLB entry: a TLB
// flush waits for it.
//
// On a miss the access takes mmap_lock for read, calls handle_mm_fault and retries the walk;
// the loop is the caller's retry owner for FaultOutcome::kHandled/kRetry. SIGSEGV and SIGBUS
// come back as EFAULT, OOM as ENOMEM, each naming the address and the reason.
//
// REQUIRES for every function: the calling thread holds no mmap_lock of this Mm (the fault
// path takes it) and is not inside a HwWalk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "base/types.h"
#include "mm/mm.h"

namespace dpmm::mm {

enum class AccessKind : uint8_t { kRead, kWrite, kExec };

Status cpu_read(Mm& mm, VirtAddr addr, std::span<std::byte> out);
Status cpu_write(Mm& mm, VirtAddr addr, std::span<const std::byte> in);
// memset through the MMU.
Status cpu_fill(Mm& mm, VirtAddr addr, uint64_t len, std::byte value);
// An instruction fetch of one byte (FAULT_FLAG_INSTRUCTION on a miss).
Result<std::byte> cpu_fetch(Mm& mm, VirtAddr addr);

// Naturally aligned words are single-copy atomic, as on both arches: a racing store from
// another thread is seen whole or not at all. Unaligned words fall back to byte copies.
Result<uint32_t> cpu_read_u32(Mm& mm, VirtAddr addr);
Result<uint64_t> cpu_read_u64(Mm& mm, VirtAddr addr);
Status cpu_write_u32(Mm& mm, VirtAddr addr, uint32_t value);
Status cpu_write_u64(Mm& mm, VirtAddr addr, uint64_t value);

}  // namespace dpmm::mm
