// The harness of the hmm selftest port: what tools/testing/selftests/mm/hmm-tests.c gets from
// the kselftest harness, libc and the kernel, modelled on dpmm.
//
// A kselftest case is a forked process that opens /dev/hmm_dmirrorN, maps memory, touches it
// with the CPU and drives the device with ioctls. Here each case gets a fresh machine
// (migrate::DeviceKernel under the design being tested), a fresh dmirror driver (module
// init), and a fresh model process with a small fd table:
//
//   original                           port
//   open("/dev/hmm_dmirrorN")          hmm_open(proc, N): DmirrorDriver::open -> an fd
//   ioctl(fd, HMM_DMIRROR_x, &cmd)      hmm_dmirror_cmd(proc, fd, DmirrorIoctl::kX, buffer, n)
//   close(fd)                          hmm_close(proc, fd): the file's release (eviction)
//   ptr[i] (a load or store)           cpu_load_ints / cpu_store_ints: the model CPU through
//                                      the process's page tables, a whole range per call
//   fork() / waitpid / _exit / kill    ModelChild: Process::fork, the child's body on a real
//                                      Thread, its return as the exit status
//   open(O_TMPFILE) + ftruncate        hmm_create_file: a shmem file in the fd table
//   malloc'ed mirror                   HmmBuffer::mirror, host memory (cmd.ptr is a host
//                                      pointer, as docs/dmirror.md says)
//
// See docs/hmm-selftests.md for every test and every difference from the original.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "base/result.h"
#include "base/thread.h"
#include "base/types.h"
#include "devmem/design.h"
#include "drivers/dmirror/dmirror.h"
#include "drivers/dmirror/uapi.h"
#include "migrate/device_kernel.h"
#include "mm/mman.h"
#include "mm/process.h"

#if __has_include("mm/shmem.h")
#include "mm/shmem.h"
#define DPMM_HMM_HAVE_SHMEM 1
#else
#define DPMM_HMM_HAVE_SHMEM 0
#endif

#if __has_include("mm/gup.h")
#include "mm/gup.h"
#define DPMM_HMM_HAVE_GUP 1
#else
#define DPMM_HMM_HAVE_GUP 0
#endif

// Features of the mm layer that no header announces; set by hand as they land.
#define DPMM_HMM_HAVE_MADVISE 1
#define DPMM_HMM_HAVE_MREMAP 1
#define DPMM_HMM_HAVE_DEVICE_FILE_MMAP 1

namespace dpmm::hmm_selftest {

// ---- constants of hmm-tests.c ----
inline constexpr uint64_t kOneKb = 1 << 10;
inline constexpr uint64_t kOneMeg = 1 << 20;
inline constexpr uint64_t kTwoMeg = 1 << 21;
inline constexpr uint64_t kHmmBufferSize = 1024 << 12;
inline constexpr int kNTimes = 10;
// FOLL_WRITE and FOLL_LONGTERM as the test defines them (include/linux/mm.h values).
inline constexpr uint32_t kFollWrite = 0x01;
inline constexpr uint32_t kFollLongterm = 0x100;

constexpr uint64_t align_up(uint64_t x, uint64_t a) { return (x + (a - 1)) & ~(a - 1); }

// The minors of the four dmirror devices (HMM_PRIVATE_DEVICE_ONE ...).
enum DeviceNumber : int {
  kHmmPrivateDeviceOne = 0,
  kHmmPrivateDeviceTwo = 1,
  kHmmCoherenceDeviceOne = 2,
  kHmmCoherenceDeviceTwo = 3,
};
inline bool hmm_is_coherent_type(int dev_num) { return dev_num >= kHmmCoherenceDeviceOne; }

// ---- parameters: design x fixture variant ----
enum class Variant : uint8_t { kPrivate, kCoherent };

struct HmmParam {
  devmem::Design design;
  Variant variant;
};

// gtest's printer for a parameter: "dpas-zone, coherent".
void PrintTo(const HmmParam& p, std::ostream* os);
// "legacy_private", "dpas_zone_coherent": gtest names cannot hold '-'.
std::string param_name(const ::testing::TestParamInfo<HmmParam>& info);
// Every design x both variants.
std::vector<HmmParam> all_params();

// ---- features dpmm does not model yet: the one place a test is skipped for that ----
enum class Feature : uint8_t {
  kPmdThp,         // PMD-mapped transparent huge pages (madvise MADV_COLLAPSE, PMD entries)
  kDeviceThp,      // device-private THP: PMD device-private entries, MIGRATE_VMA_SELECT_COMPOUND
  kShmemFiles,     // tmpfs files, MAP_SHARED file mappings, MAP_SHARED|MAP_ANONYMOUS
  kMremap,         // mremap(2)
  kMadvise,        // madvise(2)
  kDeviceFileMmap, // mmap of the dmirror device file (vm_insert_page, VM_MIXEDMAP)
};

// The reason `test` (the test's name without the parameter suffix) cannot run on dpmm today
// in `variant`, or an empty string when it can. Rows hold for all designs.
std::string unavailable_reason(std::string_view test, Variant variant);

// ---- errno as the original sees it ----
// The errno values of include/uapi/asm-generic/errno-base.h that the harness itself returns.
inline constexpr int kEBADF = 9;
inline constexpr int kEINTR = 4;

// ---- the model process and its fd table ----
// One open file: a dmirror device file or a shmem file.
struct OpenFile {
  std::unique_ptr<dmirror::DmirrorFile> dmirror;
#if DPMM_HMM_HAVE_SHMEM
  std::shared_ptr<mm::ShmemFile> shmem;
#endif
};

// A process of the test: an mm::Process and its open files. Descriptors start at 3, as
// stdin/stdout/stderr are taken. The files are closed before the process's mm goes (do_exit
// runs exit_mm before exit_files, but the dmirror file keeps its mm alive with mmgrab; dpmm's
// file refers to the Process directly, so the harness closes first).
class ModelProcess {
 public:
  ModelProcess(migrate::DeviceKernel& dk, dmirror::DmirrorDriver& driver,
               std::unique_ptr<mm::Process> process)
      : dk_(dk), driver_(driver), process_(std::move(process)) {}
  ~ModelProcess() { close_all(); }
  ModelProcess(const ModelProcess&) = delete;
  ModelProcess& operator=(const ModelProcess&) = delete;

