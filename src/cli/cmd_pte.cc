// dpmm pte: decode and encode PTE/PMD words, bit-exact with the kernel.
//
//   dpmm pte decode --arch A [--design D] [--level pte|pmd] VALUE...
//   dpmm pte encode --arch A --design D [--level pte|pmd] --pfn N [--write --user ...]
//   dpmm pte encode --arch A --design D [--level pte|pmd] --type NAME --offset N [--exclusive ...]
//
// The design picks the swap numbering (legacy: today's kernel; dpas/dpas-zone: the series',
// with SWP_MIGRATION_DEVICE_*) and so whether a device-private entry's offset is a PFN or a
// device-private offset.
#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "arch/entry.h"
#include "arch/softleaf.h"
#include "arch/swap_numbering.h"
#include "base/size.h"
#include "cli/command.h"
#include "cli/output.h"

namespace dpmm::cli {

namespace {

struct PteCommon {
  std::string arch;
  std::string design = "legacy";
  std::string level = "pte";
  bool five_level = false;
  bool json = false;
};

struct DecodeOptions {
  PteCommon c;
  std::vector<std::string> values;
};

struct EncodeOptions {
  PteCommon c;
  std::optional<std::string> pfn;
  std::optional<std::string> type;
  std::optional<std::string> offset;
  bool write = false, user = false, exec = false, accessed = false, dirty = false;
  bool special = false, soft_dirty = false, uffd_wp = false, global = false, prot_none = false;
  bool exclusive = false;
};

struct Codec {
  arch::EntryCodec codec;
  arch::EntryLevel level;
};

Result<Codec> make_codec(const PteCommon& c) {
  if (c.arch.empty()) return make_error(Errno::kEINVAL, "--arch is required (x86_64 or arm64)");
  const arch::ArchKind kind = TRY(arch::parse_arch(c.arch));
  const arch::SwapNumberingKind numbering = TRY(arch::parse_numbering(c.design));
  if (c.five_level && kind != arch::ArchKind::kX86_64) {
    return make_error(Errno::kEINVAL, "--five-level is an x86_64 paging mode");
  }
  arch::EntryLevel level;
  if (c.level == "pte") {
    level = arch::EntryLevel::kPte;
  } else if (c.level == "pmd") {
    level = arch::EntryLevel::kPmd;
  } else {
    return make_error(Errno::kEINVAL, "--level '{}': expected pte or pmd", c.level);
  }
  const arch::ArchParams params = kind == arch::ArchKind::kX86_64
                                      ? arch::x86_64_params(c.five_level
                                                                ? arch::PagingMode::kFiveLevel
                                                                : arch::PagingMode::kFourLevel)
                                      : arch::arm64_params();
  return Codec{arch::EntryCodec(params, numbering), level};
}

// Numbers as users write them: decimal or 0x-hex; no size suffixes for page indexes.
Result<uint64_t> parse_number(std::string_view what, std::string_view text) {
  uint64_t v = 0;
  int base = 10;
  std::string_view t = text;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    return make_error(Errno::kEINVAL, "{} '{}' is not a decimal or 0x-hex 64-bit number", what,
                      text);
  }
  return v;
}

nlohmann::json decoded_json(const arch::DecodedEntry& d) {
  nlohmann::json j = {{"value", hex(d.raw)},
                      {"kind", std::string(arch::kind_name(d.kind))},
                      {"present", d.kind == arch::DecodedEntry::Kind::kPresent}};
  switch (d.kind) {
    case arch::DecodedEntry::Kind::kNone:
      break;
    case arch::DecodedEntry::Kind::kTable:
      j["pfn"] = d.pfn.raw();
      break;
    case arch::DecodedEntry::Kind::kPresent:
      j["pfn"] = d.pfn.raw();
      j["prot"] = arch::prot_to_string(d.prot);
      for (auto [name, bit] : {std::pair{"write", arch::Prot::kWrite},
                               {"user", arch::Prot::kUser},
                               {"exec", arch::Prot::kExec},
                               {"accessed", arch::Prot::kAccessed},
                               {"dirty", arch::Prot::kDirty},
                               {"special", arch::Prot::kSpecial},
                               {"soft_dirty", arch::Prot::kSoftDirty},
                               {"uffd_wp", arch::Prot::kUffdWp},
                               {"global", arch::Prot::kGlobal},
                               {"prot_none", arch::Prot::kProtNone}}) {
        j[name] = arch::has(d.prot, bit);
      }
      j["hw_valid"] = d.hw_valid;
      j["attr_index"] = d.attr_index;
      break;
    case arch::DecodedEntry::Kind::kSwap: {
      const arch::Softleaf leaf = d.leaf;
      j["type"] = leaf.swp_type();
      j["type_name"] = arch::type_name(leaf.format().swap_numbering(), leaf.swp_type());
      j["softleaf_type"] = std::string(arch::softleaf_type_name(arch::softleaf_type(leaf)));
      j["offset"] = leaf.swp_offset();
      if (arch::softleaf_has_pfn(leaf)) {
        j["offset_is"] = arch::softleaf_holds_offset(leaf) ? "device-private offset" : "pfn";
      }
      j["exclusive"] = arch::has(d.swp_bits, arch::SwpBit::kExclusive);
      j["soft_dirty"] = arch::has(d.swp_bits, arch::SwpBit::kSoftDirty);
      j["uffd_wp"] = arch::has(d.swp_bits, arch::SwpBit::kUffdWp);
      break;
    }
  }
  return j;
}

std::string decoded_text(const Codec& c, const arch::DecodedEntry& d) {
  std::string t = fmt::format("{:#018x}  {}", d.raw, arch::describe(d));
  if (d.kind == arch::DecodedEntry::Kind::kSwap && arch::softleaf_has_pfn(d.leaf)) {
    t += arch::softleaf_holds_offset(d.leaf)
             ? "  (offset is a device-private offset, not a PFN)"
             : "  (offset is a PFN)";
  }
  const Status valid = c.codec.validate(c.level, d.raw);
  if (valid.is_error()) t += fmt::format("\n  NOT A KERNEL ENTRY: {}", valid.error().message());
  return t + "\n";
}

int run_decode(const DecodeOptions& o) {
  auto codec = make_codec(o.c);
  if (codec.is_error()) return fail_input("pte decode", codec.error());
  nlohmann::json entries = nlohmann::json::array();
  std::string text;
  bool all_valid = true;
  for (const std::string& v : o.values) {
    auto word = parse_number("value", v);
    if (word.is_error()) return fail_input("pte decode", word.error());
    const arch::DecodedEntry d = codec->codec.decode(codec->level, *word);
    const Status valid = codec->codec.validate(codec->level, *word);
    nlohmann::json j = decoded_json(d);
    j["valid"] = valid.is_ok();
    if (valid.is_error()) {
      all_valid = false;
      j["invalid_reason"] = valid.error().message();
    }
    entries.push_back(std::move(j));
    text += decoded_text(*codec, d);
  }
  const nlohmann::json out = {{"arch", o.c.arch},
                              {"design", o.c.design},
                              {"level", o.c.level},
                              {"entries", std::move(entries)}};
  print_output(o.c.json, out, text);
  return all_valid ? kExitOk : kExitFails;
}

Result<arch::Softleaf> build_leaf(const arch::EntryCodec& codec, const EncodeOptions& o) {
  const arch::SoftleafFormat f = codec.format();
  const unsigned type = TRY(arch::parse_type_name(f.swap_numbering(), *o.type));
  if (!o.offset) return make_error(Errno::kEINVAL, "--type needs --offset");
  const uint64_t offset = TRY(parse_number("--offset", *o.offset));
  // Real swap slots go through make_swap_entry (refuses slot 0); the special types are built
  // raw and then validated, so every value the kernel could produce is reachable.
  if (type < f.swap_numbering().max_swapfiles) return arch::make_swap_entry(f, type, offset);
  const arch::Softleaf leaf = TRY(arch::swp_entry(f, type, offset));
  TRY(arch::softleaf_validate(leaf));
  return leaf;
}

int run_encode(const EncodeOptions& o) {
  auto codec_or = make_codec(o.c);
  if (codec_or.is_error()) return fail_input("pte encode", codec_or.error());
  const Codec& c = *codec_or;
  if (o.pfn.has_value() == o.type.has_value()) {
    return fail_input("pte encode",
                      make_error(Errno::kEINVAL,
                                 "give either --pfn (a present entry) or --type and --offset (a "
                                 "swap entry)"));
  }
  Result<uint64_t> word = make_error(Errno::kEINVAL, "unreachable");
  if (o.pfn) {
    auto pfn = parse_number("--pfn", *o.pfn);
    if (pfn.is_error()) return fail_input("pte encode", pfn.error());
    if (o.exclusive) {
      return fail_input("pte encode",
                        make_error(Errno::kEINVAL, "--exclusive is a swap-entry bit"));
    }
    arch::Prot prot = arch::Prot::kNone;
    for (auto [set, bit] : {std::pair{o.write, arch::Prot::kWrite},
                            {o.user, arch::Prot::kUser},
                            {o.exec, arch::Prot::kExec},
                            {o.accessed, arch::Prot::kAccessed},
                            {o.dirty, arch::Prot::kDirty},
                            {o.special, arch::Prot::kSpecial},
                            {o.soft_dirty, arch::Prot::kSoftDirty},
                            {o.uffd_wp, arch::Prot::kUffdWp},
                            {o.global, arch::Prot::kGlobal},
                            {o.prot_none, arch::Prot::kProtNone}}) {
      if (set) prot |= bit;
    }
    word = c.codec.make_present(c.level, Pfn(*pfn), prot);
  } else {
    if (o.write || o.user || o.exec || o.accessed || o.dirty || o.special || o.global ||
        o.prot_none) {
      return fail_input("pte encode", make_error(Errno::kEINVAL,
                                                 "permission flags belong to present entries; a "
                                                 "swap entry takes --exclusive, --soft-dirty, "
                                                 "--uffd-wp"));
    }
    auto leaf = build_leaf(c.codec, o);
    if (leaf.is_error()) return fail_input("pte encode", leaf.error());
    arch::SwpBit swp = arch::SwpBit::kNone;
    if (o.exclusive) swp |= arch::SwpBit::kExclusive;
    if (o.soft_dirty) swp |= arch::SwpBit::kSoftDirty;
    if (o.uffd_wp) swp |= arch::SwpBit::kUffdWp;
    word = c.codec.make_swap(c.level, *leaf, swp);
  }
  if (word.is_error()) return fail_input("pte encode", word.error());
  const arch::DecodedEntry d = c.codec.decode(c.level, *word);
  nlohmann::json j = decoded_json(d);
  print_output(o.c.json, j, decoded_text(c, d));
  return kExitOk;
}

void add_common(CLI::App* cmd, PteCommon& c) {
  cmd->add_option("--arch", c.arch, "x86_64 or arm64")->required();
  cmd->add_option("--design", c.design,
                  "legacy (default), dpas or dpas-zone: picks the swap-type numbering");
  cmd->add_option("--level", c.level, "pte (default) or pmd");
  cmd->add_flag("--five-level", c.five_level, "x86_64 with 5-level paging (MAX_PHYSMEM_BITS 52)");
  cmd->add_flag("--json", c.json, "Print one JSON object");
}

}  // namespace

