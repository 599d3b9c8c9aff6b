#include "hmm_harness.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "base/bits.h"
#include "mm/hstate.h"
#include "phys/builtin_machines.h"

namespace dpmm::hmm_selftest {

std::string param_name(const ::testing::TestParamInfo<HmmParam>& info) {
  std::string n(devmem::design_name(info.param.design));
  for (char& ch : n) ch = ch == '-' ? '_' : ch;
  n += info.param.variant == Variant::kPrivate ? "_private" : "_coherent";
  return n;
}

void PrintTo(const HmmParam& p, std::ostream* os) {
  *os << devmem::design_name(p.design) << ", "
      << (p.variant == Variant::kPrivate ? "private" : "coherent");
}

std::vector<HmmParam> all_params() {
  std::vector<HmmParam> v;
  for (devmem::Design d : devmem::kAllDesigns) {
    v.push_back({d, Variant::kPrivate});
    v.push_back({d, Variant::kCoherent});
  }
  return v;
}

// ---- ModelProcess ----

Result<std::unique_ptr<ModelProcess>> ModelProcess::fork() {
  std::unique_ptr<mm::Process> child = TRY(process_->fork());
  return std::make_unique<ModelProcess>(dk_, driver_, std::move(child));
}

int ModelProcess::install(OpenFile f) {
  const int fd = next_fd_++;
  files_.emplace(fd, std::move(f));
  return fd;
}

OpenFile* ModelProcess::file(int fd) {
  auto it = files_.find(fd);
  return it == files_.end() ? nullptr : &it->second;
}

int ModelProcess::close(int fd) {
  auto it = files_.find(fd);
  if (it == files_.end()) return -1;
  files_.erase(it);  // the last reference: dmirror_fops_release / the shmem file's put
  return 0;
}

void ModelProcess::close_all() {
  // Highest fd first, as close_files walks the table (the order does not matter to dmirror).
  while (!files_.empty()) files_.erase(std::prev(files_.end()));
}

int hmm_open(ModelProcess& p, int unit) {
  Result<std::unique_ptr<dmirror::DmirrorFile>> f =
      p.driver().open(p.process(), static_cast<unsigned>(unit));
  if (f.is_error()) {
    std::fprintf(stderr, "could not open hmm dmirror driver (/dev/hmm_dmirror%d)\n", unit);
    return -1;
  }
  OpenFile of;
  of.dmirror = std::move(f).value();
  return p.install(std::move(of));
}

// ---- buffers ----

std::unique_ptr<HmmBuffer> hmm_buffer_alloc(uint64_t size, uint64_t mirror_size) {
  auto b = std::make_unique<HmmBuffer>();
  b->fd = -1;
  b->size = size;
  b->mirror_size = mirror_size;
  // Whole pages: hmm2.snapshot's mirror is malloc(npages) = 7 bytes, yet its MIGRATE_TO_DEV
  // of one page copies the page's 4 KiB back into it (dmirror_migrate_to_device returns the
  // data for verification). glibc's heap absorbs that overflow in the original; here the
  // allocation is rounded up so the copy stays inside it.
  const uint64_t alloc = align_up(mirror_size, kPageSize);
  b->mirror = std::make_unique<std::byte[]>(alloc);
  std::memset(b->mirror.get(), 0xA5, alloc);
  return b;
}

void hmm_buffer_free(ModelProcess& p, std::unique_ptr<HmmBuffer> buffer) {
  if (!buffer) return;
  if (buffer->ptr.raw() != 0) {
    // The original ignores munmap's result; so does the port.
    (void)p.process().munmap(buffer->ptr, buffer->size);
    buffer->ptr = VirtAddr(0);
  }
}

std::unique_ptr<HmmBuffer> hmm_buffer_fork_copy(const HmmBuffer& buffer) {
  auto b = std::make_unique<HmmBuffer>();
  b->ptr = buffer.ptr;
  b->size = buffer.size;
  b->fd = buffer.fd;
  b->cpages = buffer.cpages;
  b->faults = buffer.faults;
  b->mirror_size = buffer.mirror_size;
  b->mirror = std::make_unique<std::byte[]>(align_up(buffer.mirror_size, kPageSize));
  std::memcpy(b->mirror.get(), buffer.mirror.get(), buffer.mirror_size);
  return b;
}

int hmm_dmirror_cmd(ModelProcess& p, int fd, dmirror::DmirrorIoctl request, HmmBuffer& buffer,
                    uint64_t npages) {
  OpenFile* f = p.file(fd);
  if (f == nullptr || !f->dmirror) return -kEBADF;
  dmirror::HmmDmirrorCmd cmd;
  cmd.addr = buffer.ptr.raw();
  cmd.ptr = reinterpret_cast<uint64_t>(buffer.mirror.get());
  cmd.npages = npages;
  for (;;) {
    const int64_t ret = f->dmirror->ioctl(request, cmd);
    if (ret == 0) break;
    if (ret == -kEINTR) continue;
    return static_cast<int>(ret);
  }
  buffer.cpages = cmd.cpages;
  buffer.faults = cmd.faults;
  return 0;
}

// ---- files ----

int hmm_create_file(ModelProcess& p, uint64_t size) {
#if DPMM_HMM_HAVE_SHMEM
  auto f = mm::ShmemFile::create(p.process().kernel(), size);
  if (f.is_error()) return -1;
  OpenFile of;
  of.shmem = std::move(f).value();
  return p.install(std::move(of));
#else
  (void)p;
  (void)size;
  return -1;
#endif
}

int64_t hmm_pread(ModelProcess& p, int fd, std::span<std::byte> out, uint64_t offset) {
#if DPMM_HMM_HAVE_SHMEM
  OpenFile* f = p.file(fd);
  if (f == nullptr || !f->shmem) return -1;
  auto n = f->shmem->pread(out, offset);
  if (n.is_error()) return -1;
  return static_cast<int64_t>(n.value());
#else
  (void)p;
  (void)fd;
  (void)out;
  (void)offset;
  return -1;
#endif
}

int64_t hmm_pwrite(ModelProcess& p, int fd, std::span<const std::byte> in, uint64_t offset) {
#if DPMM_HMM_HAVE_SHMEM
  OpenFile* f = p.file(fd);
  if (f == nullptr || !f->shmem) return -1;
  auto n = f->shmem->pwrite(in, offset);
  if (n.is_error()) return -1;
  return static_cast<int64_t>(n.value());
#else
  (void)p;
  (void)fd;
  (void)in;
  (void)offset;
  return -1;
#endif
}

// ---- system calls ----

int hmm_madvise(ModelProcess& p, VirtAddr addr, uint64_t len, int advice) {
#if DPMM_HMM_HAVE_MADVISE
  Status s = p.mm().madvise(addr, len, static_cast<mm::Madvise>(advice));
  return s.is_ok() ? 0 : -1;
#else
  (void)p;
  (void)addr;
  (void)len;
  (void)advice;
  return -1;  // ENOSYS
#endif
}

VirtAddr hmm_mremap(ModelProcess& p, VirtAddr old_addr, uint64_t old_len, uint64_t new_len,
                    int flags, VirtAddr new_addr) {
#if DPMM_HMM_HAVE_MREMAP
  Result<VirtAddr> r = p.mm().mremap(old_addr, old_len, new_len,
                                          static_cast<mm::MremapFlags>(flags), new_addr);
  return r.is_ok() ? r.value() : VirtAddr(0);
#else
  (void)p;
  (void)old_addr;
  (void)old_len;
  (void)new_len;
  (void)flags;
  (void)new_addr;
  return VirtAddr(0);
#endif
}

VirtAddr hmm_mmap_fd(ModelProcess& p, uint64_t len, mm::MmapProt prot, mm::MmapFlags flags,
                     int fd) {
  OpenFile* f = p.file(fd);
  if (f == nullptr) return VirtAddr(0);
  if (f->dmirror) {
    Result<VirtAddr> r = f->dmirror->mmap(len, prot, flags);
    return r.is_ok() ? r.value() : VirtAddr(0);
  }
#if DPMM_HMM_HAVE_SHMEM
  if (f->shmem) {
    Result<VirtAddr> r = p.mm().mmap(VirtAddr(0), len, prot, flags, f->shmem, 0);
    return r.is_ok() ? r.value() : VirtAddr(0);
  }
#endif
  return VirtAddr(0);
}

bool gup_test_available() { return DPMM_HMM_HAVE_GUP != 0; }

int gup_test_exec(ModelProcess& p, VirtAddr addr, GupTestCmd cmd, uint64_t npages,
                  uint64_t size, uint32_t flags) {
#if DPMM_HMM_HAVE_GUP
  (void)size;
  mm::Mm& mm = p.mm();
  const mm::FollFlags gup_flags = static_cast<mm::FollFlags>(kFollWrite | flags);
  switch (cmd) {
    case GupTestCmd::kGupBasicTest:
    case GupTestCmd::kGupFastBenchmark: {
      // get_user_pages / get_user_pages_fast, then put_page on each.
      Result<std::vector<page::Page*>> pages = [&] {
        ReadLocker l(mm.mmap_lock());
        return mm::get_user_pages_remote(mm, addr, npages, gup_flags);
      }();
      if (pages.is_error()) return static_cast<int>(pages.error().code());
      for (page::Page* pg : pages.value()) mm::put_user_page(pg);
      return 0;
    }
    case GupTestCmd::kPinFastBenchmark:
    case GupTestCmd::kPinLongtermBenchmark: {
      // pin_user_pages_fast(flags) / pin_user_pages(flags | FOLL_LONGTERM), then unpin.
      const mm::FollFlags f = cmd == GupTestCmd::kPinLongtermBenchmark
                                  ? gup_flags | mm::FollFlags::kLongterm
                                  : gup_flags;
      Result<std::vector<page::Page*>> pages = [&] {
        ReadLocker l(mm.mmap_lock());
        return mm::pin_user_pages(mm, addr, npages, f);
      }();
      if (pages.is_error()) return static_cast<int>(pages.error().code());
      mm::unpin_user_pages(pages.value());
      return 0;
    }
  }
  return static_cast<int>(Errno::kEINVAL);
#else
  (void)p;
  (void)addr;
  (void)cmd;
  (void)npages;
  (void)size;
  (void)flags;
  return static_cast<int>(Errno::kENOSYS);
#endif
}

// ---- libc stand-ins ----

uint32_t hmm_random() {
  thread_local std::mt19937 gen(std::random_device{}());
  return static_cast<uint32_t>(gen());
}

void hmm_nanosleep(uint32_t n) { std::this_thread::sleep_for(std::chrono::nanoseconds(n)); }

uint64_t read_pmd_pagesize(ModelProcess& p) {
  // HPAGE_PMD_SIZE of the machine's arch: 2 MiB with 4 KiB pages on x86_64 and arm64. The
  // sysfs file exists in a kernel built with CONFIG_TRANSPARENT_HUGEPAGE, which the model is.
  return p.process().kernel().arch().pmd_size();
}

uint64_t hugetlb_free_default_pages(ModelProcess& p) {
  return p.process().kernel().hugetlb_meminfo().free;
}

void hugetlb_setup_default(mm::Kernel& kernel, uint64_t nr) {
  const mm::HugetlbMeminfo m = kernel.hugetlb_meminfo();
  if (m.free >= nr) return;
  kernel.set_nr_hugepages(m.total + (nr - m.free));
}

uint64_t default_huge_page_size() { return kTwoMeg; }

// ---- CPU access ----

Result<std::vector<int32_t>> cpu_load_ints(mm::Process& p, VirtAddr base, uint64_t first,
                                           uint64_t count) {
  std::vector<int32_t> v(count);
  TRY(p.read(VirtAddr(base.raw() + first * sizeof(int32_t)),
             std::as_writable_bytes(std::span<int32_t>(v))));
  return v;
}

Status cpu_store_ints(mm::Process& p, VirtAddr base, uint64_t first,
                      std::span<const int32_t> values) {
  return p.write(VirtAddr(base.raw() + first * sizeof(int32_t)), std::as_bytes(values));
}

Status cpu_store_pattern(mm::Process& p, VirtAddr base, uint64_t first, uint64_t count,
                         const std::function<int32_t(uint64_t)>& f) {
  std::vector<int32_t> v(count);
  for (uint64_t i = 0; i < count; ++i) v[i] = f(first + i);
  return cpu_store_ints(p, base, first, v);
}

// ---- children ----

Result<std::unique_ptr<ModelChild>> ModelChild::fork(ModelProcess& parent,
                                                     std::function<void(ChildContext&)> body) {
  std::unique_ptr<ModelChild> c(new ModelChild());
  c->process_ = TRY(parent.fork());
  c->ctx_ = std::make_unique<ChildContext>(*c->process_, c->killed_);
  ChildContext* ctx = c->ctx_.get();
  c->thread_ = Thread("hmm-child", [ctx, body = std::move(body)] { body(*ctx); });
  return c;
}

ModelChild::~ModelChild() {
  if (!waited_) {
    killed_.store(true, std::memory_order_release);
    (void)wait();
  }
}

WaitStatus ModelChild::wait() {
  if (waited_) return status_;
  thread_.join();
  waited_ = true;
  // do_exit: the files go, then the mm (see ModelProcess).
  process_.reset();
  if (killed_.load(std::memory_order_acquire) && !ctx_->exited_) {
    status_.signaled = true;
    status_.term_sig = kSigKill;
  } else {
    status_.exited = true;
    status_.exit_status = ctx_->exited_ ? ctx_->exit_status_ : 1;
  }
  return status_;
}

int ModelChild::kill(int sig) {
  if (sig != kSigKill) return -1;
  killed_.store(true, std::memory_order_release);
  return 0;
}

// ---- environment ----

Result<std::unique_ptr<HmmEnv>> HmmEnv::create(devmem::Design design) {
  std::unique_ptr<HmmEnv> env(new HmmEnv());
  phys::Machine machine = TRY(phys::builtin_machine(kHmmMachine));
  // The platform reserves special-purpose memory for the two coherent devices (the module's
  // spm_addr_dev0/1) when the machine has room; without it minors 2 and 3 are absent and the
  // coherent variants skip, as the original does.
  migrate::DeviceKernelOptions options;
  Result<std::array<phys::PhysRange, 2>> spm = dmirror::find_spm_ranges(machine);
  if (spm.is_ok()) options.coherent_ranges = {spm.value()[0], spm.value()[1]};
  env->dk_ = TRY(migrate::DeviceKernel::create(std::move(machine), design, std::move(options)));
  env->driver_ = TRY(dmirror::DmirrorDriver::create(*env->dk_));
  // HUGETLB_SETUP_DEFAULT_PAGES(1): the selftest's constructor makes one default-size huge
  // page available; each test's machine is fresh, so it runs for each.
  hugetlb_setup_default(env->dk_->kernel(), 1);
  std::unique_ptr<mm::Process> p = TRY(mm::Process::create(env->dk_->kernel()));
  env->process_ = std::make_unique<ModelProcess>(*env->dk_, *env->driver_, std::move(p));
  return env;
}

HmmEnv::~HmmEnv() {
  if (process_) process_->close_all();
  process_.reset();
  driver_.reset();
  dk_.reset();
}

bool benchmark_output_requested() {
  const char* v = std::getenv("DPMM_HMM_BENCHMARK");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace dpmm::hmm_selftest