  mm::Process& process() { return *process_; }
  mm::Mm& mm() { return process_->mm(); }
  migrate::DeviceKernel& device_kernel() { return dk_; }
  dmirror::DmirrorDriver& driver() { return driver_; }

  // fork(): the child has this process's memory (COW); its fd table starts empty. The
  // original's children inherit the parent's dmirror fd but never use it, and the last close
  // (the one that evicts) stays with the parent, so no behaviour depends on the copy.
  Result<std::unique_ptr<ModelProcess>> fork();

  int install(OpenFile f);
  OpenFile* file(int fd);
  // close(fd): 0, or -1 for a descriptor that is not open (EBADF).
  int close(int fd);
  void close_all();

 private:
  migrate::DeviceKernel& dk_;
  dmirror::DmirrorDriver& driver_;
  std::unique_ptr<mm::Process> process_;
  std::map<int, OpenFile> files_;
  int next_fd_ = 3;
};

// open("/dev/hmm_dmirror<unit>", O_RDWR): the fd, or -1 after printing the original's
// message to stderr (an absent coherent device, ENODEV).
int hmm_open(ModelProcess& p, int unit);

// ---- the buffer ----
struct HmmBuffer {
  VirtAddr ptr{0};                        // in the model process; 0 is NULL
  std::unique_ptr<std::byte[]> mirror;    // host memory, the device's side
  uint64_t mirror_size = 0;
  uint64_t size = 0;
  int fd = -1;
  uint64_t cpages = 0;
  uint64_t faults = 0;

