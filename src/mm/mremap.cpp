// pinlab — mremap() (upstream mm/mremap.c).
#include "mm/anon_vma.h"
#include "mm/internal.h"
#include "mm/mmap.h"
#include "pinlab/uapi.h"

namespace pl {

using namespace pte;

namespace {

// move_page_tables(): entries move with their pages; anonymous folios keep
// their index because the new VMA keeps vm_pgoff.
Status move_page_tables(Vma& old_vma, vaddr_t old_addr, Vma& new_vma, vaddr_t new_addr, uint64_t len) {
    MmStruct& mm = *old_vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    vaddr_t a = old_addr, end = old_addr + len;
    while (a < end) {
        vaddr_t at = a;
        PageTable::Leaf leaf = mm.pgtable.next_leaf(&at, end);
        if (!leaf.slot) break;
        uint64_t span = 1ULL << level_shift(leaf.level);
        vaddr_t dst = new_addr + (at - old_addr);
        if (leaf.level != PtLevel::Pte && (at < old_addr || at + span > end || (dst & (span - 1)))) {
            if (leaf.level == PtLevel::Pmd && !old_vma.is_hugetlb()) {
                split_huge_pmd_locked(old_vma, at, leaf.slot);
                a = std::max(at, old_addr);
                continue;
            }
            return Error(EINVAL);
        }
        entry_t* dslot = mm.pgtable.slot(dst, leaf.level, true);
        if (!dslot) return Error(ENOMEM);
        entry_t e = sync::exchange(*leaf.slot, entry_t{0});
        sync::store(*dslot, e);
        a = at + span;
    }
    (void)new_vma;
    return ok_status();
}

}  // namespace

Result<vaddr_t> do_mremap(MmStruct& mm, vaddr_t addr, uint64_t old_len, uint64_t new_len, int flags, vaddr_t new_addr) {
    if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) return Error(EINVAL);
    if ((flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) && !(flags & MREMAP_MAYMOVE)) return Error(EINVAL);
    if (!page_aligned(addr)) return Error(EINVAL);
    uint64_t ol = page_align_up(old_len), nl = page_align_up(new_len);
    if (nl == 0 || nl < new_len || ol < old_len) return Error(EINVAL);
    if ((flags & MREMAP_DONTUNMAP) && ol != nl) return Error(EINVAL);
    if (ol == 0) return Error(EINVAL);  // duplicating shared mappings is not modelled
    if (flags & MREMAP_FIXED) {
        if (!page_aligned(new_addr)) return Error(EINVAL);
        if (new_addr < addr + ol && addr < new_addr + nl) return Error(EINVAL);
        if (new_addr > TASK_SIZE || nl > TASK_SIZE - new_addr) return Error(EINVAL);
    }

    sync::WriteGuard lock(mm.mmap_lock);
    Vma* vma = mm.vma_lookup(addr);
    if (!vma || addr + ol > vma->end) return Error(EFAULT);
    if (vma->is_hugetlb()) {
        uint64_t hs = vma->huge_page_size();
        if ((addr | ol | nl) & (hs - 1)) return Error(EINVAL);
        if (nl > ol) return Error(EINVAL);
    }
    if (!(flags & MREMAP_FIXED)) {
        if (nl <= ol) {
            if (nl < ol) PL_TRY(do_munmap(mm, addr + nl, ol - nl));
            return addr;
        }
        if (vma->flags & (VM_DONTEXPAND | VM_PFNMAP)) return Error(EFAULT);
        // Grow in place when the VMA ends here and the space after it is free.
        if (addr + ol == vma->end && mm.range_is_free(vma->end, addr + nl) && addr + nl <= TASK_SIZE) {
            vma_set_end(*vma, addr + nl);
            return addr;
        }
        if (!(flags & MREMAP_MAYMOVE)) return Error(ENOMEM);
        // get_unmapped_area() as mmap() asks it (__get_unmapped_area()): a
        // private anonymous length of whole PMDs is PMD-aligned for THPs.
        const bool thp_aligned = vma->is_anonymous() && !(vma->flags & (VM_SHARED | VM_HUGETLB)) && nl % PMD_SIZE == 0;
        new_addr = mm.get_unmapped_area(
            nl, thp_aligned || ((addr & ~PMD_MASK) == 0 && nl >= PMD_SIZE) ? PMD_SIZE : PAGE_SIZE);
        if (!new_addr) return Error(ENOMEM);
    } else {
        if (nl > ol && (vma->flags & (VM_DONTEXPAND | VM_PFNMAP))) return Error(EFAULT);
        PL_TRY(do_munmap(mm, new_addr, nl));
        vma = mm.vma_lookup(addr);
        if (!vma) return Error(EFAULT);
    }
    // move_vma(): isolate [addr, addr + ol) as its own VMA, then move it.
    PL_TRY(split_vma_range(mm, addr, addr + ol));
    vma = mm.vma_lookup(addr);
    auto moved = std::make_unique<Vma>(*vma);
    moved->id = mm.kernel.next_id();
    moved->start = new_addr;
    moved->end = new_addr + nl;
    moved->anon_vma = nullptr;
    moved->file = nullptr;
    Vma* nv = mm.insert_vma(std::move(moved));
    if (vma->anon_vma) {
        vma->anon_vma->get();
        nv->anon_vma = vma->anon_vma;
        nv->anon_vma->link(nv);
    }
    nv->file = vma->file;
    vma_link_file(*nv);
    if (nv->ops) nv->ops->open(*nv);
    uint64_t move_len = std::min(ol, nl);
    Status s = move_page_tables(*vma, addr, *nv, new_addr, move_len);
    if (!s) return s.error();
    if (flags & MREMAP_DONTUNMAP) {
        // The old range stays mapped but empty (anonymous pages moved away).
        return new_addr;
    }
    // The old VMA's entries have moved: unmap what is left of it.
    Vma* prev = mm.prev_vma(vma);
    Vma* next = mm.next_vma(vma);
    zap_vma_range(*vma, vma->start, vma->end);
    {
        sync::SpinGuard g(mm.page_table_lock);
        mm.pgtable.free_pgtables(vma->start, vma->end, prev ? prev->end : 0, next ? next->start : TASK_SIZE + PAGE_SIZE);
    }
    if (vma->is_hugetlb()) {
        // The reservation moves with the mapping; do not give it back twice.
        nv->private_data = vma->private_data;
        vma->private_data = nullptr;
    }
    vma_destroy(mm, vma);
    return new_addr;
}

}  // namespace pl
