// pinlab — process_vm_readv()/process_vm_writev() with one iovec on each side
// (mm/process_vm_access.c: process_vm_rw(), process_vm_rw_core(),
// process_vm_rw_single_vec(), process_vm_rw_pages()). The remote pages are
// pinned (FOLL_PIN, FOLL_WRITE for writev) in batches under mmap_read_lock
// with `locked`, copied through the caller's page tables, and unpinned with
// unpin_user_pages_dirty_lock(), dirtying them for writev.
#include "drivers/process_vm_access.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "base/sync/thread_annotations.h"
#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "pinlab/kapi.h"

namespace pl {

namespace {

// Yama's task_is_descendant(): is `ancestor`'s thread group on the chain of
// real_parent links from `target`'s group up? A parent that has exited ends
// the chain (upstream reparents its children to init or a subreaper).
bool task_is_descendant(const Task& ancestor, const Task& target) {
    const std::vector<Task*> live = ancestor.kernel.tasks();
    // A group's real_parent: what its tasks were forked from (threads copy
    // the group's; 0 when the group is gone or was never forked).
    auto group_parent = [&](int tgid) {
        for (Task* t : live)
            if (t->tgid == tgid) return t->parent_pid.load();
        return 0;
    };
    auto tgid_of = [&](int pid) {
        for (Task* t : live)
            if (t->pid == pid) return t->tgid;
        return 0;
    };
    int walker = target.tgid;
    for (size_t hops = 0; walker != 0 && hops <= live.size(); ++hops) {
        if (walker == ancestor.tgid) return true;
        walker = tgid_of(group_parent(walker));
    }
    return false;
}

}  // namespace

bool ptrace_may_access(const Task& caller, const Task& target) {
    // __ptrace_may_access(): a thread may always access its own group.
    if (&caller == &target || caller.tgid == target.tgid) return true;
    // Every model task is root: same uid, dumpable, and the caller has
    // CAP_SYS_PTRACE, which also passes Yama (yama_ptrace_access_check()).
    // A target with the switch off stands for a caller without the
    // capability under Yama's ptrace_scope=1: only ancestors may attach.
    if (target.ptrace_allowed.load()) return true;
    return task_is_descendant(caller, target);
}

}  // namespace pl

using namespace pl;

