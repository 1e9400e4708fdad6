// pinlab — VMA merging after a flag change (upstream mm/vma.c,
// vma_merge_existing_range()).
//
// Only what upstream merges and the model can merge without more state:
// private anonymous VMAs (no file, no vm_ops) whose flags, anon_vma and
// linear page offsets agree. Upstream also merges file VMAs and VMAs of
// which one has no anon_vma yet; those stay split here (FIDELITY.md). A
// merge matters beyond /proc/PID/maps: MADV_COLLAPSE, THP faults and
// mremap() only work within one VMA, so a range split by mprotect() and
// restored again must become one VMA, as it does upstream.
#include "mm/vma_merge.h"

#include "mm/anon_vma.h"
#include "mm/internal.h"
#include "mm/mmap.h"

namespace pl {

namespace {

// is_mergeable_vma() + is_mergeable_anon_vma() + the vm_pgoff check of
// can_vma_merge_before()/after(), for anonymous VMAs.
bool can_merge(const Vma& lower, const Vma& upper) {
    return lower.end == upper.start && lower.file == nullptr && upper.file == nullptr && lower.ops == nullptr &&
           upper.ops == nullptr && lower.private_data == nullptr && upper.private_data == nullptr &&
           lower.flags == upper.flags && !(lower.flags & (VM_SPECIAL | VM_HUGETLB)) &&
           lower.anon_vma == upper.anon_vma && lower.pgoff + lower.nr_pages() == upper.pgoff;
}

// `lower` grows over `upper`, which goes. As in split_vma(), vm_end changes
// under the anon_vma lock the rmap walkers read it under; a walk in between
// may visit the overlap twice, which is harmless.
void absorb(MmStruct& mm, Vma* lower, Vma* upper) {
    if (lower->anon_vma) {
        sync::WriteGuard g(lower->anon_vma->lock);
        lower->end = upper->end;
    } else {
        lower->end = upper->end;
    }
    vma_destroy(mm, upper);  // its entries now belong to `lower`
}

}  // namespace

Vma* vma_merge_neighbours(MmStruct& mm, Vma* vma) {
    if (Vma* next = mm.next_vma(vma); next && can_merge(*vma, *next)) absorb(mm, vma, next);
    if (Vma* prev = mm.prev_vma(vma); prev && can_merge(*prev, *vma)) {
        absorb(mm, prev, vma);
        vma = prev;
    }
    return vma;
}

}  // namespace pl
