#include "mm/process.h"

namespace dpmm::mm {

Result<std::unique_ptr<Process>> Process::create(Kernel& kernel) {
  std::unique_ptr<Mm> mm = TRY(Mm::create(kernel));
  return std::unique_ptr<Process>(new Process(std::move(mm)));
}

Result<std::unique_ptr<Process>> Process::fork() {
  std::unique_ptr<Mm> mm = TRY(mm_->fork());
  return std::unique_ptr<Process>(new Process(std::move(mm)));
}

}  // namespace dpmm::mm