namespace {

constexpr unsigned long kPageSize = 4096;

// process_vm_rw_single_vec() + process_vm_rw_pages(): copies up to `len`
// bytes between remote `raddr` of `target` and local `laddr` of `caller`,
// adding to *copied what moved. 0, or -errno when it stopped early.
long rw_single_vec(Task& caller, Task& target, unsigned long laddr, unsigned long raddr, unsigned long len,
                   bool vm_write, unsigned long* copied) PL_NO_TSA {
    const unsigned long nr_total = (raddr + len - 1) / kPageSize - raddr / kPageSize + 1;
    const unsigned long per_loop =
        nr_total <= kPvmMaxPpArrayCount ? kPvmMaxPpArrayCount : kPvmMaxPagesPerLoopKmalloc;
    mm_struct* mm = reinterpret_cast<mm_struct*>(target.mm);
    const unsigned flags = vm_write ? FOLL_WRITE : 0;
    std::vector<page*> pages(std::min(nr_total, per_loop), nullptr);
    std::vector<unsigned char> tmp(kPageSize);
    unsigned long pa = raddr & ~(kPageSize - 1);
    unsigned long start_offset = raddr - pa;
    unsigned long nr_pages = nr_total;
    long rc = 0;
    while (!rc && nr_pages && len) {
        const unsigned long want = std::min(nr_pages, per_loop);
        int locked = 1;
        long pinned;
        {
            PinOwnerScope owner("process_vm_access", "process_vm_rw_single_vec");
            ::mmap_read_lock(mm);
            pinned = ::pin_user_pages_remote(mm, pa, want, flags, pages.data(), &locked);
            // A fault may have dropped the lock (locked = 0): not ours to drop.
            if (locked) ::mmap_read_unlock(mm);
        }
        if (pinned <= 0) return -EFAULT;
        const unsigned long bytes = std::min(static_cast<unsigned long>(pinned) * kPageSize - start_offset, len);
        // process_vm_rw_pages(): page by page through the caller's page tables;
        // a fault there ends the transfer with -EFAULT.
        unsigned long moved = 0;
        for (long i = 0; moved < bytes; i++) {
            const unsigned off = static_cast<unsigned>(i == 0 ? start_offset : 0);
            const unsigned n = static_cast<unsigned>(std::min(kPageSize - off, bytes - moved));
            long r;
            if (vm_write) {
                r = ::pl_read(reinterpret_cast<task_struct*>(&caller), laddr + *copied, tmp.data(), n);
                if (r >= 0) r = ::pl_page_write(pages[i], off, tmp.data(), n);
            } else {
                r = ::pl_page_read(pages[i], off, tmp.data(), n);
                if (r >= 0) r = ::pl_write(reinterpret_cast<task_struct*>(&caller), laddr + *copied, tmp.data(), n);
            }
            if (r < 0) {
                rc = -EFAULT;
                break;
            }
            moved += n;
            *copied += n;
        }
        len -= bytes;
        start_offset = 0;
        nr_pages -= static_cast<unsigned long>(pinned);
        pa += static_cast<unsigned long>(pinned) * kPageSize;
        PinOwnerScope owner("process_vm_access", "process_vm_rw_single_vec");
        ::unpin_user_pages_dirty_lock(pages.data(), static_cast<unsigned long>(pinned), vm_write);
    }
    return rc;
}

// process_vm_rw() + process_vm_rw_core() for one local and one remote iovec.
long process_vm_rw(task_struct* c, task_struct* t, unsigned long laddr, unsigned long raddr, unsigned long len,
                   bool vm_write, const char* fn) {
    if (!c || !reinterpret_cast<Task*>(c)->mm) {
        kapi_set_error(std::string(fn) + ": invalid argument 'caller'");
        return -EINVAL;
    }
    Task& caller = *reinterpret_cast<Task*>(c);
    // import_iovec(): an iovec wrapping the address space is -EFAULT.
    if (laddr + len < laddr || raddr + len < raddr) return -EFAULT;
    if (!len) return 0;
    // find_get_task_by_vpid(): a task that has exited is gone (-ESRCH); the
    // handle is not dereferenced until it is known to be live.
    if (!t || !task_alive(caller.kernel, reinterpret_cast<Task*>(t))) {
        kapi_set_error(std::string(fn) + ": no such task");
        return -ESRCH;
    }
    Task& target = *reinterpret_cast<Task*>(t);
    // mm_access(): no mm is -ESRCH; a refused attach (-EACCES) is -EPERM.
    if (!target.mm) return -ESRCH;
    if (!ptrace_may_access(caller, target)) {
        kapi_set_error(std::string(fn) + ": ptrace access to pid " + std::to_string(target.pid) + " denied");
        return -EPERM;
    }
    unsigned long copied = 0;
    const long rc = rw_single_vec(caller, target, laddr, raddr, len, vm_write, &copied);
    // Anything copied is reported as such; only a transfer that moved nothing
    // returns the error.
    return copied ? static_cast<long>(copied) : rc;
}

}  // namespace

extern "C" {

long pl_process_vm_readv(task_struct* caller, task_struct* target, unsigned long local_addr,
                         unsigned long remote_addr, unsigned long len) {
    return process_vm_rw(caller, target, local_addr, remote_addr, len, false, "pl_process_vm_readv");
}

long pl_process_vm_writev(task_struct* caller, task_struct* target, unsigned long local_addr,
                          unsigned long remote_addr, unsigned long len) {
    return process_vm_rw(caller, target, local_addr, remote_addr, len, true, "pl_process_vm_writev");
}

int pl_task_set_ptrace_allowed(task_struct* t, int on) {
    if (!t) {
        kapi_set_error("pl_task_set_ptrace_allowed: invalid argument 't'");
        return -EINVAL;
    }
    reinterpret_cast<Task*>(t)->ptrace_allowed.store(on != 0);
    return 0;
}

}  // extern "C"
