#include "phys/iomem_parser.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "base/size.h"
#include "phys/iores.h"

namespace dpmm::phys {

namespace {

struct Line {
  size_t line_no = 0;
  unsigned level = 0;
  PhysRange range;
  std::string name;
};

bool is_blank(char c) { return c == ' ' || c == '\t'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Printable form of a piece of input for error messages (control bytes escaped, shortened).
std::string quoted(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (s.size() > 40) out += "...";
  return "'" + out + "'";
}

// Reads 1..16 hex digits from the front of `s`.
Result<uint64_t> take_hex(std::string_view& s, size_t line_no, std::string_view what) {
  uint64_t v = 0;
  size_t n = 0;
  while (n < s.size() && hex_value(s[n]) >= 0) {
    if (n == 16) {
      return make_error(Errno::kEINVAL, "line {}: the {} address {} has more than 16 hex digits",
                        line_no, what, quoted(s));
    }
    v = (v << 4) | static_cast<uint64_t>(hex_value(s[n]));
    ++n;
  }
  if (n == 0) {
    return make_error(Errno::kEINVAL, "line {}: bad hex in the {} address at {}", line_no, what,
                      quoted(s));
  }
  s.remove_prefix(n);
  return v;
}

bool is_elision_marker(std::string_view s) {
  return s == "..." || s == "[...]" || s == "\u2026" || s == "<snip>" || s == "[snip]";
}

// One non-blank line (trailing whitespace and CR already removed).
Result<Line> parse_line(std::string_view s, size_t line_no) {
  Line line;
  line.line_no = line_no;
  unsigned spaces = 0;
  unsigned tabs = 0;
  while (!s.empty() && is_blank(s.front())) {
    (s.front() == ' ' ? spaces : tabs) += 1;
    s.remove_prefix(1);
  }
  if (spaces % 2 != 0) {
    return make_error(Errno::kEINVAL,
                      "line {}: indented by {} spaces; /proc/iomem indents by 2 per level",
                      line_no, spaces);
  }
  line.level = spaces / 2 + tabs;
  const uint64_t start = TRY(take_hex(s, line_no, "start"));
  if (s.empty() || s.front() != '-') {
    return make_error(Errno::kEINVAL, "line {}: expected '-' after the start address, found {}",
                      line_no, s.empty() ? std::string("the end of the line") : quoted(s));
  }
  s.remove_prefix(1);
  const uint64_t end = TRY(take_hex(s, line_no, "end"));
  const size_t gap = s.find_first_not_of(" \t");
  if (gap == std::string_view::npos || s[gap] != ':') {
    return make_error(Errno::kEINVAL,
                      "line {}: no ' : ' between the address range and the name (found {})",
                      line_no, s.empty() ? std::string("the end of the line") : quoted(s));
  }
  s.remove_prefix(gap + 1);
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  if (start > end) {
    return make_error(Errno::kEINVAL, "line {}: start {:#x} is above end {:#x}", line_no, start,
                      end);
  }
  line.range = PhysRange{PhysAddr(start), PhysAddr(end)};
  line.name = std::string(s);
  return line;
}

struct Split {
  std::vector<Line> lines;
  size_t elided = 0;
};

Result<Split> split_lines(std::string_view text) {
  Split out;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // a UTF-8 byte-order mark
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    while (!raw.empty() && (raw.back() == '\r' || is_blank(raw.back()))) raw.remove_suffix(1);
    const size_t first = raw.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    if (is_elision_marker(raw.substr(first))) {
      ++out.elided;
      continue;
    }
    out.lines.push_back(TRY(parse_line(raw, line_no)));
  }
  return out;
}

std::string line_words(const Line& l) {
  return fmt::format("line {} ({:x}-{:x} : {})", l.line_no, l.range.start.raw(), l.range.end.raw(),
                     l.name);
}

}  // namespace

Result<ParsedIomem> parse_iomem(std::string_view text) {
  const Split split = TRY(split_lines(text));
  if (split.lines.empty()) {
    return make_error(Errno::kEINVAL, "empty input: no /proc/iomem lines{}",
                      split.elided ? " (only '...' markers)" : "");
  }
  bool all_zero = true;
  for (const Line& l : split.lines) {
    if (l.range.start.raw() != 0 || l.range.end.raw() != 0) all_zero = false;
  }
  if (all_zero) {
    return make_error(Errno::kEACCES,
                      "addresses are all zero: /proc/iomem was read without root; run as root");
  }

  ParsedIomem out;
  out.tree = std::make_unique<ResourceTree>();
  // stack[d]: the latest line at depth d with its id; last_child[d]: its latest child line.
  struct Open {
    const Line* line;
    ResourceId id;
    const Line* last_child = nullptr;
  };
  std::vector<Open> stack;
  const Line* last_top = nullptr;
  bool nested = false;
  for (const Line& l : split.lines) {
    if (l.level > stack.size()) {
      return make_error(Errno::kEINVAL,
                        "line {}: indentation jumps from level {} to level {} (one at a time)",
                        l.line_no, stack.size(), l.level);
    }
    if (l.level == kMaxIoresLevel && stack.size() > kMaxIoresLevel) {
      // The kernel prints every resource deeper than MAX_IORES_LEVEL at that level: a line
      // there that lies inside the previous one at the same indentation is its child.
      while (stack.size() > kMaxIoresLevel && !stack.back().line->range.contains(l.range)) {
        stack.pop_back();
      }
    } else {
      stack.resize(l.level);
    }
    const Line* parent = stack.empty() ? nullptr : stack.back().line;
    const ResourceId parent_id = stack.empty() ? out.tree->root() : stack.back().id;
    const Line*& prev = stack.empty() ? last_top : stack.back().last_child;
    if (parent && !parent->range.contains(l.range)) {
      return make_error(Errno::kEINVAL, "{} lies outside its parent on {}", line_words(l),
                        line_words(*parent));
    }
    if (prev && l.range.start <= prev->range.end) {
      return make_error(Errno::kEINVAL, "{} {} its sibling on {}", line_words(l),
                        l.range.start < prev->range.start ? "comes before" : "overlaps",
                        line_words(*prev));
    }
    const IomemClass cls = classify_iomem_name(l.name);
    auto id = out.tree->request_resource(parent_id, NewResource{l.range, l.name, cls.flags, cls.desc});
    if (id.is_error()) {
      return make_error(Errno::kEINVAL, "{}: {}", line_words(l), id.error().message());
    }
    prev = &l;
    stack.push_back(Open{&l, *id});
    nested = nested || l.level > 0;
  }
  out.resource_count = split.lines.size();

  if (split.elided) {
    out.warnings.push_back(fmt::format(
        "{} '...' line(s): the dump was elided and the tree lacks what they stand for",
        split.elided));
  }
  bool has_ram = false;
  const auto top = MUST(out.tree->children(out.tree->root()), "root exists");
  for (const ResourceInfo& r : top) has_ram = has_ram || r.name == "System RAM";
  if (!has_ram) {
    out.warnings.push_back(
        "no top-level 'System RAM' line: the dump is elided; RAM size and the KASLR "
        "direct-map end cannot be derived from it");
  }
  if (!top.empty() && top.front().range.start.raw() != 0) {
    out.warnings.push_back(fmt::format(
        "the first line starts at {}, not at 0 (x86 dumps always start at 0): the lines "
        "below it were probably left out",
        top.front().range.start));
  }
  if (!nested && split.lines.size() > 1) {
    out.warnings.push_back(
        "no indented lines: only top-level lines were kept (enough for the free-region "
        "search, not for device claims)");
  }
  return out;
}

Result<ParsedIomem> parse_iomem_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int e = errno;
    return make_error(e == ENOENT ? Errno::kENOENT : e == EACCES ? Errno::kEACCES : Errno::kEIO,
                      "cannot read iomem dump '{}': {}", path, std::strerror(e));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  auto parsed = parse_iomem(ss.str());
  if (parsed.is_error()) {
    return Error(parsed.error().code(), fmt::format("{}: {}", path, parsed.error().message()));
  }
  return parsed;
}

std::string format_iomem(const ResourceTree& tree) {
  const ResourceInfo root = MUST(tree.info(tree.root()), "root exists");
  const int width = root.range.end.raw() < 0x10000 ? 4 : 8;
  std::string out;
  for (const ResourceInfo& r : tree.walk()) {
    const unsigned depth = std::min(r.depth, kMaxIoresLevel);
    out += fmt::format("{:{}}{:0{}x}-{:0{}x} : {}\n", "", depth * 2, r.range.start.raw(), width,
                       r.range.end.raw(), width, r.name);
  }
  return out;
}

}  // namespace dpmm::phys
