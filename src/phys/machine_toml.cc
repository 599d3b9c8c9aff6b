#include "phys/machine_toml.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "base/size.h"
#include "phys/iomem_parser.h"
#include "phys/iores.h"
#include "phys/toml_fields.h"

namespace dpmm::phys {

namespace {

enum class RangeKind : uint8_t { kRam, kPci, kReserved, kResource };

std::string_view kind_key(RangeKind k) {
  switch (k) {
    case RangeKind::kRam: return "ram";
    case RangeKind::kPci: return "pci";
    case RangeKind::kReserved: return "reserved";
    case RangeKind::kResource: return "resource";
  }
  return "?";
}

struct RangeEntry {
  std::string key;    // "ram[1]"
  std::string where;  // "vm.toml:12", the table's first line
  NewResource res;
};

Result<RangeEntry> parse_range(const TomlCtx& c, RangeKind kind, size_t index, const toml::node& n) {
  RangeEntry e;
  e.key = fmt::format("{}[{}]", kind_key(kind), index);
  e.where = c.where(n);
  const toml::table* t = n.as_table();
  if (!t) return toml_wrong_type(c, e.key, n, "a table");
  std::optional<uint64_t> start, end, size;
  std::optional<std::string> name;
  for (auto&& [k, v] : *t) {
    const std::string key = fmt::format("{}.{}", e.key, k.str());
    if (k.str() == "start") {
      start = TRY(get_size(c, key, v));
    } else if (k.str() == "end") {
      end = TRY(get_size(c, key, v));
    } else if (k.str() == "size") {
      size = TRY(get_size(c, key, v));
    } else if (k.str() == "name" && kind != RangeKind::kRam) {
      name = TRY(get_string(c, key, v));
    } else {
      return make_error(Errno::kEINVAL, "{}: unknown key '{}' (a [[{}]] range takes {})",
                        c.where(v), key, kind_key(kind),
                        kind == RangeKind::kRam ? "start, end or size"
                                                : "start, end or size, name");
    }
  }
  if (!start) return make_error(Errno::kEINVAL, "{}: missing key '{}.start'", c.where(n), e.key);
  if (end.has_value() == size.has_value()) {
    return make_error(Errno::kEINVAL, "{}: '{}' needs exactly one of 'end' and 'size'",
                      c.where(n), e.key);
  }
  if (size) {
    if (*size == 0) return make_error(Errno::kEINVAL, "{}: '{}.size' is 0", c.where(n), e.key);
    if (*start + *size - 1 < *start) {
      return make_error(Errno::kEINVAL, "{}: '{}' runs past 2^64", c.where(n), e.key);
    }
    end = *start + *size - 1;
  }
  if (*end < *start) {
    return make_error(Errno::kEINVAL, "{}: '{}' ends ({:#x}) below its start ({:#x})", c.where(n),
                      e.key, *end, *start);
  }
  e.res.range = PhysRange{PhysAddr(*start), PhysAddr(*end)};
  switch (kind) {
    case RangeKind::kRam:
      e.res.name = "System RAM";
      e.res.flags = IoresourceFlags::kSystemRam | IoresourceFlags::kBusy;
      break;
    case RangeKind::kPci:
      e.res.name = name.value_or("PCI Bus 0000:00");
      e.res.flags = IoresourceFlags::kMem | IoresourceFlags::kWindow;
      break;
    case RangeKind::kReserved:
      e.res.name = name.value_or("Reserved");
      e.res.flags = IoresourceFlags::kMem;
      e.res.desc = IoresDesc::kReserved;
      break;
    case RangeKind::kResource: {
      if (!name) return make_error(Errno::kEINVAL, "{}: missing key '{}.name'", c.where(n), e.key);
      e.res.name = *name;
      const IomemClass cls = classify_iomem_name(*name);
      e.res.flags = cls.flags;
      e.res.desc = cls.desc;
      break;
    }
  }
  return e;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return make_error(err == ENOENT ? Errno::kENOENT : err == EACCES ? Errno::kEACCES : Errno::kEIO,
                      "cannot read '{}': {}", path, std::strerror(err));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<Machine> parse_machine_toml(std::string_view text, std::string_view source,
                                   const std::string& base_dir) {
  toml::table doc;
  try {
    doc = toml::parse(text, std::string(source));
  } catch (const toml::parse_error& e) {
    return make_error(Errno::kEINVAL, "{}:{}: TOML syntax: {}", source, e.source().begin.line,
                      e.description());
  }
  return parse_machine_table(doc, source, base_dir);
}

Result<Machine> parse_machine_table(const toml::table& doc, std::string_view source,
                                    const std::string& base_dir) {
  const TomlCtx c{source};

  MachineConfig cfg;
  std::optional<std::string> name, arch_text, physmem_end_text, iomem;
  std::optional<int64_t> paging, phys_bits, padding;
  std::optional<uint64_t> memstart;
  std::vector<RangeEntry> ranges;
  const toml::node* memstart_node = nullptr;
  const toml::node* paging_node = nullptr;
  const toml::node* physmem_end_node = nullptr;

  for (auto&& [k, v] : doc) {
    const std::string key(k.str());
    if (key == "name") {
      name = TRY(get_string(c, key, v));
    } else if (key == "description") {
      cfg.description = TRY(get_string(c, key, v));
    } else if (key == "arch") {
      arch_text = TRY(get_string(c, key, v));
    } else if (key == "paging") {
      paging = TRY(get_int(c, key, v));
      paging_node = &v;
    } else if (key == "phys_bits") {
      phys_bits = TRY(get_int(c, key, v));
    } else if (key == "kaslr") {
      cfg.kaslr = TRY(get_bool(c, key, v)) ? Kaslr::kOn : Kaslr::kOff;
    } else if (key == "kaslr_padding_tb") {
      padding = TRY(get_int(c, key, v));
    } else if (key == "p2pdma") {
      cfg.p2pdma = TRY(get_bool(c, key, v)) ? P2pDma::kOn : P2pDma::kOff;
    } else if (key == "memstart_addr") {
      memstart = TRY(get_size(c, key, v));
      memstart_node = &v;
    } else if (key == "arm64_physmem_end") {
      physmem_end_text = TRY(get_string(c, key, v));
      physmem_end_node = &v;
    } else if (key == "iomem") {
      iomem = TRY(get_string(c, key, v));
    } else if (key == "ram" || key == "pci" || key == "reserved" || key == "resource") {
      const RangeKind kind = key == "ram"       ? RangeKind::kRam
                             : key == "pci"     ? RangeKind::kPci
                             : key == "reserved" ? RangeKind::kReserved
                                                 : RangeKind::kResource;
      const toml::array* arr = v.as_array();
      if (!arr) return toml_wrong_type(c, key, v, fmt::format("an array of tables ([[{}]])", key));
      for (size_t i = 0; i < arr->size(); ++i) {
        ranges.push_back(TRY(parse_range(c, kind, i, *arr->get(i))));
      }
    } else {
      return make_error(Errno::kEINVAL,
                        "{}: unknown key '{}' (known: name, description, arch, paging, phys_bits, "
                        "kaslr, kaslr_padding_tb, p2pdma, memstart_addr, arm64_physmem_end, "
                        "iomem, ram, pci, reserved, resource)",
                        c.where(v), key);
    }
  }

  if (!name) return make_error(Errno::kEINVAL, "{}: missing required key 'name'", source);
  if (!arch_text) return make_error(Errno::kEINVAL, "{}: missing required key 'arch'", source);
  if (!phys_bits) return make_error(Errno::kEINVAL, "{}: missing required key 'phys_bits'", source);
  cfg.name = *name;
  auto arch_kind = arch::parse_arch(*arch_text);
  if (arch_kind.is_error()) {
    return make_error(Errno::kEINVAL, "{}: key 'arch': {}", source, arch_kind.error().message());
  }
  cfg.arch = *arch_kind;
  const bool x86 = cfg.arch == arch::ArchKind::kX86_64;
  if (*phys_bits < 32 || *phys_bits > 52) {
    return make_error(Errno::kEINVAL, "{}: key 'phys_bits': {} is outside 32..52", source,
                      *phys_bits);
  }
  cfg.phys_bits = static_cast<unsigned>(*phys_bits);
  if (paging) {
    if (!x86) {
      return make_error(Errno::kEINVAL, "{}: key 'paging' is for x86_64 only", c.where(*paging_node));
    }
    if (*paging != 4 && *paging != 5) {
      return make_error(Errno::kEINVAL, "{}: key 'paging': {} is not 4 or 5", c.where(*paging_node),
                        *paging);
    }
    cfg.paging = *paging == 5 ? arch::PagingMode::kFiveLevel : arch::PagingMode::kFourLevel;
  }
  if (padding) {
    if (*padding < 0 || *padding > 1024) {
      return make_error(Errno::kEINVAL, "{}: key 'kaslr_padding_tb': {} is outside 0..1024",
                        source, *padding);
    }
    cfg.kaslr_padding_tb = static_cast<unsigned>(*padding);
  }
  if (x86 && memstart) {
    return make_error(Errno::kEINVAL, "{}: key 'memstart_addr' is for arm64 only",
                      c.where(*memstart_node));
  }
  if (x86 && physmem_end_text) {
    return make_error(Errno::kEINVAL, "{}: key 'arm64_physmem_end' is for arm64 only",
                      c.where(*physmem_end_node));
  }
  if (!x86 && !memstart) {
    return make_error(Errno::kEINVAL, "{}: missing key 'memstart_addr' (required for arm64)",
                      source);
  }
  if (memstart) cfg.memstart_addr = PhysAddr(*memstart);
  if (physmem_end_text) {
    if (*physmem_end_text == "after-fix") {
      cfg.arm64_physmem_end = Arm64PhysmemEnd::kAfterFix;
    } else if (*physmem_end_text == "before-fix") {
      cfg.arm64_physmem_end = Arm64PhysmemEnd::kBeforeFix;
    } else {
      return make_error(Errno::kEINVAL,
                        "{}: key 'arm64_physmem_end': '{}' is not \"after-fix\" or \"before-fix\"",
                        c.where(*physmem_end_node), *physmem_end_text);
    }
  }

  std::unique_ptr<ResourceTree> tree;
  std::vector<std::string> notes;
  if (iomem) {
    if (!ranges.empty()) {
      return make_error(Errno::kEINVAL,
                        "{}: key 'iomem' and range tables ([[ram]], [[pci]], ...) are "
                        "alternatives; give one",
                        source);
    }
    if (base_dir.empty()) {
      return make_error(Errno::kEINVAL, "{}: key 'iomem' needs a machine file on disk", source);
    }
    const std::filesystem::path p = std::filesystem::path(base_dir) / *iomem;
    ParsedIomem parsed = TRY(parse_iomem_file(p.string()));
    tree = std::move(parsed.tree);
    notes = std::move(parsed.warnings);
  } else {
    if (ranges.empty()) {
      return make_error(Errno::kEINVAL, "{}: no memory map: give 'iomem' or [[ram]] ranges",
                        source);
    }
    const PhysAddr phys_end((uint64_t{1} << cfg.phys_bits) - 1);
    std::vector<const RangeEntry*> sorted;
    for (const RangeEntry& e : ranges) {
      if (e.res.range.end > phys_end) {
        return make_error(Errno::kEINVAL,
                          "{}: '{}' {} reaches beyond the {}-bit physical address space (end {})",
                          e.where, e.key, e.res.range, cfg.phys_bits, phys_end);
      }
      sorted.push_back(&e);
    }
    std::sort(sorted.begin(), sorted.end(), [](const RangeEntry* a, const RangeEntry* b) {
      return a->res.range.start < b->res.range.start;
    });
    for (size_t i = 1; i < sorted.size(); ++i) {
      if (sorted[i]->res.range.overlaps(sorted[i - 1]->res.range)) {
        return make_error(Errno::kEINVAL, "{}: '{}' {} overlaps '{}' {} ({})", sorted[i]->where,
                          sorted[i]->key, sorted[i]->res.range, sorted[i - 1]->key,
                          sorted[i - 1]->res.range, sorted[i - 1]->where);
      }
    }
    tree = std::make_unique<ResourceTree>();
    for (const RangeEntry* e : sorted) {
      MUST(tree->request_resource(tree->root(), e->res), "ranges were checked disjoint");
    }
  }
  Machine m = TRY(Machine::create(std::move(cfg), std::move(tree)));
  for (std::string& n : notes) m.add_note(std::move(n));
  return m;
}

Result<Machine> load_machine_file(const std::string& path) {
  const std::string text = TRY(read_file(path));
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return parse_machine_toml(text, path, dir.empty() ? "." : dir);
}

}  // namespace dpmm::phys