  // The mirror as ints (the original's `ptr = buffer->mirror`).
  int32_t* mirror_ints() { return reinterpret_cast<int32_t*>(mirror.get()); }
  uint8_t* mirror_bytes() { return reinterpret_cast<uint8_t*>(mirror.get()); }
};

// malloc(sizeof(*buffer)) with fd -1; mirror = malloc(mirror_size) (contents undefined in the
// original: filled with 0xA5 here so a test that forgets to initialise it sees junk).
std::unique_ptr<HmmBuffer> hmm_buffer_alloc(uint64_t size, uint64_t mirror_size);
// hmm_buffer_free: munmap(ptr, size) when ptr is set; never closes buffer->fd.
void hmm_buffer_free(ModelProcess& p, std::unique_ptr<HmmBuffer> buffer);

// The fork of the test's own memory: the child's copy of `buffer` (same ptr, its own mirror).
std::unique_ptr<HmmBuffer> hmm_buffer_fork_copy(const HmmBuffer& buffer);

// hmm_dmirror_cmd: cmd = {addr = ptr, ptr = mirror, npages}; the ioctl, retried on EINTR;
// on success copies cpages/faults back; returns 0 or -errno. -EBADF for an fd that is not an
// open dmirror file.
int hmm_dmirror_cmd(ModelProcess& p, int fd, dmirror::DmirrorIoctl request, HmmBuffer& buffer,
                    uint64_t npages);
inline int hmm_migrate_sys_to_dev(ModelProcess& p, int fd, HmmBuffer& b, uint64_t npages) {
  return hmm_dmirror_cmd(p, fd, dmirror::DmirrorIoctl::kMigrateToDev, b, npages);
}
inline int hmm_migrate_dev_to_sys(ModelProcess& p, int fd, HmmBuffer& b, uint64_t npages) {
  return hmm_dmirror_cmd(p, fd, dmirror::DmirrorIoctl::kMigrateToSys, b, npages);
}

// hmm_create_file(size): a tmpfs file of `size` bytes in the fd table; -1 when it cannot be
// made.
int hmm_create_file(ModelProcess& p, uint64_t size);
// pread/pwrite on an fd from hmm_create_file: bytes moved, or -1.
int64_t hmm_pread(ModelProcess& p, int fd, std::span<std::byte> out, uint64_t offset);
int64_t hmm_pwrite(ModelProcess& p, int fd, std::span<const std::byte> in, uint64_t offset);

// ---- system calls the tests make, libc style: 0 (or the result), -1 on error ----
// MADV_* values (include/uapi/asm-generic/mman-common.h).
inline constexpr int kMadvFree = 8;
inline constexpr int kMadvHugepage = 14;
inline constexpr int kMadvNohugepage = 15;
inline constexpr int kMadvCollapse = 25;
int hmm_madvise(ModelProcess& p, VirtAddr addr, uint64_t len, int advice);
// MREMAP_* (include/uapi/linux/mman.h).
inline constexpr int kMremapMaymove = 1;
inline constexpr int kMremapFixed = 2;
inline constexpr int kMremapDontunmap = 4;
// mremap: the new address, or 0 standing for MAP_FAILED.
VirtAddr hmm_mremap(ModelProcess& p, VirtAddr old_addr, uint64_t old_len, uint64_t new_len,
                    int flags, VirtAddr new_addr);
// mmap(NULL, len, prot, flags, fd, 0) of an fd: the dmirror device file or a shmem file; 0
// stands for MAP_FAILED.
VirtAddr hmm_mmap_fd(ModelProcess& p, uint64_t len, mm::MmapProt prot, mm::MmapFlags flags,
                     int fd);

// ---- gup_test (mm/gup_test.c), the debugfs driver hmm_gup_test drives ----
enum class GupTestCmd : uint8_t {
  kGupFastBenchmark = 1,     // GUP_FAST_BENCHMARK
  kPinFastBenchmark = 2,     // PIN_FAST_BENCHMARK
  kPinLongtermBenchmark = 3, // PIN_LONGTERM_BENCHMARK
  kGupBasicTest = 4,         // GUP_BASIC_TEST
};
// open("/sys/kernel/debug/gup_test"): whether the GUP API exists in dpmm.
bool gup_test_available();
// gup_test_exec: the command on `npages` pages from addr with FOLL_WRITE | flags; 0 or the
// errno.
int gup_test_exec(ModelProcess& p, VirtAddr addr, GupTestCmd cmd, uint64_t npages,
                  uint64_t size, uint32_t flags);

// hmm_random: 4 random bytes (the original reads /dev/urandom).
uint32_t hmm_random();
void hmm_nanosleep(uint32_t n);

// read_pmd_pagesize (vm_util.c): /sys/kernel/mm/transparent_hugepage/hpage_pmd_size.
uint64_t read_pmd_pagesize(ModelProcess& p);
// hugetlb_free_default_pages (hugepage_settings.c): HugePages_Free of the default hstate
// (/proc/meminfo), read from the process's kernel.
uint64_t hugetlb_free_default_pages(ModelProcess& p);
// hugetlb_setup_default (hugepage_settings.c), run by HUGETLB_SETUP_DEFAULT_PAGES(1) before
// the tests: raises nr_hugepages until `nr` default huge pages are free (as far as memory
// allows).
void hugetlb_setup_default(mm::Kernel& kernel, uint64_t nr);
uint64_t default_huge_page_size();

// ---- CPU access: the test's `ptr[i]` through the model's MMU ----
// Loads ints [first, first + count) of the int array at `base`. A fault the kernel would
// deliver as a signal fails the test with the reason (the original would die of SIGSEGV).
Result<std::vector<int32_t>> cpu_load_ints(mm::Process& p, VirtAddr base, uint64_t first,
                                           uint64_t count);
// Stores `values` at ints [first, first + values.size()).
Status cpu_store_ints(mm::Process& p, VirtAddr base, uint64_t first,
                      std::span<const int32_t> values);
// Stores f(i) at each int i in [first, first + count).
Status cpu_store_pattern(mm::Process& p, VirtAddr base, uint64_t first, uint64_t count,
                         const std::function<int32_t(uint64_t)>& f);

// ---- fork()ed children ----
// waitpid's status, decoded (WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG).
struct WaitStatus {
  bool exited = false;
  int exit_status = 0;
  bool signaled = false;
  int term_sig = 0;
};
inline constexpr int kSigKill = 9;

class ModelChild;
// What a child's body sees: its process and the way out.
class ChildContext {
 public:
  ChildContext(ModelProcess& process, const std::atomic<bool>& killed)
      : process_(process), killed_(killed) {}
  ModelProcess& process() { return process_; }
  // _exit(status): records the status; the body returns right after.
  void exit(int status) {
    exit_status_ = status;
    exited_ = true;
  }
  // True once the parent sent SIGKILL; a busy loop polls it.
  bool killed() const { return killed_.load(std::memory_order_acquire); }

