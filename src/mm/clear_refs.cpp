// pinlab — /proc/PID/clear_refs (upstream fs/proc/task_mmu.c).
#include "mm/internal.h"
#include "mm/mmap.h"

namespace pl {

using namespace pte;

// Values: 1 clears referenced bits of all pages, 2 of anonymous ones, 3 of
// file ones, 4 clears soft-dirty bits (and write-protects, so the next write
// faults and sets them again), 5 resets the peak RSS.
Status do_clear_refs(MmStruct& mm, int value) {
    if (value < 1 || value > 5) return Error(EINVAL);
    sync::WriteGuard lock(mm.mmap_lock);
    if (value == 5) return ok_status();
    mm.for_each_vma([&](Vma& vma) {
        if (value == 4) vma_set_flags(vma, vma.flags & ~VM_SOFTDIRTY);  // soft-dirty tracking armed
        sync::SpinGuard g(mm.page_table_lock);
        mm.pgtable.for_each_leaf(vma.start, vma.end, [&](vaddr_t a, PtLevel level, entry_t* slot) {
            entry_t e = sync::load(*slot);
            if (value == 4) {
                if (present(e)) e = wrprotect(clear_soft_dirty(e));
                else if (is_swap(e)) e = clear_soft_dirty(e);
                sync::store(*slot, e);
                return;
            }
            if (!present(e)) return;
            Page* p = level == PtLevel::Pte ? vm_normal_page(vma, a, e) : vm_normal_page_huge(vma, a, e, level);
            bool anon = p && page_folio(p)->is_anon();
            if (value == 1 || (value == 2 && anon) || (value == 3 && p && !anon)) sync::store(*slot, mkold(e));
        });
    });
    return ok_status();
}

}  // namespace pl
