// pinlab — fixup_user_fault() (upstream mm/gup.c): resolve one user fault by
// hand, as futex and KVM do after a pagefault_disable()d access failed.
// Unlike GUP it always calls handle_mm_fault(), takes no reference, and
// returns with the mmap_lock held even when the fault dropped it.
#include <cerrno>

#include "gup/gup_slow.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

// vma_permits_fault(): the VMA must allow the access (GUP is a data access,
// never an instruction fetch; no protection keys in the model).
bool vma_permits_fault(const Vma& vma, unsigned fault_flags) {
    const vm_flags_t need = (fault_flags & FAULT_FLAG_WRITE) ? VM_WRITE : VM_READ;
    return vma.flags & need;
}

}  // namespace

extern "C" {

int fixup_user_fault(mm_struct* cmm, unsigned long address, unsigned int fault_flags, bool* unlocked) PL_NO_TSA {
    if (!cmm) return -EINVAL;
    MmStruct& mm = *reinterpret_cast<MmStruct*>(cmm);
    // Upstream requires `unlocked` whenever the fault may drop the lock and
    // would write through a NULL pointer otherwise; the model refuses.
    if (!unlocked && (fault_flags & FAULT_FLAG_ALLOW_RETRY)) {
        mm.kernel.warn("fixup_user_fault", "FAULT_FLAG_ALLOW_RETRY without `unlocked`");
        return -EINVAL;
    }
    if (unlocked) fault_flags |= FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE;

    for (;;) {
        Vma* vma = mm.vma_lookup(address);  // gup_vma_lookup(): never expands a stack
        if (!vma) return -EFAULT;
        if (!vma_permits_fault(*vma, fault_flags)) return -EFAULT;
        if ((fault_flags & FAULT_FLAG_KILLABLE) && fatal_signal_pending_current()) return -EINTR;

        vm_fault_t ret = handle_mm_fault(*vma, address, fault_flags);
        if ((ret & (VM_FAULT_COMPLETED | VM_FAULT_RETRY)) && !unlocked) {
            // Only possible if the fault ignored the missing ALLOW_RETRY.
            mm.kernel.warn("fixup_user_fault", "fault asked for a retry that was not allowed");
            return -EFAULT;
        }
        if (ret & VM_FAULT_COMPLETED) {
            // Done with the lock released: take it again for the caller,
            // whose unlock pairs with it.
            mmap_read_lock(mm);
            *unlocked = true;
            return 0;
        }
        if (ret & VM_FAULT_ERROR) {
            if (int err = vm_fault_to_errno(ret, 0)) return err;
            mm.kernel.warn("fixup_user_fault", "VM_FAULT_ERROR without an errno");  // BUG() upstream
            return -EFAULT;
        }
        if (ret & VM_FAULT_RETRY) {
            // With RETRY_NOWAIT the fault kept the lock (upstream would take
            // it a second time); otherwise it is gone and the VMA with it.
            if (!(fault_flags & FAULT_FLAG_RETRY_NOWAIT)) mmap_read_lock(mm);
            *unlocked = true;
            fault_flags |= FAULT_FLAG_TRIED;
            continue;
        }
        return 0;
    }
}

}  // extern "C"
