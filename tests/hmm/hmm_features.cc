// The one place where a ported test is skipped because dpmm does not model something it
// needs yet. Each row names the test and the features it cannot run without; each feature
// says whether dpmm has it and, if not, why the test is skipped. When a feature lands, flip
// its row here (and update docs/hmm-selftests.md); nothing in the tests changes.
//
// Skips that the original itself makes (no coherent device, no free huge page, no gup_test
// driver) stay in the tests, with the original's messages.

#include <array>
#include <string>
#include <string_view>

#include "hmm_harness.h"

namespace dpmm::hmm_selftest {
namespace {

struct FeatureRow {
  Feature feature;
  bool available;
  std::string_view reason;  // the skip message while unavailable
};

// Availability follows the headers the mm layer has today, where a header tells.
constexpr std::array<FeatureRow, 6> kFeatures = {{
    {Feature::kPmdThp, true, "needs PMD-mapped THP (mm/huge_memory.h)"},
    {Feature::kDeviceThp, true,
     "needs device-private THP: PMD-level device-private entries and MIGRATE_VMA_SELECT_COMPOUND "
     "migration of whole THPs (mm/huge_memory.h, migrate/migrate_device.h)"},
    {Feature::kShmemFiles, DPMM_HMM_HAVE_SHMEM != 0,
     "needs tmpfs files and MAP_SHARED mappings (mm/shmem.h): not modelled yet (issue 3)"},
    {Feature::kMremap, DPMM_HMM_HAVE_MREMAP != 0,
     "needs mremap(2) (Mm::mremap): not modelled yet (issue 3)"},
    {Feature::kMadvise, DPMM_HMM_HAVE_MADVISE != 0,
     "needs madvise(2) (Mm::madvise): not modelled yet (issue 3)"},
    {Feature::kDeviceFileMmap, DPMM_HMM_HAVE_DEVICE_FILE_MMAP != 0,
     "needs mmap of the dmirror device file (vm_insert_page, VM_MIXEDMAP): not modelled yet "
     "(issue 3)"},
}};

// Which variants a row holds for.
enum class Variants : uint8_t { kAll, kPrivateOnly };

struct TestRow {
  std::string_view test;
  Feature feature;
  Variants variants = Variants::kAll;
};

constexpr std::array<TestRow, 22> kNeeds = {{
    {"anon_write_child", Feature::kMadvise},
    {"anon_write_child_shared", Feature::kShmemFiles},
    {"anon_write_huge", Feature::kMadvise},
    {"file_read", Feature::kShmemFiles},
    {"file_write", Feature::kShmemFiles},
    {"migrate_file_private", Feature::kShmemFiles},
    {"migrate_shared", Feature::kShmemFiles},
    {"mixedmap", Feature::kDeviceFileMmap},
    {"migrate_anon_huge_empty", Feature::kMadvise},
    {"migrate_anon_huge_zero", Feature::kMadvise},
    {"migrate_anon_huge_free", Feature::kMadvise},
    // MADV_COLLAPSE must succeed, and the private variant checks the PMD snapshot byte and
    // pagemap of a device THP (the coherent variant only needs system THP).
    {"migrate_anon_huge_fault", Feature::kPmdThp},
    {"migrate_anon_huge_fault", Feature::kDeviceThp, Variants::kPrivateOnly},
    {"migrate_partial_unmap_fault", Feature::kMadvise},
    {"migrate_remap_fault", Feature::kMadvise},
    {"migrate_remap_fault", Feature::kMremap},
    // FAIL_ALLOC fails the device's (or system's) allocation of a whole THP and the driver
    // falls back to base pages; without COMPOUND migration the THP is split before the driver
    // sees it, the flag hits a base page, which is then not migrated
    // (dmirror_migrate_alloc_and_copy: "if (!is_large) goto next"): -ENOENT.
    {"migrate_anon_huge_err", Feature::kPmdThp},
    {"migrate_anon_huge_err", Feature::kDeviceThp},
    {"migrate_anon_huge_zero_err", Feature::kPmdThp},
    {"migrate_anon_huge_zero_err", Feature::kDeviceThp},
    {"benchmark_thp_migration", Feature::kMadvise},
    {"migrate_anon_huge_fault", Feature::kMadvise},
}};

const FeatureRow& row(Feature f) {
  for (const FeatureRow& r : kFeatures) {
    if (r.feature == f) return r;
  }
  std::abort();  // every Feature has a row
}

}  // namespace

std::string unavailable_reason(std::string_view test, Variant variant) {
  for (const TestRow& t : kNeeds) {
    if (t.test != test) continue;
    if (t.variants == Variants::kPrivateOnly && variant != Variant::kPrivate) continue;
    const FeatureRow& f = row(t.feature);
    if (!f.available) return std::string(f.reason);
  }
  return {};
}

}  // namespace dpmm::hmm_selftest
