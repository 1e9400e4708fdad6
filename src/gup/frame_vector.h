// pinlab — frame vectors (include/pinlab/frame_vector.h): which
// get_vaddr_frames() each era runs. The C entry points are in frame_vector.cpp.
//
// Upstream history (seed 000 and torvalds/linux):
//   v4.2   mm/frame_vector.c (Jan Kara): the first VMA decides between
//          get_user_pages_locked() (FOLL_GET) and follow_pfn() for
//          VM_IO|VM_PFNMAP (raw PFNs, no reference).
//   v4.15  filesystem-DAX VMAs refused with -EOPNOTSUPP.
//   v5.8   55a650c35fea: pin_user_pages_locked() (FOLL_PIN), unpin on put.
//   v5.12  04769cb1c45a (seed 000, Daniel Vetter): pin_user_pages_fast(
//          FOLL_FORCE|FOLL_WRITE|FOLL_LONGTERM) first, follow_pfn() only when
//          that pinned nothing; the gup_flags parameter went away. ~v5.16
//          (Hans Verkuil): the pin's error wins over follow_pfn()'s -EINVAL.
//   v6.1   6647e76ab623 (Linus Torvalds): no follow_pfn() fallback; WARN_ONCE.
//   v6.2   FOLL_FORCE dropped, `bool write` parameter (David Hildenbrand).
//   v6.6   735de5caf79e: the WARN_ONCE replaced by a comment.
#pragma once

#include <cstdint>

#include "base/config.h"

namespace pl {

enum class FrameVectorImpl : uint8_t {
    GupLocked,        // before v5.8: VMA checks, get_user_pages_locked(), follow_pfn() for PFN maps
    PinLocked,        // v5.8 - v5.11: the same with pin_user_pages_locked()
    PinFastFallback,  // v5.12 - v6.0: pin_user_pages_fast(FOLL_LONGTERM), follow_pfn() if it pinned nothing
    PinFast,          // v6.1 on: pin_user_pages_fast(FOLL_LONGTERM) only
};

FrameVectorImpl frame_vector_impl(Era era);
// The gup_flags that era's get_vaddr_frames() hands to GUP for `write`.
unsigned frame_vector_gup_flags(Era era, bool write);
// v6.1 - v6.5 WARN when pin_user_pages_fast() took nothing.
bool frame_vector_warns_no_pfn_fallback(Era era);
// v4.15 on: fsdax VMAs are refused (-EOPNOTSUPP) by the VMA-checking versions.
bool frame_vector_refuses_fsdax(Era era);

}  // namespace pl
