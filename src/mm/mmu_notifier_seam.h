// The phase-1 MMU-notifier seam, superseded by mmu_notifier.h (subscriptions, flags, release).
#pragma once

#include "mm/mmu_notifier.h"
