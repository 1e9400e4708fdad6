// pinlab — allocation flags (gfp_t), reduced to what placement depends on.
#pragma once

#include <cstdint>

namespace pl {

using gfp_t = uint32_t;

inline constexpr gfp_t __GFP_MOVABLE = 1u << 0;  // may come from ZONE_MOVABLE or CMA pageblocks
inline constexpr gfp_t __GFP_ZERO = 1u << 1;     // contents zeroed (the model's frames always start zero)
inline constexpr gfp_t __GFP_COMP = 1u << 2;     // compound (large folio) when order > 0
inline constexpr gfp_t __GFP_NOWARN = 1u << 3;
inline constexpr gfp_t __GFP_NORETRY = 1u << 4;  // no compaction on failure (opportunistic THP)
inline constexpr gfp_t __GFP_THISNODE = 1u << 5;

inline constexpr gfp_t GFP_KERNEL = 0;
inline constexpr gfp_t GFP_USER = 0;                             // unmovable user allocation
inline constexpr gfp_t GFP_HIGHUSER_MOVABLE = __GFP_MOVABLE;     // anon pages, page cache
inline constexpr gfp_t GFP_TRANSHUGE = __GFP_MOVABLE | __GFP_COMP | __GFP_NOWARN | __GFP_NORETRY;

// memalloc_pin_save()/restore(): while a FOLL_LONGTERM pin is being taken,
// this thread's allocations lose __GFP_MOVABLE so that faulted-in pages are
// born longterm-pinnable (current_gfp_context()).
class MemallocPinScope {
public:
    MemallocPinScope();
    ~MemallocPinScope();
    MemallocPinScope(const MemallocPinScope&) = delete;
    MemallocPinScope& operator=(const MemallocPinScope&) = delete;
    static bool active();
};

// current_gfp_context(): applies the thread's scopes to `gfp`.
gfp_t current_gfp_context(gfp_t gfp);

}  // namespace pl
