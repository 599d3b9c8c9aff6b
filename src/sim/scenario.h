// Scenario files: a machine, its devices, the designs to compare and a workload, in TOML.
//
// Schema (every key is checked; unknown keys are refused with their line):
//
//   name           string   required
//   description    string   optional
//   designs        array    of "legacy" | "dpas" | "dpas-zone"; default: all three
//   machine        string   a built-in machine's name; or
//   machine_file   string   a machine TOML, relative to this file; or
//   [machine]      table    an inline machine (the schema of machines/*.toml): exactly one
//   [expect_setup_error]  design = "ERANGE": that design is expected to fail to register its
//                  devices with this errno (the seed's legacy registration on a full
//                  machine); the run then passes for that design when it fails so
//   [[device]]     name (string, required, unique), type "private" | "coherent" (default
//                  "private"), size (required), chunk (default 256MiB: the registration
//                  granularity, as dmirror's DEVMEM_CHUNK_SIZE). At most two of each type.
//   workload: either scripted steps or one generated workload, not both:
//   [[step]]       op plus the op's keys (ScriptOp below)
//   [workload]     threads, buffer, pattern, read_fraction, migrate_fraction, ops, duration_ms,
//                  seed, device
//
// Sizes are integers or parse_size text ("4MiB", "0x200000"). Errors are EINVAL and name the
// file, the line and the key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "devmem/design.h"
#include "phys/machine.h"

namespace dpmm::sim {

enum class DeviceType : uint8_t { kPrivate, kCoherent };

struct DeviceSpec {
  std::string name;
  DeviceType type = DeviceType::kPrivate;
  uint64_t size = 0;                  // bytes, a multiple of chunk
  uint64_t chunk = 256ull << 20;      // bytes, a multiple of the memory-section size
};

// What a fill or a check writes or expects in a buffer.
enum class Pattern : uint8_t {
  kIndex,   // 32-bit word i holds i (the selftests' pattern)
  kRandom,  // seeded random bytes
  kZero,
};

enum class ScriptOpKind : uint8_t {
  kMmap,             // buffer, size, prot ("r", "rw", "none"), shared (bool)
  kMunmap,           // buffer
  kMprotect,         // buffer, prot
  kFill,             // buffer, pattern, seed: the CPU writes the whole buffer
  kCpuRead,          // buffer: the CPU reads the whole buffer and checks it
  kDeviceRead,       // buffer, device: the device reads (faults in) and checks
  kDeviceWrite,      // buffer, device, pattern, seed: the device writes the whole buffer
  kMigrateToDevice,  // buffer, device
  kMigrateToSystem,  // buffer, device
  kExclusive,        // buffer, device
  kFork,             // process (the new child's name)
  kRelease,          // device: remove every chunk (device removal), pages migrate back
};
std::string_view script_op_name(ScriptOpKind k);  // "mmap", "migrate_to_device", ...

struct ScriptStep {
  ScriptOpKind op = ScriptOpKind::kFill;
  std::string process = "main";  // which process runs it
  std::string buffer;
  std::string device;
  uint64_t size = 0;
  std::string prot = "rw";
  bool shared = false;
  Pattern pattern = Pattern::kIndex;
  uint64_t seed = 1;
  // Expectations: the device command's page count (cpages), or its error ("EINVAL").
  std::optional<uint64_t> expect_pages;
  std::optional<std::string> expect_error;
  int line = 0;  // where the step is in the file, for messages
};

enum class AccessPattern : uint8_t { kSequential, kRandom, kZipf };

struct GeneratedWorkload {
  unsigned threads = 2;
  uint64_t buffer = 16ull << 20;  // bytes
  AccessPattern pattern = AccessPattern::kRandom;
  double read_fraction = 0.5;     // of CPU accesses
  double migrate_fraction = 0.05; // of operations: device migrations (to device, or back)
  uint64_t ops = 20000;           // per thread
  // Optional: each thread also stops after this many milliseconds (whichever comes first).
  std::optional<uint64_t> duration_ms;
  uint64_t seed = 1;
  std::string device;             // default: the first device
};

struct Scenario {
  std::string name;
  std::string description;
  std::string source;  // the file it came from
  std::vector<devmem::Design> designs;
  // Design -> the errno name its device registration is expected to fail with.
  std::map<devmem::Design, std::string> expect_setup_error;
  phys::Machine machine;
  std::vector<DeviceSpec> devices;
  std::vector<ScriptStep> steps;
  std::optional<GeneratedWorkload> generated;
};

// `source` names the text in messages; relative paths resolve against `base_dir`.
// Errno::kERANGE for "ERANGE"; nullopt for a name dpmm does not know.
std::optional<Errno> errno_from_name(std::string_view name);

Result<Scenario> parse_scenario(std::string_view text, std::string_view source,
                                const std::string& base_dir);
Result<Scenario> load_scenario_file(const std::string& path);

}  // namespace dpmm::sim
