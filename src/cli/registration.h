// Registering devices on a machine under each design, as `check` and `demo` report it.
//
// legacy: request_free_mem_region(&iomem_resource, size) claims a physical window; each success
// stays claimed, so the next device searches below it (as several GPUs do at boot).
// dpas / dpas-zone: memremap_device_private_pagemap() takes DIV_ROUND_UP(size, PAGE_SIZE) pages
// from the device private address space, lowest free range first, bounded by
// 2^MAX_PHYSMEM_BITS; no physical address space is involved.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "phys/machine.h"

namespace dpmm::cli {

struct DesignOutcome {
  std::string design;  // "legacy", "dpas", "dpas-zone"
  std::string space;   // "physical" or "device-private"
  std::optional<Error> error;
  uint64_t start = 0;  // valid when !error
  uint64_t end = 0;    // inclusive
  std::string reason;
  bool ok() const { return !error; }
};

struct DeviceOutcome {
  uint64_t size = 0;
  std::vector<DesignOutcome> designs;  // legacy, dpas, dpas-zone
};

std::vector<DeviceOutcome> register_devices(phys::Machine& machine,
                                            std::span<const uint64_t> sizes);

// {"size": .., "size_text": .., "legacy": {"ok": .., "start"/"end" | "error", "reason"}, ...}
nlohmann::json to_json(const DeviceOutcome& d);
// "device N: 80 GiB" and one line per design (two for a failure: the errno, then why).
std::string to_text(const DeviceOutcome& d, size_t index);

}  // namespace dpmm::cli
