// The user-visible interface of the dmirror test driver (lib/test_hmm_uapi.h).
//
// The kernel's ioctls are _IOWR('H', nr, struct hmm_dmirror_cmd); dpmm passes the command
// number `nr` as DmirrorIoctl and the command by reference (DmirrorFile::ioctl in dmirror.h).
//
// `addr` is a virtual address in the process the file mirrors (the model process); `ptr` is a
// HOST pointer (the address of a host buffer as an integer) that the driver copies to or from:
// the selftest's `mirror` buffer. In the kernel `ptr` is a user pointer of the calling process
// (copy_to_user / copy_from_user); dpmm keeps the test's mirror buffer in host memory
// (docs/dmirror.md).
#pragma once

#include <cstdint>

namespace dpmm::dmirror {

// struct hmm_dmirror_cmd.
//   addr    start of the range (page aligned) in the mirrored process
//   ptr     host buffer: READ/MIGRATE/EXCLUSIVE copy device data into it, WRITE reads it,
//           SNAPSHOT writes one byte per page
//   npages  pages in the range (FLAGS: the new flag word)
//   cpages  out: pages the command processed
//   faults  out: fault rounds READ/WRITE needed
struct HmmDmirrorCmd {
  uint64_t addr = 0;
  uint64_t ptr = 0;
  uint64_t npages = 0;
  uint64_t cpages = 0;
  uint64_t faults = 0;
};

// HMM_DMIRROR_* command numbers (the `nr` of _IOWR('H', nr, struct hmm_dmirror_cmd)).
enum class DmirrorIoctl : uint32_t {
  kRead = 0x00,            // HMM_DMIRROR_READ
  kWrite = 0x01,           // HMM_DMIRROR_WRITE
  kMigrateToDev = 0x02,    // HMM_DMIRROR_MIGRATE_TO_DEV
  kMigrateToSys = 0x03,    // HMM_DMIRROR_MIGRATE_TO_SYS
  kSnapshot = 0x04,        // HMM_DMIRROR_SNAPSHOT
  kExclusive = 0x05,       // HMM_DMIRROR_EXCLUSIVE
  kCheckExclusive = 0x06,  // HMM_DMIRROR_CHECK_EXCLUSIVE
  kRelease = 0x07,         // HMM_DMIRROR_RELEASE
  kFlags = 0x08,           // HMM_DMIRROR_FLAGS
};

// HMM_DMIRROR_FLAG_FAIL_ALLOC: the next device or system page allocation of a migration fails
// once (one-shot; a large allocation falls back to base pages).
inline constexpr uint64_t kHmmDmirrorFlagFailAlloc = uint64_t{1} << 0;

// HMM_DMIRROR_PROT_*: the bytes SNAPSHOT writes, one per page.
inline constexpr uint8_t kHmmDmirrorProtError = 0xFF;
inline constexpr uint8_t kHmmDmirrorProtNone = 0x00;
inline constexpr uint8_t kHmmDmirrorProtRead = 0x01;
inline constexpr uint8_t kHmmDmirrorProtWrite = 0x02;
inline constexpr uint8_t kHmmDmirrorProtPmd = 0x04;
inline constexpr uint8_t kHmmDmirrorProtPud = 0x08;
inline constexpr uint8_t kHmmDmirrorProtZero = 0x10;
inline constexpr uint8_t kHmmDmirrorProtDevPrivateLocal = 0x20;
inline constexpr uint8_t kHmmDmirrorProtDevPrivateRemote = 0x30;
inline constexpr uint8_t kHmmDmirrorProtDevCoherentLocal = 0x40;
inline constexpr uint8_t kHmmDmirrorProtDevCoherentRemote = 0x50;

// HMM_DMIRROR_MEMORY_DEVICE_PRIVATE / _COHERENT: the kind of memory a minor's device has
// (0 stays "no device", as dmirror_device.zone_device_type).
enum class DmirrorMemoryType : uint8_t {
  kDevicePrivate = 1,
  kDeviceCoherent = 2,
};

// The selftest's device numbers: minor 0/1 are device-private, 2/3 device-coherent (present
// only when the platform has the special-purpose memory for them).
enum DmirrorMinor : unsigned {
  kPrivateDeviceOne = 0,
  kPrivateDeviceTwo = 1,
  kCoherenceDeviceOne = 2,
  kCoherenceDeviceTwo = 3,
};

// DMIRROR_NDEVICES.
inline constexpr unsigned kDmirrorNDevices = 4;

}  // namespace dpmm::dmirror
