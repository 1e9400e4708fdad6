// pinlab — allocation-context scopes (memalloc_pin_save/restore) and
// current_gfp_context().
#include "mm/gfp.h"

namespace pl {
namespace {
// Nesting depth of MemallocPinScope on this thread (upstream: PF_MEMALLOC_PIN
// in current->flags, saved and restored around the pinning section).
thread_local unsigned t_memalloc_pin_depth = 0;
}  // namespace

MemallocPinScope::MemallocPinScope() { ++t_memalloc_pin_depth; }
MemallocPinScope::~MemallocPinScope() { --t_memalloc_pin_depth; }
bool MemallocPinScope::active() { return t_memalloc_pin_depth > 0; }

gfp_t current_gfp_context(gfp_t gfp) {
    if (t_memalloc_pin_depth > 0) gfp &= ~__GFP_MOVABLE;
    return gfp;
}

}  // namespace pl
