// EntryCodec (arch/entry.h) and the softleaf predicates (arch/softleaf.h): building and reading
// the PTE words that every fault and every migration step goes through.
//
// Each codec benchmark runs for the four (arch, swap numbering) pairs. A device-private entry
// holds the device page's PFN in the legacy numbering and its device-private offset in the
// dpas numbering. Words and leaves come from fixed tables of 1024 entries so that the encoder
// and decoder see varying payloads.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "arch/arch.h"
#include "arch/entry.h"
#include "arch/pfn_or_offset.h"
#include "arch/softleaf.h"
#include "arch/swap_numbering.h"
#include "base/result.h"
#include "base/types.h"

namespace dpmm::bench {
namespace {

using arch::ArchKind;
using arch::EntryCodec;
using arch::EntryLevel;
using arch::PfnOrOffset;
using arch::Prot;
using arch::Softleaf;
using arch::SwapNumberingKind;
using arch::SwpBit;

struct Config {
  ArchKind arch;
  SwapNumberingKind numbering;
};

constexpr size_t kTable = 1024;
constexpr uint64_t kPfnBase = 0x12'3450;  // an ordinary RAM pfn (about 4.5 GiB)
constexpr Prot kProt = Prot::kWrite | Prot::kUser | Prot::kAccessed | Prot::kDirty;

EntryCodec codec_for(Config c) { return EntryCodec(arch::params_for(c.arch), c.numbering); }

// Where the i-th device page of the table lives: by PFN (legacy, inside a device-private
// window high in physical space) or by offset (dpas).
PfnOrOffset device_page(Config c, uint64_t i) {
  return c.numbering == SwapNumberingKind::kLegacy ? PfnOrOffset::of_pfn(Pfn(0x3ff'0000 + i))
                                                   : PfnOrOffset::of_offset(DevPrivOffset(i));
}

std::vector<uint64_t> present_words(const EntryCodec& codec) {
  std::vector<uint64_t> w;
  for (uint64_t i = 0; i < kTable; ++i) {
    w.push_back(MUST(codec.make_present(EntryLevel::kPte, Pfn(kPfnBase + i), kProt), "present"));
  }
  return w;
}

std::vector<uint64_t> device_private_words(const EntryCodec& codec, Config c) {
  std::vector<uint64_t> w;
  for (uint64_t i = 0; i < kTable; ++i) {
    const Softleaf leaf =
        MUST(arch::make_writable_device_private_entry(codec.format(), device_page(c, i)), "leaf");
    w.push_back(MUST(codec.make_swap(EntryLevel::kPte, leaf, SwpBit::kExclusive), "swap pte"));
  }
  return w;
}

void BM_EncodePresent(benchmark::State& state, Config c) {
  const EntryCodec codec = codec_for(c);
  uint64_t i = 0;
  for (auto _ : state) {
    Result<uint64_t> w = codec.make_present(EntryLevel::kPte, Pfn(kPfnBase + (i++ & 0xffff)), kProt);
    benchmark::DoNotOptimize(w);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_DecodePresent(benchmark::State& state, Config c) {
  const EntryCodec codec = codec_for(c);
  const std::vector<uint64_t> words = present_words(codec);
  size_t i = 0;
  for (auto _ : state) {
    arch::DecodedEntry d = codec.decode(EntryLevel::kPte, words[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

// make_writable_device_private_entry + the swap PTE (what migrate_vma_pages installs).
void BM_EncodeDevicePrivate(benchmark::State& state, Config c) {
  const EntryCodec codec = codec_for(c);
  uint64_t i = 0;
  for (auto _ : state) {
    Result<Softleaf> leaf =
        arch::make_writable_device_private_entry(codec.format(), device_page(c, i++ & 0xffff));
    Result<uint64_t> w = codec.make_swap(EntryLevel::kPte, *leaf, SwpBit::kExclusive);
    benchmark::DoNotOptimize(w);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_DecodeDevicePrivate(benchmark::State& state, Config c) {
  const EntryCodec codec = codec_for(c);
  const std::vector<uint64_t> words = device_private_words(codec, c);
  size_t i = 0;
  for (auto _ : state) {
    arch::DecodedEntry d = codec.decode(EntryLevel::kPte, words[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

// The fault path's read: softleaf_from_pte, is it device-private, and where the page is.
void BM_DevicePrivateFaultLookup(benchmark::State& state, Config c) {
  const EntryCodec codec = codec_for(c);
  const std::vector<uint64_t> words = device_private_words(codec, c);
  size_t i = 0;
  for (auto _ : state) {
    const Softleaf leaf = codec.softleaf_from(EntryLevel::kPte, words[i++ & (kTable - 1)]);
    bool dp = arch::softleaf_is_device_private(leaf);
    Result<PfnOrOffset> where = arch::softleaf_to_pfn_or_offset(leaf);
    benchmark::DoNotOptimize(dp);
    benchmark::DoNotOptimize(where);
  }
  state.SetItemsProcessed(state.iterations());
}

// One of each kind of softleaf the numbering has, repeated to fill the table.
std::vector<Softleaf> mixed_leaves(Config c) {
  const EntryCodec codec = codec_for(c);
  const arch::SoftleafFormat f = codec.format();
  std::vector<Softleaf> kinds = {
      MUST(arch::make_swap_entry(f, 1, 0x40), "swap"),
      MUST(arch::make_readable_migration_entry(f, Pfn(kPfnBase)), "migration read"),
      MUST(arch::make_writable_migration_entry(f, Pfn(kPfnBase + 1)), "migration write"),
      MUST(arch::make_readable_device_private_entry(f, device_page(c, 2)), "device read"),
      MUST(arch::make_writable_device_private_entry(f, device_page(c, 3)), "device write"),
      MUST(arch::make_device_exclusive_entry(f, Pfn(kPfnBase + 4)), "device exclusive"),
      MUST(arch::make_hwpoison_entry(f, Pfn(kPfnBase + 5)), "hwpoison"),
      MUST(arch::make_pte_marker_entry(f, arch::PteMarker::kGuard), "marker"),
  };
  if (c.numbering == SwapNumberingKind::kDpas) {
    kinds.push_back(MUST(arch::make_writable_migration_device_private_entry(f, DevPrivOffset(6)),
                         "migration device private"));
  }
  std::vector<Softleaf> out;
  for (size_t i = 0; i < kTable; ++i) out.push_back(kinds[i % kinds.size()]);
  return out;
}

void BM_SoftleafType(benchmark::State& state, Config c) {
  const std::vector<Softleaf> leaves = mixed_leaves(c);
  size_t i = 0;
  for (auto _ : state) {
    arch::SoftleafType t = arch::softleaf_type(leaves[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(t);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SoftleafIsDevicePrivate(benchmark::State& state, Config c) {
  const std::vector<Softleaf> leaves = mixed_leaves(c);
  size_t i = 0;
  for (auto _ : state) {
    bool b = arch::softleaf_is_device_private(leaves[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(b);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SoftleafIsMigration(benchmark::State& state, Config c) {
  const std::vector<Softleaf> leaves = mixed_leaves(c);
  size_t i = 0;
  for (auto _ : state) {
    bool b = arch::softleaf_is_migration(leaves[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(b);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SoftleafHasPfn(benchmark::State& state, Config c) {
  const std::vector<Softleaf> leaves = mixed_leaves(c);
  size_t i = 0;
  for (auto _ : state) {
    bool b = arch::softleaf_has_pfn(leaves[i++ & (kTable - 1)]);
    benchmark::DoNotOptimize(b);
  }
  state.SetItemsProcessed(state.iterations());
}

constexpr double kMinTime = 0.2;
constexpr Config kX86Legacy{ArchKind::kX86_64, SwapNumberingKind::kLegacy};
constexpr Config kX86Dpas{ArchKind::kX86_64, SwapNumberingKind::kDpas};
constexpr Config kArmLegacy{ArchKind::kArm64, SwapNumberingKind::kLegacy};
constexpr Config kArmDpas{ArchKind::kArm64, SwapNumberingKind::kDpas};

#define DPMM_BENCH_EACH_CONFIG(fn)                                       \
  BENCHMARK_CAPTURE(fn, x86_64_legacy, kX86Legacy)->MinTime(kMinTime); \
  BENCHMARK_CAPTURE(fn, x86_64_dpas, kX86Dpas)->MinTime(kMinTime);     \
  BENCHMARK_CAPTURE(fn, arm64_legacy, kArmLegacy)->MinTime(kMinTime);  \
  BENCHMARK_CAPTURE(fn, arm64_dpas, kArmDpas)->MinTime(kMinTime)

// The predicates depend on the numbering only (the arch sets SWP_PFN_BITS, not the types).
#define DPMM_BENCH_EACH_NUMBERING(fn)                              \
  BENCHMARK_CAPTURE(fn, legacy, kX86Legacy)->MinTime(kMinTime); \
  BENCHMARK_CAPTURE(fn, dpas, kX86Dpas)->MinTime(kMinTime)

DPMM_BENCH_EACH_CONFIG(BM_EncodePresent);
DPMM_BENCH_EACH_CONFIG(BM_DecodePresent);
DPMM_BENCH_EACH_CONFIG(BM_EncodeDevicePrivate);
DPMM_BENCH_EACH_CONFIG(BM_DecodeDevicePrivate);
DPMM_BENCH_EACH_CONFIG(BM_DevicePrivateFaultLookup);
DPMM_BENCH_EACH_NUMBERING(BM_SoftleafType);
DPMM_BENCH_EACH_NUMBERING(BM_SoftleafIsDevicePrivate);
DPMM_BENCH_EACH_NUMBERING(BM_SoftleafIsMigration);
DPMM_BENCH_EACH_NUMBERING(BM_SoftleafHasPfn);

}  // namespace
}  // namespace dpmm::bench

BENCHMARK_MAIN();
