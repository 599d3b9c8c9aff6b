// File: an open file (struct file with its f_op), as the mm layer sees it
// (include/linux/fs.h; mm/mmap.c do_mmap, mm/vma.c __mmap_new_file_vma).
//
// Files are reference-counted with std::shared_ptr: the holder of an "fd" owns one reference,
// and every VMA that maps the file owns another (vma->vm_file, get_file/fput), so a file
// outlives every mapping of it and the fd may be dropped (close) while mappings remain.
//
// What a file offers the mm layer:
//   f_mode     FMODE_READ / FMODE_WRITE: which mmap requests are allowed (EACCES rules)
//   mapping()  its page cache (f_mapping, address_space.h), or null for a file without one
//              (a driver's device file)
//   mmap()     f_op->mmap: called once per new mapping, with mmap_lock held for write and the
//              VMA fully set up but not yet in the mm (mm/vma.c __mmap_new_file_vma). It may
//              change the VMA's flags and pre-populate it (vm_insert_page). An error fails
//              the mmap; whatever it mapped is unmapped again.
//   fault()    vma->vm_ops->fault: the folio at a page offset, referenced and locked, for a
//              PTE the fault path is about to fill. Files without one (a VMA with the dummy
//              vm_ops) SIGBUS on a fault over a none PTE (mm/memory.c do_fault).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/flags.h"
#include "base/result.h"
#include "base/types.h"
#include "page/folio.h"

namespace dpmm::mm {

class AddressSpace;
class Mm;
struct Vma;

// FMODE_READ / FMODE_WRITE (include/linux/fs.h).
enum class FMode : uint8_t {
  kNone = 0,
  kRead = 0x1,   // FMODE_READ
  kWrite = 0x2,  // FMODE_WRITE
};
DPMM_FLAG_OPS(FMode)

class File {
 public:
  virtual ~File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  FMode f_mode() const { return f_mode_; }
  // f_mapping: the page cache, or null.
  AddressSpace* mapping() const { return mapping_; }
  // For messages: "shmem:/dev/zero", "dmirror0", ...
  virtual std::string name() const = 0;

  // Whether f_op->mmap exists (do_mmap: ENODEV when it does not).
  virtual bool has_mmap() const { return true; }
  // f_op->mmap. REQUIRES: mm's mmap_lock held for write. Errors fail the mmap with that errno.
  virtual Status mmap(Mm& mm, Vma& vma);
  // vm_ops->fault for page offset `pgoff` of the file: a folio referenced (the caller owns
  // the reference) and locked. REQUIRES: mmap_lock held for read.
  //   ENOMEM  no page could be allocated (VM_FAULT_OOM)
  //   ENXIO   no ->fault, or pgoff at or past EOF (VM_FAULT_SIGBUS)
  virtual Result<page::Folio> fault(uint64_t pgoff);

 protected:
  File(FMode mode, AddressSpace* mapping) : f_mode_(mode), mapping_(mapping) {}
  // For a subclass that builds its page cache after the base.
  void set_mapping(AddressSpace* mapping) { mapping_ = mapping; }

 private:
  FMode f_mode_;
  AddressSpace* mapping_;
};

}  // namespace dpmm::mm
