// pinlab — VMA merging after a flag change (upstream mm/vma.c,
// vma_merge_existing_range()) and of a new anonymous mmap with its
// neighbours (vma_merge_new_range()).
//
// Only what upstream merges and the model can merge without more state:
// private anonymous VMAs (no file, no vm_ops) whose flags, anon_vma and
// linear page offsets agree; a new range, which has no anon_vma yet, also
// joins a neighbour with one that did not come from fork (as upstream, so
// that fork copies the whole VMA's PTEs, zero-page ones included). Upstream
// also merges file VMAs, and after a flag change VMAs of which one has no
// anon_vma yet; those stay split here (FIDELITY.md). A
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

// A neighbour a new private anonymous range [start, end) with `flags` may
// grow into: is_mergeable_vma() (VM_SOFTDIRTY does not count) and
// is_mergeable_anon_vma() for a range that has no anon_vma yet (case 2:
// the neighbour's, unless it came from a parent at fork).
bool can_merge_new(const Vma& v, vm_flags_t flags) {
    return v.file == nullptr && v.ops == nullptr && v.private_data == nullptr &&
           ((v.flags ^ flags) & ~VM_SOFTDIRTY) == 0 && !(v.flags & (VM_SPECIAL | VM_HUGETLB)) &&
           (!v.anon_vma || !v.anon_vma_forked);
}

}  // namespace

Vma* vma_merge_new_anon(MmStruct& mm, vaddr_t start, vaddr_t end, vm_flags_t flags) {
    const pgoff_t pgoff = start >> PAGE_SHIFT;  // an anonymous VMA's linear index
    Vma* prev = start > 0 ? mm.vma_lookup(start - 1) : nullptr;
    Vma* next = mm.vma_lookup(end);
    if (prev && (prev->end != start || !can_merge_new(*prev, flags) || prev->pgoff + prev->nr_pages() != pgoff))
        prev = nullptr;  // can_vma_merge_after()
    const pgoff_t end_pgoff = pgoff + ((end - start) >> PAGE_SHIFT);
    if (next && (next->start != end || !can_merge_new(*next, flags) || next->pgoff != end_pgoff))
        next = nullptr;  // can_vma_merge_before()
    // can_vma_merge_right(): both fit the new range, but must also fit each other.
    if (prev && next && prev->anon_vma && next->anon_vma && prev->anon_vma != next->anon_vma) next = nullptr;
    Vma* vma;
    if (prev) {
        vma = prev;
        if (next) {
            // prev takes next's anon_vma if it has none (dup_anon_vma()), then
            // spans both; next's entries now belong to prev.
            if (!prev->anon_vma && next->anon_vma) {
                next->anon_vma->get();
                prev->anon_vma = next->anon_vma;
                prev->anon_vma_forked = next->anon_vma_forked;
                prev->anon_vma->link(prev);
            }
            vma_set_end(*prev, next->end);
            vma_destroy(mm, next);
        } else {
            vma_set_end(*prev, end);
        }
    } else if (next) {
        // next grows down; rmap walkers read vm_start/vm_pgoff under the
        // anon_vma lock (vma_prepare()).
        vma = next;
        const vaddr_t old_start = next->start;
        if (next->anon_vma) {
            sync::WriteGuard g(next->anon_vma->lock);
            next->start = start;
            next->pgoff = pgoff;
        } else {
            next->start = start;
            next->pgoff = pgoff;
        }
        mm.rekey_vma(next, old_start);
    } else {
        return nullptr;
    }
    // __mmap_complete(): the result is soft-dirty as a new mapping is.
    vma_set_flags(*vma, vma->flags | VM_SOFTDIRTY);
    return vma;
}

Vma* vma_merge_neighbours(MmStruct& mm, Vma* vma) {
    if (Vma* next = mm.next_vma(vma); next && can_merge(*vma, *next)) absorb(mm, vma, next);
    if (Vma* prev = mm.prev_vma(vma); prev && can_merge(*prev, *vma)) {
        absorb(mm, prev, vma);
        vma = prev;
    }
    return vma;
}

}  // namespace pl
