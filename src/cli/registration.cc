#include "cli/registration.h"

#include <fmt/format.h>

#include "base/size.h"
#include "cli/output.h"

namespace dpmm::cli {

std::vector<DeviceOutcome> register_devices(phys::Machine& machine,
                                            std::span<const uint64_t> sizes) {
  std::vector<DeviceOutcome> out;
  const unsigned space_bits = machine.params().max_physmem_bits;
  const uint64_t space_end = uint64_t{1} << space_bits;
  uint64_t dpas_next = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    DeviceOutcome dev{.size = sizes[i], .designs = {}};

    DesignOutcome legacy;
    legacy.design = "legacy";
    legacy.space = "physical";
    auto got = machine.request_free_mem_region(sizes[i], fmt::format("dpmm-dev{}", i));
    if (got.is_ok()) {
      legacy.start = got->range.start.raw();
      legacy.end = got->range.end.raw();
      legacy.reason = "request_free_mem_region found a free window below the search limit";
    } else {
      legacy.reason = got.error().message();
      legacy.error = std::move(got).error();
    }
    dev.designs.push_back(std::move(legacy));

    const uint64_t bytes = PageCount::from_bytes_round_up(sizes[i]).to_bytes();
    const bool fits = bytes <= space_end - dpas_next;
    for (const char* name : {"dpas", "dpas-zone"}) {
      DesignOutcome d;
      d.design = name;
      d.space = "device-private";
      if (!fits) {
        d.error = make_error(Errno::kEBUSY,
                             "the device private address space [0, 2^{}) has no free {} range",
                             space_bits, format_size(bytes));
        d.reason = d.error->message();
      } else {
        d.start = dpas_next;
        d.end = dpas_next + bytes - 1;
        d.reason = "needs no physical address space: allocated from the device private address "
                   "space";
      }
      dev.designs.push_back(std::move(d));
    }
    if (fits) dpas_next += bytes;
    out.push_back(std::move(dev));
  }
  return out;
}

nlohmann::json to_json(const DeviceOutcome& d) {
  nlohmann::json j = {{"size", d.size}, {"size_text", format_size(d.size)}};
  for (const DesignOutcome& o : d.designs) {
    nlohmann::json dj = {{"ok", o.ok()}, {"space", o.space}, {"reason", o.reason}};
    if (o.ok()) {
      dj["start"] = hex(o.start);
      dj["end"] = hex(o.end);
    } else {
      dj["error"] = error_json(*o.error);
    }
    j[o.design] = std::move(dj);
  }
  return j;
}

std::string to_text(const DeviceOutcome& d, size_t index) {
  std::string t = fmt::format("device {}: {}\n", index, format_size(d.size));
  for (const DesignOutcome& o : d.designs) {
    if (o.ok()) {
      t += fmt::format("  {:<10} ok     {} [{:#x}-{:#x}]\n", o.design, o.space, o.start, o.end);
      continue;
    }
    t += fmt::format("  {:<10} FAILS  {} ({})\n", o.design, errno_name(o.error->code()),
                     errno_neg(o.error->code()));
    t += fmt::format("             {}\n", o.reason);
  }
  return t;
}

}  // namespace dpmm::cli
