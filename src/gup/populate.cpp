// pinlab — populating page tables through GUP (upstream mm/gup.c and
// mm/madvise.c's madvise_populate()).
#include "gup/populate.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "mm/internal.h"

namespace pl {

long populate_vma_page_range(Vma& vma, vaddr_t start, vaddr_t end, int* locked) {
    MmStruct& mm = *vma.mm;
    const unsigned long nr_pages = (end - start) >> PAGE_SHIFT;
    // Misuse upstream only VM_WARNs about; the model refuses it instead of
    // walking outside the VMA.
    if (!page_aligned(start) || !page_aligned(end) || start < vma.start || end > vma.end || start > end) {
        mm.kernel.warn("populate_vma_page_range", "range outside its VMA or unaligned");
        return -EINVAL;
    }
    // VM_LOCKONFAULT never used faultin_page() to break COW: nothing to do.
    if (vma.flags & VM_LOCKONFAULT) return static_cast<long>(nr_pages);
    // PROT_NONE pages were never faulted in.
    if (!(vma.flags & VM_ACCESS_FLAGS)) return -EFAULT;

    unsigned gup_flags = FOLL_TOUCH;
    // Private writable mappings get a write fault so that COW is broken now;
    // shared ones a read fault (no need to dirty them), with FOLL_FORCE for
    // write-only or exec-only mappings.
    if ((vma.flags & (VM_WRITE | VM_SHARED)) == VM_WRITE)
        gup_flags |= FOLL_WRITE;
    else
        gup_flags |= FOLL_FORCE;
    if (locked) gup_flags |= FOLL_UNLOCKABLE;
    int local_locked = 1;
    return __get_user_pages(mm, start, nr_pages, gup_flags, nullptr, locked ? locked : &local_locked);
}

long faultin_page_range(MmStruct& mm, vaddr_t start, vaddr_t end, PopulateAccess access, int* locked) {
    if (!page_aligned(start) || !page_aligned(end) || start > end) {
        mm.kernel.warn("faultin_page_range", "unaligned range");
        return -EINVAL;
    }
    // TOUCH: mark accessed (and dirty when writing). HWPOISON: -EHWPOISON
    // rather than -EFAULT. No FORCE: the VMA's own permissions apply.
    // MADV_POPULATE: -ENOMEM for holes, -EINVAL for unsuitable VMAs.
    unsigned gup_flags = FOLL_TOUCH | FOLL_HWPOISON | FOLL_UNLOCKABLE | FOLL_MADV_POPULATE;
    if (access == PopulateAccess::Write) gup_flags |= FOLL_WRITE;
    return __get_user_pages_locked(mm, start, (end - start) >> PAGE_SHIFT, nullptr, locked, gup_flags);
}

int madvise_populate(MmStruct& mm, vaddr_t start, vaddr_t end, PopulateAccess access) {
    int locked = 1;
    while (start < end) {
        long pages = faultin_page_range(mm, start, end, access, &locked);
        if (!locked) {
            mmap_read_lock(mm);
            locked = 1;
        }
        if (pages >= 0) {
            start += static_cast<unsigned long>(pages) << PAGE_SHIFT;
            continue;
        }
        switch (pages) {
            case -EINTR:      // fatal signal
            case -EINVAL:     // incompatible mapping or permissions
            case -EHWPOISON:  // poisoned page
            case -EFAULT:     // VM_FAULT_SIGBUS / VM_FAULT_SIGSEGV
                return static_cast<int>(pages);
            case -ENOMEM:  // no VMA, or out of memory
                return -ENOMEM;
            default:
                // pr_warn_once() upstream; anything unexpected reads as -ENOMEM.
                mm.kernel.warn("madvise_populate", "unhandled return value: " + std::to_string(pages));
                return -ENOMEM;
        }
    }
    return 0;
}

int __mm_populate(MmStruct& mm, vaddr_t start, uint64_t len, PopulateErrors errors) PL_NO_TSA {
    const vaddr_t end = start + len;
    if (end < start) return -EINVAL;
    Vma* vma = nullptr;
    int locked = 0;
    long ret = 0;
    // find_vma_intersection(): the first VMA overlapping [from, end).
    auto first_vma = [&](vaddr_t from) -> Vma* {
        Vma* v = mm.find_vma(from);
        return v && v->start < end ? v : nullptr;
    };
    for (vaddr_t nstart = start, nend = start; nstart < end; nstart = nend) {
        if (!locked) {
            // The VMA tree may have changed while the lock was dropped.
            locked = 1;
            mmap_read_lock(mm);
            vma = first_vma(nstart);
        } else if (nstart >= vma->end) {
            vma = first_vma(vma->end);
        }
        if (!vma) break;
        nend = std::min(end, vma->end);
        if (vma->flags & (VM_IO | VM_PFNMAP)) continue;
        if (nstart < vma->start) nstart = vma->start;
        ret = populate_vma_page_range(*vma, nstart, nend, &locked);
        if (ret < 0) {
            if (errors == PopulateErrors::Ignore) {
                ret = 0;
                continue;  // on to the next VMA
            }
            break;
        }
        if (ret == 0 && locked) {
            // No progress and the lock still held cannot happen upstream;
            // stop rather than spin on a model bug.
            mm.kernel.warn("__mm_populate", "no progress at " + std::to_string(nstart));
            break;
        }
        nend = nstart + (static_cast<unsigned long>(ret) << PAGE_SHIFT);
        ret = 0;
    }
    if (locked) mmap_read_unlock(mm);
    return static_cast<int>(ret);
}

}  // namespace pl
