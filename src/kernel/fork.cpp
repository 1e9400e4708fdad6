// pinlab — fork(): dup_mmap() (upstream kernel/fork.c).
#include "kernel/fork.h"

#include "fs/file.h"
#include "kernel/task.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"
#include "mm/mmap.h"

namespace pl {

void exit_task_mm(Task* t);

namespace {

Status dup_mmap(MmStruct& child, MmStruct& parent) {
    sync::WriteGuard pl(parent.mmap_lock);
    sync::WriteGuard cl(child.mmap_lock);
    child.mmap_base = parent.mmap_base;
    child.def_flags = parent.def_flags;
    Status status;
    std::vector<Vma*> src;
    parent.for_each_vma([&](Vma& v) { src.push_back(&v); });
    for (Vma* v : src) {
        if (v->flags & VM_DONTCOPY) continue;
        auto copy = std::make_unique<Vma>(*v);
        copy->id = parent.kernel.next_id();
        copy->anon_vma = nullptr;
        copy->file = nullptr;
        // mlock and userfaultfd registrations are not inherited.
        copy->flags &= ~(VM_LOCKED | VM_LOCKONFAULT | VM_UFFD_MISSING | VM_UFFD_WP);
        if (v->is_hugetlb()) copy->private_data = nullptr;  // the child has no reservation of its own
        Vma* nv = child.insert_vma(std::move(copy));
        if (!(v->flags & VM_WIPEONFORK)) anon_vma_fork(*nv, *v);
        nv->file = v->file;
        vma_link_file(*nv);
        if (nv->ops) nv->ops->open(*nv);
        if (v->flags & VM_WIPEONFORK) continue;  // the child starts with an empty anonymous range
        status = copy_page_range(*nv, *v);
        if (!status) break;
    }
    return status;
}

}  // namespace

Result<Task*> do_fork(Task& parent) {
    if (!parent.mm) return Error(EINVAL);
    PL_TRY_ASSIGN(Task* child, parent.kernel.task_new());
    Status s = dup_mmap(*child->mm, *parent.mm);
    if (!s) {
        exit_task_mm(child);
        parent.kernel.task_free(child);
        return s.error();
    }
    child->parent_pid.store(parent.pid);  // the ptrace parent (process_vm_access)
    return child;
}

}  // namespace pl
