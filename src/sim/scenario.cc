#include "sim/scenario.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "phys/builtin_machines.h"
#include "phys/machine_toml.h"
#include "phys/toml_fields.h"

namespace dpmm::sim {

namespace {

using phys::TomlCtx;

constexpr unsigned kMaxDevicesPerType = 2;
constexpr uint64_t kCoherentBytes = uint64_t{256} << 20;  // dmirror's spm range per device  // dmirror's two private and two coherent minors

struct OpInfo {
  ScriptOpKind kind;
  std::string_view name;
};
constexpr OpInfo kOps[] = {
    {ScriptOpKind::kMmap, "mmap"},
    {ScriptOpKind::kMunmap, "munmap"},
    {ScriptOpKind::kMprotect, "mprotect"},
    {ScriptOpKind::kFill, "fill"},
    {ScriptOpKind::kCpuRead, "cpu_read"},
    {ScriptOpKind::kDeviceRead, "device_read"},
    {ScriptOpKind::kDeviceWrite, "device_write"},
    {ScriptOpKind::kMigrateToDevice, "migrate_to_device"},
    {ScriptOpKind::kMigrateToSystem, "migrate_to_system"},
    {ScriptOpKind::kExclusive, "exclusive"},
    {ScriptOpKind::kFork, "fork"},
    {ScriptOpKind::kRelease, "release"},
};

std::string op_names() {
  std::string out;
  for (const OpInfo& o : kOps) {
    if (!out.empty()) out += ", ";
    out += o.name;
  }
  return out;
}

Error at(const TomlCtx& c, const toml::node& n, std::string_view what) {
  return make_error(Errno::kEINVAL, "{}: {}", c.where(n), what);
}

Result<Pattern> parse_pattern(const TomlCtx& c, const toml::node& n) {
  const std::string s = TRY(phys::get_string(c, "pattern", n));
  if (s == "index") return Pattern::kIndex;
  if (s == "random") return Pattern::kRandom;
  if (s == "zero") return Pattern::kZero;
  return at(c, n, fmt::format("key 'pattern': unknown pattern '{}' (index, random, zero)", s));
}

Result<std::string> parse_prot(const TomlCtx& c, const toml::node& n) {
  const std::string s = TRY(phys::get_string(c, "prot", n));
  for (std::string_view known : {"none", "r", "w", "rw"}) {
    if (s == known) return std::string(known);
  }
  return at(c, n, fmt::format("key 'prot': unknown protection '{}' (none, r, w, rw)", s));
}

// Which keys each op needs (beyond `op` and `process`) and which it accepts.
struct OpKeys {
  std::set<std::string_view> required;
  std::set<std::string_view> optional;
};

OpKeys keys_of(ScriptOpKind k) {
  const std::set<std::string_view> expect = {"expect_pages", "expect_error"};
  switch (k) {
    case ScriptOpKind::kMmap:
      return {{"buffer", "size"}, {"prot", "shared"}};
    case ScriptOpKind::kMunmap:
    case ScriptOpKind::kCpuRead:
      return {{"buffer"}, {}};
    case ScriptOpKind::kMprotect:
      return {{"buffer", "prot"}, {}};
    case ScriptOpKind::kFill:
      return {{"buffer"}, {"pattern", "seed"}};
    case ScriptOpKind::kDeviceWrite: {
      OpKeys keys{{"buffer", "device"}, {"pattern", "seed"}};
      keys.optional.insert(expect.begin(), expect.end());
      return keys;
    }
    case ScriptOpKind::kDeviceRead:
    case ScriptOpKind::kMigrateToDevice:
    case ScriptOpKind::kMigrateToSystem:
    case ScriptOpKind::kExclusive:
      return {{"buffer", "device"}, expect};
    case ScriptOpKind::kFork:
      return {{"child"}, {}};
    case ScriptOpKind::kRelease:
      return {{"device"}, {}};
  }
  return {};
}

Result<ScriptStep> parse_step(const TomlCtx& c, size_t index, const toml::node& node) {
  const std::string name = fmt::format("step[{}]", index);
  const toml::table* t = node.as_table();
  if (t == nullptr) return phys::toml_wrong_type(c, name, node, "a table");
  ScriptStep step;
  step.line = static_cast<int>(node.source().begin.line);
  const toml::node* op_node = t->get("op");
  if (op_node == nullptr) return at(c, node, fmt::format("{}: key 'op' is missing", name));
  const std::string op = TRY(phys::get_string(c, "op", *op_node));
  bool known = false;
  for (const OpInfo& o : kOps) {
    if (o.name == op) {
      step.op = o.kind;
      known = true;
    }
  }
  if (!known) {
    return at(c, *op_node, fmt::format("{}: unknown op '{}' (one of: {})", name, op, op_names()));
  }
  const OpKeys keys = keys_of(step.op);
  std::set<std::string_view> seen;
  for (auto&& [k, v] : *t) {
    const std::string key(k.str());
    if (key == "op") continue;
    if (key == "process") {
      step.process = TRY(phys::get_string(c, key, v));
      continue;
    }
    if (!keys.required.contains(key) && !keys.optional.contains(key)) {
      return at(c, v, fmt::format("{}: op '{}' takes no key '{}'", name, op, key));
    }
    seen.insert(keys.required.contains(key) ? *keys.required.find(key) : *keys.optional.find(key));
    if (key == "buffer") {
      step.buffer = TRY(phys::get_string(c, key, v));
    } else if (key == "device") {
      step.device = TRY(phys::get_string(c, key, v));
    } else if (key == "child") {
      step.buffer = TRY(phys::get_string(c, key, v));  // the child's process name
    } else if (key == "size") {
      step.size = TRY(phys::get_size(c, key, v));
      if (step.size == 0) return at(c, v, fmt::format("{}: key 'size' must not be 0", name));
    } else if (key == "prot") {
      step.prot = TRY(parse_prot(c, v));
    } else if (key == "shared") {
      step.shared = TRY(phys::get_bool(c, key, v));
    } else if (key == "pattern") {
      step.pattern = TRY(parse_pattern(c, v));
    } else if (key == "seed") {
      step.seed = TRY(phys::get_size(c, key, v));
    } else if (key == "expect_pages") {
      step.expect_pages = TRY(phys::get_size(c, key, v));
    } else if (key == "expect_error") {
      step.expect_error = TRY(phys::get_string(c, key, v));
    }
  }
  for (std::string_view req : keys.required) {
    if (!seen.contains(req)) {
      return at(c, node, fmt::format("{}: op '{}' needs key '{}'", name, op, req));
    }
  }
  return step;
}

Result<DeviceSpec> parse_device(const TomlCtx& c, size_t index, const toml::node& node) {
  const std::string name = fmt::format("device[{}]", index);
  const toml::table* t = node.as_table();
  if (t == nullptr) return phys::toml_wrong_type(c, name, node, "a table");
  DeviceSpec d;
  bool has_size = false;
  for (auto&& [k, v] : *t) {
    const std::string key(k.str());
    if (key == "name") {
      d.name = TRY(phys::get_string(c, key, v));
    } else if (key == "type") {
      const std::string s = TRY(phys::get_string(c, key, v));
      if (s == "private") {
        d.type = DeviceType::kPrivate;
      } else if (s == "coherent") {
        d.type = DeviceType::kCoherent;
      } else {
        return at(c, v, fmt::format("{}.type: unknown type '{}' (private, coherent)", name, s));
      }
    } else if (key == "size") {
      d.size = TRY(phys::get_size(c, key, v));
      has_size = true;
    } else if (key == "chunk") {
      d.chunk = TRY(phys::get_size(c, key, v));
    } else {
      return at(c, v, fmt::format("{}: unknown key '{}' (name, type, size, chunk)", name, key));
    }
  }
  if (d.name.empty()) return at(c, node, fmt::format("{}: key 'name' is missing", name));
  if (!has_size) return at(c, node, fmt::format("{}: key 'size' is missing", name));
  if (d.chunk == 0 || d.chunk % kPageSize != 0) {
    return at(c, node, fmt::format("{}.chunk: {} is not a positive multiple of 4 KiB", name,
                                   d.chunk));
  }
  if (d.type == DeviceType::kCoherent && (d.size != kCoherentBytes || d.chunk != kCoherentBytes)) {
    return at(c, node, fmt::format("{}: a coherent device has 256 MiB of special-purpose memory "
                                   "(size and chunk \"256MiB\"), as dmirror's", name));
  }
  if (d.size == 0 || d.size % d.chunk != 0) {
    return at(c, node, fmt::format("{}.size: {} is not a positive multiple of the chunk ({})",
                                   name, d.size, d.chunk));
  }
  return d;
}

Result<GeneratedWorkload> parse_workload(const TomlCtx& c, const toml::node& node) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return phys::toml_wrong_type(c, "workload", node, "a table");
  GeneratedWorkload w;
  auto fraction = [&](const std::string& key, const toml::node& v) -> Result<double> {
    const double f = TRY(phys::get_double(c, key, v));
    if (!(f >= 0.0 && f <= 1.0)) {
      return at(c, v, fmt::format("workload.{}: {} is not in [0, 1]", key, f));
    }
    return f;
  };
  for (auto&& [k, v] : *t) {
    const std::string key(k.str());
    if (key == "threads") {
      const int64_t n = TRY(phys::get_int(c, key, v));
      if (n < 1 || n > 64) return at(c, v, fmt::format("workload.threads: {} not in 1..64", n));
      w.threads = static_cast<unsigned>(n);
    } else if (key == "buffer") {
      w.buffer = TRY(phys::get_size(c, key, v));
      if (w.buffer == 0 || w.buffer % kPageSize != 0) {
        return at(c, v, fmt::format("workload.buffer: {} is not a positive multiple of 4 KiB",
                                    w.buffer));
      }
    } else if (key == "pattern") {
      const std::string s = TRY(phys::get_string(c, key, v));
      if (s == "sequential") {
        w.pattern = AccessPattern::kSequential;
      } else if (s == "random") {
        w.pattern = AccessPattern::kRandom;
      } else if (s == "zipf") {
        w.pattern = AccessPattern::kZipf;
      } else {
        return at(c, v, fmt::format("workload.pattern: unknown pattern '{}' (sequential, "
                                    "random, zipf)", s));
      }
    } else if (key == "read_fraction") {
      w.read_fraction = TRY(fraction(key, v));
    } else if (key == "migrate_fraction") {
      w.migrate_fraction = TRY(fraction(key, v));
    } else if (key == "ops") {
      w.ops = TRY(phys::get_size(c, key, v));
      if (w.ops == 0) return at(c, v, "workload.ops: must not be 0");
    } else if (key == "duration_ms") {
      w.duration_ms = TRY(phys::get_size(c, key, v));
      if (*w.duration_ms == 0) return at(c, v, "workload.duration_ms: must not be 0");
    } else if (key == "seed") {
      w.seed = TRY(phys::get_size(c, key, v));
    } else if (key == "device") {
      w.device = TRY(phys::get_string(c, key, v));
    } else {
      return at(c, v, fmt::format("workload: unknown key '{}' (threads, buffer, pattern, "
                                  "read_fraction, migrate_fraction, ops, duration_ms, seed, device)", key));
    }
  }
  return w;
}

// A Scenario's fields while they are read (Scenario itself needs its machine to exist).
struct Parts {
  std::string name;
  std::string description;
  std::vector<devmem::Design> designs;
  std::map<devmem::Design, std::string> expect_setup_error;
  std::vector<DeviceSpec> devices;
  std::vector<ScriptStep> steps;
  std::optional<GeneratedWorkload> generated;
};

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(Errno::kENOENT, "{}: cannot open: {}", path, std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::optional<Errno> errno_from_name(std::string_view name) {
  // Errno values are small; errno_name answers "E?" for numbers outside the table.
  for (int n = 1; n < 256; ++n) {
    const Errno e = static_cast<Errno>(n);
    if (errno_name(e) == name) return e;
  }
  return std::nullopt;
}

std::string_view script_op_name(ScriptOpKind k) {
  for (const OpInfo& o : kOps) {
    if (o.kind == k) return o.name;
  }
  return "?";
}

Result<Scenario> parse_scenario(std::string_view text, std::string_view source,
                                const std::string& base_dir) {
  const TomlCtx c{source};
  toml::table doc;
  try {
    doc = toml::parse(text, std::string(source));
  } catch (const toml::parse_error& e) {
    return make_error(Errno::kEINVAL, "{}:{}: TOML syntax: {}", source, e.source().begin.line,
                      e.description());
  }
  Parts s;
  std::optional<phys::Machine> machine;
  int machine_sources = 0;
  for (auto&& [k, v] : doc) {
    const std::string key(k.str());
    if (key == "name") {
      s.name = TRY(phys::get_string(c, key, v));
    } else if (key == "description") {
      s.description = TRY(phys::get_string(c, key, v));
    } else if (key == "designs") {
      const toml::array* arr = v.as_array();
      if (arr == nullptr) return phys::toml_wrong_type(c, key, v, "an array of design names");
      for (const toml::node& d : *arr) {
        const std::string name = TRY(phys::get_string(c, key, d));
        auto design = devmem::parse_design(name);
        if (design.is_error()) return at(c, d, design.error().message());
        s.designs.push_back(*design);
      }
      if (s.designs.empty()) return at(c, v, "key 'designs': empty (omit it for all three)");
    } else if (key == "expect_setup_error") {
      const toml::table* t = v.as_table();
      if (t == nullptr) return phys::toml_wrong_type(c, key, v, "a table of design = \"ERRNO\"");
      for (auto&& [dk, dv] : *t) {
        auto design = devmem::parse_design(dk.str());
        if (design.is_error()) return at(c, dv, design.error().message());
        const std::string name = TRY(phys::get_string(c, std::string(dk.str()), dv));
        if (!errno_from_name(name)) {
          return at(c, dv, fmt::format("expect_setup_error.{}: unknown errno name '{}'",
                                       dk.str(), name));
        }
        s.expect_setup_error[*design] = name;
      }
    } else if (key == "machine") {
      ++machine_sources;
      if (v.is_string()) {
        auto m = phys::builtin_machine(v.as_string()->get());
        if (m.is_error()) return at(c, v, m.error().message());
        machine = std::move(*m);
      } else if (const toml::table* t = v.as_table()) {
        machine = TRY(phys::parse_machine_table(*t, source, base_dir));
      } else {
        return phys::toml_wrong_type(c, key, v, "a built-in machine's name or a table");
      }
    } else if (key == "machine_file") {
      ++machine_sources;
      const std::string rel = TRY(phys::get_string(c, key, v));
      const std::filesystem::path path = std::filesystem::path(base_dir) / rel;
      auto m = phys::load_machine_file(path.string());
      if (m.is_error()) return at(c, v, fmt::format("machine_file: {}", m.error().message()));
      machine = std::move(*m);
    } else if (key == "device") {
      const toml::array* arr = v.as_array();
      if (arr == nullptr) return phys::toml_wrong_type(c, key, v, "an array of tables ([[device]])");
      for (size_t i = 0; i < arr->size(); ++i) {
        s.devices.push_back(TRY(parse_device(c, i, *arr->get(i))));
      }
    } else if (key == "step") {
      const toml::array* arr = v.as_array();
      if (arr == nullptr) return phys::toml_wrong_type(c, key, v, "an array of tables ([[step]])");
      for (size_t i = 0; i < arr->size(); ++i) {
        s.steps.push_back(TRY(parse_step(c, i, *arr->get(i))));
      }
    } else if (key == "workload") {
      s.generated = TRY(parse_workload(c, v));
    } else {
      return at(c, v, fmt::format("unknown key '{}' (name, description, designs, "
                                  "expect_setup_error, machine, machine_file, device, step, "
                                  "workload)", key));
    }
  }
  if (s.name.empty()) return make_error(Errno::kEINVAL, "{}: key 'name' is missing", source);
  if (machine_sources != 1) {
    return make_error(Errno::kEINVAL,
                      "{}: give exactly one of 'machine' (a name or a table) and "
                      "'machine_file'; found {}", source, machine_sources);
  }
  if (s.designs.empty()) s.designs.assign(devmem::kAllDesigns.begin(), devmem::kAllDesigns.end());
  if (s.devices.empty()) {
    return make_error(Errno::kEINVAL, "{}: no [[device]]: a scenario needs a device", source);
  }
  std::set<std::string> names;
  unsigned per_type[2] = {0, 0};
  for (const DeviceSpec& d : s.devices) {
    if (!names.insert(d.name).second) {
      return make_error(Errno::kEINVAL, "{}: two devices are named '{}'", source, d.name);
    }
    if (++per_type[static_cast<unsigned>(d.type)] > kMaxDevicesPerType) {
      return make_error(Errno::kEINVAL, "{}: more than {} {} devices (dmirror has two of each)",
                        source, kMaxDevicesPerType,
                        d.type == DeviceType::kPrivate ? "private" : "coherent");
    }
  }
  if (s.steps.empty() == !s.generated.has_value()) {
    return make_error(Errno::kEINVAL,
                      "{}: give either [[step]] entries or one [workload] table, not {}", source,
                      s.steps.empty() ? "neither" : "both");
  }
  // Names used by steps must exist when the step runs.
  std::set<std::string> processes = {"main"};
  std::set<std::string> buffers;
  for (const ScriptStep& st : s.steps) {
    const std::string where = fmt::format("{}:{}", source, st.line);
    if (!processes.contains(st.process)) {
      return make_error(Errno::kEINVAL, "{}: step {}: no process '{}' (fork it first)", where,
                        script_op_name(st.op), st.process);
    }
    if (!st.device.empty() && !names.contains(st.device)) {
      return make_error(Errno::kEINVAL, "{}: step {}: no device '{}'", where,
                        script_op_name(st.op), st.device);
    }
    if (st.op == ScriptOpKind::kFork) {
      if (!processes.insert(st.buffer).second) {
        return make_error(Errno::kEINVAL, "{}: fork: process '{}' exists already", where,
                          st.buffer);
      }
    } else if (st.op == ScriptOpKind::kMmap) {
      if (!buffers.insert(st.buffer).second) {
        return make_error(Errno::kEINVAL, "{}: mmap: buffer '{}' exists already", where,
                          st.buffer);
      }
      if (st.size % kPageSize != 0) {
        return make_error(Errno::kEINVAL, "{}: mmap: size {} is not a multiple of 4 KiB", where,
                          st.size);
      }
    } else if (!st.buffer.empty() && !buffers.contains(st.buffer)) {
      return make_error(Errno::kEINVAL, "{}: step {}: no buffer '{}' (mmap it first)", where,
                        script_op_name(st.op), st.buffer);
    }
  }
  if (s.generated.has_value() && !s.generated->device.empty() &&
      !names.contains(s.generated->device)) {
    return make_error(Errno::kEINVAL, "{}: workload.device: no device '{}'", source,
                      s.generated->device);
  }
  return Scenario{.name = std::move(s.name),
                  .description = std::move(s.description),
                  .source = std::string(source),
                  .designs = std::move(s.designs),
                  .expect_setup_error = std::move(s.expect_setup_error),
                  .machine = std::move(*machine),
                  .devices = std::move(s.devices),
                  .steps = std::move(s.steps),
                  .generated = std::move(s.generated)};
}

Result<Scenario> load_scenario_file(const std::string& path) {
  const std::string text = TRY(read_text(path));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return parse_scenario(text, path, dir.empty() ? "." : dir);
}

}  // namespace dpmm::sim
