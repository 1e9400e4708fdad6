// pinlab — madvise() (upstream mm/madvise.c).
#include <sys/mman.h>

#include "pinlab/uapi.h"
#include "gup/populate.h"
#include "mm/internal.h"
#include "mm/mmap.h"
#include "mm/vma_merge.h"

namespace pl {

namespace {

bool advice_needs_write_lock(int advice) {
    switch (advice) {
        case MADV_DONTNEED:
        case MADV_POPULATE_READ:
        case MADV_POPULATE_WRITE:
            return false;
        default:
            return true;
    }
}

bool known_advice(int advice) {
    switch (advice) {
        case MADV_NORMAL: case MADV_RANDOM: case MADV_SEQUENTIAL: case MADV_WILLNEED:
        case MADV_DONTNEED: case MADV_HUGEPAGE: case MADV_NOHUGEPAGE: case MADV_COLLAPSE:
        case MADV_DONTFORK: case MADV_DOFORK: case MADV_WIPEONFORK: case MADV_KEEPONFORK:
        case MADV_POPULATE_READ: case MADV_POPULATE_WRITE:
            return true;
        default:
            return false;
    }
}

// MADV_POPULATE_(READ|WRITE): madvise_populate() (src/gup/populate.cpp)
// faults the whole range in through GUP, stopping at the first hole or error.
// Caller holds the mmap_lock for read.
Status populate(MmStruct& mm, vaddr_t start, vaddr_t end, bool write) {
    int r = madvise_populate(mm, start, end, write ? PopulateAccess::Write : PopulateAccess::Read);
    if (r) return Error(-r);
    return ok_status();
}

Status set_vma_flags(MmStruct& mm, Vma*& vma, vaddr_t a, vaddr_t b, vm_flags_t set, vm_flags_t clear) {
    vm_flags_t nf = (vma->flags | set) & ~clear;
    if (nf == vma->flags) return ok_status();
    PL_TRY(split_vma_range(mm, a, b));
    vma = mm.vma_lookup(a);
    vma_set_flags(*vma, nf);
    // madvise_update_vma() → vma_modify_flags(): merge back with neighbours.
    vma = vma_merge_neighbours(mm, vma);
    return ok_status();
}

Status madvise_vma(MmStruct& mm, Vma* vma, vaddr_t a, vaddr_t b, int advice) {
    switch (advice) {
        // madvise_vma_behavior(): the read-ahead hints are VMA flags that
        // do_sync_mmap_readahead() reads.
        case MADV_NORMAL:
            return set_vma_flags(mm, vma, a, b, 0, VM_RAND_READ | VM_SEQ_READ);
        case MADV_RANDOM:
            return set_vma_flags(mm, vma, a, b, VM_RAND_READ, VM_SEQ_READ);
        case MADV_SEQUENTIAL:
            return set_vma_flags(mm, vma, a, b, VM_SEQ_READ, VM_RAND_READ);
        case MADV_WILLNEED:
            return ok_status();
        case MADV_DONTNEED:
            if (vma->flags & (VM_LOCKED | VM_PFNMAP)) return Error(EINVAL);
            if (vma->is_hugetlb()) {
                uint64_t hs = vma->huge_page_size();
                if (a & (hs - 1)) return Error(EINVAL);
                b = std::min(vma->end, (b + hs - 1) & ~(hs - 1));
            }
            zap_vma_range_reclaim_pt(*vma, a, b);  // madvise_dontneed_single_vma()
            return ok_status();
        case MADV_HUGEPAGE:
            return set_vma_flags(mm, vma, a, b, VM_HUGEPAGE, VM_NOHUGEPAGE);
        case MADV_NOHUGEPAGE:
            return set_vma_flags(mm, vma, a, b, VM_NOHUGEPAGE, VM_HUGEPAGE);
        case MADV_DONTFORK:
            return set_vma_flags(mm, vma, a, b, VM_DONTCOPY, 0);
        case MADV_DOFORK:
            if (vma->flags & VM_IO) return Error(EINVAL);
            return set_vma_flags(mm, vma, a, b, 0, VM_DONTCOPY);
        case MADV_WIPEONFORK:
            if (vma->file || (vma->flags & VM_SHARED)) return Error(EINVAL);
            return set_vma_flags(mm, vma, a, b, VM_WIPEONFORK, 0);
        case MADV_KEEPONFORK:
            return set_vma_flags(mm, vma, a, b, 0, VM_WIPEONFORK);
        case MADV_COLLAPSE: {
            if (!vma->is_anonymous() || (vma->flags & (VM_NOHUGEPAGE | VM_SHARED | VM_SPECIAL))) return Error(EINVAL);
            // __thp_vma_allowable_orders(): outside a fault (and smaps) an
            // anonymous VMA qualifies only once a fault gave it an anon_vma.
            if (!vma->anon_vma) return Error(EINVAL);
            // ... and thp_vma_suitable_order() at vm_end - PMD_SIZE: the VMA
            // must be able to hold one PMD-aligned huge page at all.
            const vaddr_t last_h = (vma->end - PMD_SIZE) & PMD_MASK;
            if (vma->end - vma->start < PMD_SIZE || last_h < vma->start) return Error(EINVAL);
            vaddr_t first = (a + PMD_SIZE - 1) & PMD_MASK;
            Status last;
            for (vaddr_t h = first; h + PMD_SIZE <= b; h += PMD_SIZE) {
                Status s = collapse_huge_page(*vma, h);
                if (!s) last = s;
            }
            // madvise_collapse(): a range holding no whole PMD collapses
            // nothing and succeeds (0 of 0 huge pages made).
            return last;
        }
        default:
            return Error(EINVAL);
    }
}

}  // namespace

Status do_madvise(MmStruct& mm, vaddr_t start, uint64_t len_in, int advice) {
    if (!page_aligned(start)) return Error(EINVAL);
    if (!known_advice(advice)) return Error(EINVAL);
    uint64_t len = page_align_up(len_in);
    if (len_in && !len) return Error(EINVAL);
    vaddr_t end = start + len;
    if (end < start) return Error(EINVAL);
    if (end == start) return ok_status();

    bool write_lock = advice_needs_write_lock(advice);
    if (write_lock) mmap_write_lock(mm);
    else mmap_read_lock(mm);
    if (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE) {
        // Not a per-VMA walk upstream either: madvise_populate() covers the range.
        Status s = populate(mm, start, end, advice == MADV_POPULATE_WRITE);
        mmap_read_unlock(mm);
        return s;
    }
    bool unmapped = false;
    Status result;
    vaddr_t cur = start;
    while (cur < end) {
        Vma* vma = mm.find_vma(cur);
        if (!vma || vma->start >= end) {
            unmapped = true;
            break;
        }
        if (vma->start > cur) {
            unmapped = true;
            cur = vma->start;
        }
        vaddr_t b = std::min(end, vma->end);
        Status s = madvise_vma(mm, vma, cur, b, advice);
        if (!s) {
            result = s;
            break;
        }
        cur = b;
    }
    if (write_lock) mmap_write_unlock(mm);
    else mmap_read_unlock(mm);
    if (!result) return result;
    if (unmapped) return Error(ENOMEM);
    return ok_status();
}

}  // namespace pl
