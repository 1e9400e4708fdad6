// pinlab — folio_is_longterm_pinnable() (include/linux/mm.h).
#pragma once

#include "mm/physmem.h"

namespace pl {

// May this folio stay pinned indefinitely where it is? Not in ZONE_MOVABLE,
// not in CMA or isolated pageblocks, not device-coherent or fsdax memory;
// the zero page always may.
bool folio_is_longterm_pinnable(const PhysMem& mem, const Folio* folio);

}  // namespace pl
