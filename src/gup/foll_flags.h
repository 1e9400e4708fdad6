// pinlab — FOLL_* flags of get_user_pages()/pin_user_pages() (spec §2).
//
// Current upstream values: the public enum of include/linux/mm_types.h and
// the internal flags of mm/internal.h (INTERNAL_GUP_FLAGS). The public ones
// are also #defined for C callers in include/pinlab/kapi.h.
#pragma once

#include "mm/folio.h"

namespace pl {

// --- public --------------------------------------------------------------------
inline constexpr unsigned FOLL_WRITE = 1u << 0;
inline constexpr unsigned FOLL_GET = 1u << 1;
inline constexpr unsigned FOLL_DUMP = 1u << 2;
inline constexpr unsigned FOLL_FORCE = 1u << 3;
inline constexpr unsigned FOLL_NOWAIT = 1u << 4;
inline constexpr unsigned FOLL_NOFAULT = 1u << 5;
inline constexpr unsigned FOLL_HWPOISON = 1u << 6;
inline constexpr unsigned FOLL_ANON = 1u << 7;
inline constexpr unsigned FOLL_LONGTERM = 1u << 8;
inline constexpr unsigned FOLL_SPLIT_PMD = 1u << 9;
inline constexpr unsigned FOLL_PCI_P2PDMA = 1u << 10;
inline constexpr unsigned FOLL_INTERRUPTIBLE = 1u << 11;
inline constexpr unsigned FOLL_HONOR_NUMA_FAULT = 1u << 12;

// --- internal (mm/internal.h) ----------------------------------------------------
inline constexpr unsigned FOLL_TOUCH = 1u << 16;
inline constexpr unsigned FOLL_TRIED = 1u << 17;
inline constexpr unsigned FOLL_REMOTE = 1u << 18;
inline constexpr unsigned FOLL_PIN = 1u << 19;
inline constexpr unsigned FOLL_FAST_ONLY = 1u << 20;
inline constexpr unsigned FOLL_UNLOCKABLE = 1u << 21;
inline constexpr unsigned FOLL_MADV_POPULATE = 1u << 22;

inline constexpr unsigned INTERNAL_GUP_FLAGS = FOLL_TOUCH | FOLL_TRIED | FOLL_REMOTE | FOLL_PIN | FOLL_FAST_ONLY |
                                               FOLL_UNLOCKABLE | FOLL_MADV_POPULATE;

// FOLL_SAME_FILE: proposed by Lorenzo Stoakes (v1-v3 of "remove the vmas
// parameter from GUP APIs", Apr 2023) so that io_uring could drop vmas[]; the
// slow path fails (-EFAULT, from check_vma_flags()) unless every VMA of the
// range has the first one's vm_file (NULL included). Jason Gunthorpe asked for
// it to be refused by GUP-fast, which the fast path's allowed-flags set does;
// it was dropped in v4 and never merged, so it only works with the config
// switch gup.foll_same_file=on (otherwise: WARN and -EINVAL).
// Its value is pinlab's own: the patch used 1 << 12, which FOLL_HONOR_NUMA_FAULT
// took in v6.5; bit 31 lies beyond both the public FOLL_* enum (bits 0-12,
// growing upwards) and mm/internal.h's internal flags (bits 16-22), so it can
// collide with neither as they grow.

inline constexpr unsigned FOLL_SAME_FILE = 1u << 31;

// Re-export (defined in mm/folio.h): a FOLL_PIN on a small folio adds this to _refcount.
using pl::GUP_PIN_COUNTING_BIAS;

}  // namespace pl