void add_pte_command(CLI::App& app, Action& action) {
  CLI::App* pte = app.add_subcommand("pte", "Decode and encode PTE/PMD words, bit-exact");
  pte->require_subcommand(1);

  auto dec = std::make_shared<DecodeOptions>();
  CLI::App* d = pte->add_subcommand("decode", "Explain PTE or PMD words");
  add_common(d, dec->c);
  d->add_option("values", dec->values, "Entry words, decimal or 0x-hex")->required();
  d->callback([&action, dec] { action = [dec] { return run_decode(*dec); }; });

  auto enc = std::make_shared<EncodeOptions>();
  CLI::App* e = pte->add_subcommand("encode", "Build a PTE or PMD word");
  add_common(e, enc->c);
  e->add_option("--pfn", enc->pfn, "Present entry: the page frame number");
  e->add_option("--type", enc->type,
                "Swap entry: the type, by kernel name (SWP_DEVICE_WRITE, SWP_MIGRATION_READ, ...) "
                "or number");
  e->add_option("--offset", enc->offset, "Swap entry: the offset (PFN, device-private offset, "
                                         "swap slot or marker bits)");
  e->add_flag("--write", enc->write);
  e->add_flag("--user", enc->user);
  e->add_flag("--exec", enc->exec);
  e->add_flag("--accessed", enc->accessed);
  e->add_flag("--dirty", enc->dirty);
  e->add_flag("--special", enc->special);
  e->add_flag("--soft-dirty", enc->soft_dirty, "present or swap soft-dirty (x86 only)");
  e->add_flag("--uffd-wp", enc->uffd_wp, "present or swap uffd-wp");
  e->add_flag("--global", enc->global);
  e->add_flag("--prot-none", enc->prot_none);
  e->add_flag("--exclusive", enc->exclusive, "swap entry: anon-exclusive");
  e->callback([&action, enc] { action = [enc] { return run_encode(*enc); }; });
}

}  // namespace dpmm::cli
