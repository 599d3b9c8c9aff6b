// The README's example of driving a process through the library, kept compiling and true.
#include <gtest/gtest.h>

#include "mm/kernel.h"
#include "mm/process.h"
#include "mm/pagemap.h"

namespace dpmm::mm {
namespace {

TEST(ReadmeExample, MmapWriteForkRead) {
  // --- README example begins
  // A simulated x86_64 workstation (46 physical bits, 64 GiB of RAM, bytes made on first touch).
  std::unique_ptr<Kernel> kernel = MUST(Kernel::create_builtin("workstation-46bit", {}), "boots");
  std::unique_ptr<Process> parent = MUST(Process::create(*kernel), "a PGD page is free");

  // mmap(NULL, 2 MiB, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS): a write faults in a page.
  const VirtAddr buf = MUST(parent->mmap_anon(2 << 20, MmapProt::kRead | MmapProt::kWrite), "room");
  MUST(parent->write_u64(buf, 0x1111), "mapped and writable");

  // fork(): the child shares the page copy-on-write ...
  std::unique_ptr<Process> child = MUST(parent->fork(), "memory for the child's tables");
  const uint64_t shared_pfn = pagemap_entry(child->mm(), buf) & kPmPframeMask;

  // ... until it writes: then it gets its own copy and the parent keeps its bytes.
  MUST(child->write_u64(buf, 0x2222), "COW break");
  const uint64_t parent_sees = MUST(parent->read_u64(buf), "mapped");  // 0x1111
  const uint64_t child_sees = MUST(child->read_u64(buf), "mapped");    // 0x2222
  // --- README example ends
  EXPECT_EQ(parent_sees, 0x1111u);
  EXPECT_EQ(child_sees, 0x2222u);
  EXPECT_EQ(pagemap_entry(parent->mm(), buf) & kPmPframeMask, shared_pfn);
  EXPECT_NE(pagemap_entry(child->mm(), buf) & kPmPframeMask, shared_pfn);
}

}  // namespace
}  // namespace dpmm::mm
