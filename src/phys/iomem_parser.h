// The /proc/iomem text format: parse a dump into a resource tree, and print a tree back.
//
// The kernel prints (kernel/resource.c r_show()) one line per resource, depth first:
//   "%*s%0*llx-%0*llx : %s\n"  indent = 2 * depth (depth capped at MAX_IORES_LEVEL = 5),
//                              width 8 hex digits (4 when the root ends below 0x10000),
// and prints 0 for every address unless the reader has CAP_SYS_ADMIN.
//
// The parser takes text as people post it: CRLF line ends, trailing spaces, tabs around the
// separator or as indentation (one tab = one level), any number of hex digits up to 16,
// names with spaces and colons, blank lines. It refuses, naming the line and what is wrong:
// bad hex, start > end, a child outside its parent, siblings out of order or overlapping, an
// indentation that jumps more than one level, an odd number of indenting spaces, a line
// without " : ", and empty input. A dump whose addresses are all zero (read without root) is
// refused with EACCES. Signs of an elided dump become warnings.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "phys/resource.h"

namespace dpmm::phys {

inline constexpr unsigned kMaxIoresLevel = 5;  // MAX_IORES_LEVEL in kernel/resource.c

struct ParsedIomem {
  std::unique_ptr<ResourceTree> tree;  // root [0, 2^64 - 1]; flags from classify_iomem_name()
  size_t resource_count = 0;
  // What looks left out: "..." lines, no System RAM, a first line above address 0, no nested
  // lines at all.
  std::vector<std::string> warnings;
};

// EINVAL "line N: ..." for malformed text; EACCES for a dump read without root.
Result<ParsedIomem> parse_iomem(std::string_view text);
// As parse_iomem, reading `path` (ENOENT/EACCES/EIO naming the path when it cannot be read).
Result<ParsedIomem> parse_iomem_file(const std::string& path);

// The tree as `cat /proc/iomem` prints it as root.
std::string format_iomem(const ResourceTree& tree);

}  // namespace dpmm::phys
