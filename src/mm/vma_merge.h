// pinlab — merging a VMA with its neighbours after its flags changed.
#pragma once

#include "mm/mm_struct.h"

namespace pl {

// vma_merge_existing_range() as mprotect_fixup() reaches it through
// vma_modify_flags(): `vma` absorbs, or is absorbed by, an adjacent VMA that
// upstream would merge it with. Returns the VMA that now covers vma->start.
// Caller holds the mmap_lock for write.
Vma* vma_merge_neighbours(MmStruct& mm, Vma* vma);

}  // namespace pl
