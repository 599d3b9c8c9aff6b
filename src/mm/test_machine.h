// A small machine for mm tests: x86_64 (or arm64) with 256 MiB of RAM, built from TOML text,
// and a Kernel on it with every descriptor initialised (exact free-page counts).
#pragma once

#include <memory>

#include "arch/arch.h"
#include "arch/swap_numbering.h"
#include "mm/kernel.h"

namespace dpmm::mm::testing {

std::unique_ptr<Kernel> make_test_kernel(
    arch::SwapNumberingKind numbering = arch::SwapNumberingKind::kLegacy,
    arch::ArchKind arch = arch::ArchKind::kX86_64, ThpPolicy thp = ThpPolicy::kMadvise,
    UseHugeZeroPage huge_zero = UseHugeZeroPage::kYes);

}  // namespace dpmm::mm::testing
