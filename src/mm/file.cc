#include "mm/file.h"

namespace dpmm::mm {

Status File::mmap(Mm& mm, Vma& vma) {
  (void)mm;
  (void)vma;
  return ok();
}

Result<page::Folio> File::fault(uint64_t pgoff) {
  return make_error(Errno::kENXIO, "{} has no ->fault: SIGBUS at page offset {:#x}", name(),
                    pgoff);
}

}  // namespace dpmm::mm
