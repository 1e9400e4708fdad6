// pinlab — access_process_vm() and __access_remote_vm() (mm/memory.c):
// ptrace and /proc/PID/mem. Each page is taken with a FOLL_GET reference by
// get_user_page_vma_remote() (FOLL_FORCE from the caller lets a debugger
// write a read-only private mapping: the write breaks COW), copied into or
// out of, dirtied for a write, and put. In the v4.8 era that GUP is the one
// Dirty COW (CVE-2016-5195) exploited: see faultin_page().
#include "mm/access_remote_vm.h"

#include <algorithm>
#include <cstring>

#include "base/sync/thread_annotations.h"
#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

namespace pl {

long access_remote_vm(MmStruct& mm, vaddr_t addr, void* buf, unsigned long len, unsigned gup_flags) PL_NO_TSA {
    PhysMem& mem = *mm.kernel.mem;
    auto* cmm = reinterpret_cast<mm_struct*>(&mm);
    auto* p = static_cast<unsigned char*>(buf);
    const bool write = gup_flags & FOLL_WRITE;
    unsigned long done = 0;
    PinOwnerScope owner("access_remote_vm", "__access_remote_vm");
    // mmap_read_lock_killable(): a killed caller copies nothing.
    if (!mm.mmap_lock.down_read_until([] { return fatal_signal_pending_current(); })) return 0;
    // No VMA at addr: nothing (upstream would try expand_stack() first; the
    // model has no growable stacks).
    if (mm.vma_lookup(addr)) {
        while (done < len) {
            vm_area_struct* vma = nullptr;
            page* pg = ::get_user_page_vma_remote(cmm, addr, static_cast<int>(gup_flags), &vma);
            // VM_IO|VM_PFNMAP memory would go through vm_ops->access(); the
            // model's drivers have none, so any GUP error ends the copy.
            if (IS_ERR(pg)) break;
            const unsigned off = static_cast<unsigned>(addr & (PAGE_SIZE - 1));
            const unsigned n = static_cast<unsigned>(std::min<unsigned long>(PAGE_SIZE - off, len - done));
            const pfn_t pfn = mem.page_to_pfn(reinterpret_cast<Page*>(pg));
            // copy_to_user_page() / copy_from_user_page() through a kmap().
            Status s = write ? mem.write_frame(pfn, off, p + done, n) : mem.read_frame(pfn, off, p + done, n);
            if (s && write) ::set_page_dirty_lock(pg);
            ::put_page(pg);
            if (!s) break;
            done += n;
            addr += n;
        }
    }
    mmap_read_unlock(mm);
    return static_cast<long>(done);
}

long access_process_vm(Task& t, vaddr_t addr, void* buf, unsigned long len, unsigned gup_flags) {
    // get_task_mm() / mmput(): the model's task keeps its mm until exit.
    MmStruct* mm = t.mm;
    if (!mm) return 0;
    return access_remote_vm(*mm, addr, buf, len, gup_flags);
}

}  // namespace pl
