// pinlab — merging a VMA with its neighbours after its flags changed.
#pragma once

#include "mm/mm_struct.h"

namespace pl {

// vma_merge_existing_range() as mprotect_fixup() reaches it through
// vma_modify_flags(): `vma` absorbs, or is absorbed by, an adjacent VMA that
// upstream would merge it with. Returns the VMA that now covers vma->start.
// Caller holds the mmap_lock for write.
Vma* vma_merge_neighbours(MmStruct& mm, Vma* vma);

// vma_merge_new_range() as __mmap_region() reaches it for a new private
// anonymous range [start, end) with `flags`, not yet a VMA: the VMA below
// and/or above grows over it. Returns that VMA, or null when neither can
// (the caller then makes a new VMA). Caller holds the mmap_lock for write.
Vma* vma_merge_new_anon(MmStruct& mm, vaddr_t start, vaddr_t end, vm_flags_t flags);

}  // namespace pl
