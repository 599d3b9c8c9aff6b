#include "base/result.h"

namespace dpmm {

std::string_view errno_name(Errno e) {
  switch (e) {
    case Errno::kEPERM: return "EPERM";
    case Errno::kENOENT: return "ENOENT";
    case Errno::kEIO: return "EIO";
    case Errno::kENXIO: return "ENXIO";
    case Errno::kE2BIG: return "E2BIG";
    case Errno::kEBADF: return "EBADF";
    case Errno::kEAGAIN: return "EAGAIN";
    case Errno::kENOMEM: return "ENOMEM";
    case Errno::kEACCES: return "EACCES";
    case Errno::kEFAULT: return "EFAULT";
    case Errno::kEBUSY: return "EBUSY";
    case Errno::kEEXIST: return "EEXIST";
    case Errno::kENODEV: return "ENODEV";
    case Errno::kEINVAL: return "EINVAL";
    case Errno::kENOSPC: return "ENOSPC";
    case Errno::kERANGE: return "ERANGE";
    case Errno::kENOSYS: return "ENOSYS";
    case Errno::kEOVERFLOW: return "EOVERFLOW";
    case Errno::kEOPNOTSUPP: return "EOPNOTSUPP";
    case Errno::kEHWPOISON: return "EHWPOISON";
  }
  return "E?";
}

std::string Error::to_string() const {
  return fmt::format("{} ({}): {}", errno_name(code_), errno_neg(code_), message_);
}

}  // namespace dpmm
