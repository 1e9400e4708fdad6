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

Result<Task*> do_clone_thread(Task& t) {
    MmStruct* mm = t.mm;
    if (!mm) return Error(EINVAL);
    // copy_mm() with CLONE_VM: no dup_mmap(), just another mm_users reference.
    mm->get();
    auto th = t.kernel.task_new_on(mm, t.tgid);
    if (!th) {
        mm->put();
        return th.error();
    }
    Task* n = *th;
    // Limits and credentials are per process upstream (signal->rlim, cred):
    // the model keeps them per task, so the new thread starts with copies.
    n->rlimit_memlock.store(t.rlimit_memlock.load());
    n->cap_ipc_lock.store(t.cap_ipc_lock.load());
    n->ptrace_allowed.store(t.ptrace_allowed.load());
    // CLONE_THREAD: the new thread's parent is the group's parent.
    n->parent_pid.store(t.parent_pid.load());
    return n;
}

}  // namespace pl
