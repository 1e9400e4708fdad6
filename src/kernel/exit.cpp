// pinlab — exit(): exit_mm() and exit_mmap() (upstream kernel/exit.c, mm/mmap.c).
#include "kernel/fork.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "mm/mmap.h"

namespace pl {

void exit_mmap(MmStruct& mm) {
    sync::WriteGuard lock(mm.mmap_lock);
    std::vector<Vma*> vmas;
    mm.for_each_vma([&](Vma& v) { vmas.push_back(&v); });
    for (Vma* v : vmas) zap_vma_range(*v, v->start, v->end);
    {
        sync::SpinGuard g(mm.page_table_lock);
        mm.pgtable.free_pgtables(0, TASK_SIZE + PAGE_SIZE, 0, TASK_SIZE + PAGE_SIZE);
    }
    for (Vma* v : vmas) vma_destroy(mm, v);
}

void exit_task_mm(Task* t) {
    MmStruct* mm = t->mm;
    if (!mm) return;
    t->mm = nullptr;
    if (current() == t) set_current(nullptr);
    // mm_update_next_owner(): while other threads still use the mm, one of
    // them becomes its owner; the last user leaves none.
    if (mm->owner == t) mm->owner = t->kernel.task_sharing_mm(t, mm);
    mm->put();
}

}  // namespace pl