 private:
  friend class ModelChild;
  ModelProcess& process_;
  const std::atomic<bool>& killed_;
  bool exited_ = false;
  int exit_status_ = 0;
};

// A forked child running `body` on its own thread. A body that returns without exit() (an
// ASSERT failed in it) exits with status 1, as a kselftest child that fails and returns to the
// harness. Failures inside the body are gtest failures of the test (stricter than kselftest,
// where a child's failure is only printed unless the parent checks the exit status).
class ModelChild {
 public:
  static Result<std::unique_ptr<ModelChild>> fork(ModelProcess& parent,
                                                  std::function<void(ChildContext&)> body);
  ~ModelChild();
  // waitpid(pid, &status, 0): joins the thread, then the child's exit (files closed, mm torn
  // down).
  WaitStatus wait();
  // kill(pid, SIGKILL): the body stops at its next poll of killed(); 0.
  int kill(int sig);

 private:
  ModelChild() = default;
  std::unique_ptr<ModelProcess> process_;
  std::atomic<bool> killed_{false};
  std::unique_ptr<ChildContext> ctx_;
  Thread thread_;
  bool waited_ = false;
  WaitStatus status_;
};

// ---- the environment of one test case ----
// A fresh machine, driver and process. Destroyed in the order the real system would: files,
// processes, the module (rmmod), the machine.
class HmmEnv {
 public:
  static Result<std::unique_ptr<HmmEnv>> create(devmem::Design design);
  ~HmmEnv();
  ModelProcess& process() { return *process_; }
  migrate::DeviceKernel& device_kernel() { return *dk_; }
  dmirror::DmirrorDriver& driver() { return *driver_; }

 private:
  HmmEnv() = default;
  std::unique_ptr<migrate::DeviceKernel> dk_;
  std::unique_ptr<dmirror::DmirrorDriver> driver_;
  std::unique_ptr<ModelProcess> process_;
};

// The machine every case runs on (a built-in one; see docs/hmm-selftests.md for why).
inline constexpr std::string_view kHmmMachine = "workstation-46bit";

// Whether DPMM_HMM_BENCHMARK is set: benchmark_thp_migration prints its table only then.
bool benchmark_output_requested();

}  // namespace dpmm::hmm_selftest

// ASSERT that a Result/Status is ok, printing its error; for helpers returning Result.
#define HMM_ASSERT_OK(expr)                                                          \
  do {                                                                               \
    auto _hmm_r = (expr);                                                            \
    ASSERT_TRUE(_hmm_r.is_ok()) << #expr << ": " << _hmm_r.error().to_string();      \
  } while (0)

#define HMM_CONCAT_INNER(a, b) a##b
#define HMM_CONCAT(a, b) HMM_CONCAT_INNER(a, b)

// `auto var = value of expr`, ASSERTing it is ok.
#define HMM_ASSERT_OK_AND_ASSIGN(var, expr) \
  HMM_ASSERT_OK_AND_ASSIGN_IMPL(HMM_CONCAT(_hmm_res_, __LINE__), var, expr)
#define HMM_ASSERT_OK_AND_ASSIGN_IMPL(tmp, var, expr)                         \
  auto tmp = (expr);                                                          \
  ASSERT_TRUE(tmp.is_ok()) << #expr << ": " << tmp.error().to_string();       \
  auto var = std::move(tmp).value()
