// pinlab — RDMA user memory regions (drivers/infiniband/core/umem.c
// ib_umem_get(), __ib_umem_release(), ib_umem_release();
// include/rdma/ib_verbs.h ib_access_writable()). Pages are pinned
// FOLL_LONGTERM, so GUP's long-term rules (migration out of movable zones
// and CMA, refusal of fsdax and dirty-tracked shared file mappings) apply.
#include "base/handle_registry.h"
#include "drivers/ib_umem.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

#include "base/error.h"
#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

// pin_user_pages_fast() batch: one page of struct page pointers.
constexpr unsigned long kChunk = PAGE_SIZE / sizeof(page*);
constexpr int kWritableAccess = PL_IB_ACCESS_LOCAL_WRITE | PL_IB_ACCESS_REMOTE_WRITE | PL_IB_ACCESS_REMOTE_ATOMIC |
                                PL_IB_ACCESS_MW_BIND;

HandleRegistry<IbUmem>& registry() {
    static HandleRegistry<IbUmem> r;
    return r;
}
IbUmem* umem_of(pl_ib_umem* u, const char* fn) {
    auto* um = reinterpret_cast<IbUmem*>(u);
    if (registry().contains(um)) return um;
    kapi_set_error(std::string(fn) + ": invalid argument 'umem'");
    return nullptr;
}

// __ib_umem_release(): each scatterlist run is unpinned in one call, dirty
// when the device could have written it.
void umem_unpin(IbUmem& u, bool dirty) {
    PinOwnerScope owner("ib_umem", "__ib_umem_release");
    for (const IbSg& sg : u.sgt) ::unpin_user_page_range_dirty_lock(sg.first, sg.npages, dirty && u.writable);
    u.sgt.clear();
    u.pages.clear();
}

// The mm->pinned_vm charge goes back to the owner, if it is still there.
void umem_uncharge(IbUmem& u) {
    if (u.owner && !task_alive(*u.kernel, u.owner)) u.owner = nullptr;
    if (u.owner && u.charged) task_account_locked(*u.owner, u.owner->pinned_vm, -static_cast<long>(u.charged));
    u.charged = 0;
}

// sg_alloc_append_table_from_pages(): a page continues the last run when it
// is the next pfn.
void sg_append(IbUmem& u, page** pages, long n) {
    PhysMem& mem = *u.kernel->mem;
    for (long i = 0; i < n; i++) {
        const pfn_t pfn = mem.page_to_pfn(reinterpret_cast<Page*>(pages[i]));
        if (!u.sgt.empty()) {
            IbSg& last = u.sgt.back();
            if (mem.page_to_pfn(reinterpret_cast<Page*>(last.first)) + last.npages == pfn) {
                last.npages++;
                continue;
            }
        }
        u.sgt.push_back(IbSg{pages[i], 1});
    }
}

// exit_files() closing the uverbs fd: ib_uverbs_cleanup_ufile() destroys
// the MRs, and ib_umem_release() unpins and uncharges. The handle stays
// valid until pl_ib_umem_release(); device access now fails.
void umem_close_on_exit(void* obj) {
    auto* u = static_cast<IbUmem*>(obj);
    umem_unpin(*u, true);
    umem_uncharge(*u);
    u->owner = nullptr;
}

int ib_umem_get(Task& t, unsigned long addr, unsigned long size, int access, IbUmem** out) {
    *out = nullptr;
    // Refuse a range whose end wraps, page-aligned or not.
    unsigned long end = 0;
    if (__builtin_add_overflow(addr, size, &end) || end > (~0UL & PAGE_MASK)) return -EINVAL;
    // can_do_mlock(): a zero RLIMIT_MEMLOCK without CAP_IPC_LOCK may not pin at all.
    if (t.rlimit_memlock.load() == 0 && !t.cap_ipc_lock.load()) return -EPERM;
    if (access & PL_IB_ACCESS_ON_DEMAND) return -EOPNOTSUPP;  // ODP: no pinning at all, not modelled
    auto* u = new IbUmem;
    u->kernel = &t.kernel;
    u->owner = &t;
    u->address = addr;
    u->length = size;
    u->writable = access & kWritableAccess;
    const unsigned long npages = size ? (page_align_up(end) - (addr & PAGE_MASK)) >> PAGE_SHIFT : 0;
    if (npages == 0 || npages > UINT_MAX) {
        delete u;
        return -EINVAL;
    }
    // pinned_vm is charged up front, against RLIMIT_MEMLOCK unless CAP_IPC_LOCK.
    if (int r = task_account_locked(t, t.pinned_vm, static_cast<long>(npages))) {
        delete u;
        return r;
    }
    u->charged = npages;
    const unsigned flags = FOLL_LONGTERM | (u->writable ? FOLL_WRITE : 0);
    AsTask as(&t);
    std::vector<page*> chunk(kChunk);
    unsigned long cur = addr & PAGE_MASK, left = npages;
    while (left) {
        long pinned = 0;
        {
            PinOwnerScope owner("ib_umem", "ib_umem_get");
            pinned = ::pin_user_pages_fast(cur, static_cast<int>(std::min(left, kChunk)), flags, chunk.data());
        }
        if (pinned <= 0) {
            umem_unpin(*u, false);
            umem_uncharge(*u);
            delete u;
            return pinned < 0 ? static_cast<int>(pinned) : -EFAULT;
        }
        u->pages.insert(u->pages.end(), chunk.begin(), chunk.begin() + pinned);
        sg_append(*u, chunk.data(), pinned);
        cur += static_cast<unsigned long>(pinned) * PAGE_SIZE;
        left -= static_cast<unsigned long>(pinned);
    }
    *out = u;
    return 0;
}

// The device's access to [offset, offset + len) of the region, page by page.
template <typename Fn>
long umem_access(IbUmem& u, unsigned long offset, unsigned long len, Fn&& fn) {
    unsigned long end = 0;
    if (__builtin_add_overflow(offset, len, &end) || end > u.length) return -EINVAL;
    if (u.pages.empty()) return -EFAULT;  // released at its task's exit: the MR is gone
    PhysMem& mem = *u.kernel->mem;
    unsigned long done = 0;
    while (done < len) {
        const unsigned long at = (u.address & ~PAGE_MASK) + offset + done;
        const unsigned in_page = static_cast<unsigned>(at & ~PAGE_MASK);
        const unsigned n = static_cast<unsigned>(std::min<unsigned long>(len - done, PAGE_SIZE - in_page));
        const pfn_t pfn = mem.page_to_pfn(reinterpret_cast<Page*>(u.pages[at >> PAGE_SHIFT]));
        if (!fn(mem, pfn, in_page, n, done)) return -EFAULT;
        done += n;
    }
    return static_cast<long>(done);
}

}  // namespace

extern "C" {

pl_ib_umem* pl_ib_umem_get(task_struct* ct, unsigned long addr, unsigned long size, int access, int* err) {
    Task* t = reinterpret_cast<Task*>(ct);
    int r = -EINVAL;
    IbUmem* u = nullptr;
    if (t && t->mm) r = ib_umem_get(*t, addr, size, access, &u);
    if (err) *err = r;
    if (r) {
        kapi_set_error(std::string("pl_ib_umem_get: ") + (t && t->mm ? std::string(errno_name(-r)) : "invalid argument 't'"));
        return nullptr;
    }
    registry().add(u);
    t->files_add(u, umem_close_on_exit);
    return reinterpret_cast<pl_ib_umem*>(u);
}

void pl_ib_umem_release(pl_ib_umem* pu) {
    IbUmem* u = umem_of(pu, "pl_ib_umem_release");
    if (!u || !registry().remove(u)) return;
    if (u->owner && task_alive(*u->kernel, u->owner)) u->owner->files_remove(u);
    umem_unpin(*u, true);
    umem_uncharge(*u);
    delete u;
}

long pl_ib_umem_dma_read(pl_ib_umem* pu, unsigned long offset, void* buf, unsigned long len) {
    IbUmem* u = umem_of(pu, "pl_ib_umem_dma_read");
    if (!u || (len && !buf)) return -EINVAL;
    auto* dst = static_cast<uint8_t*>(buf);
    return umem_access(*u, offset, len, [&](PhysMem& mem, pfn_t pfn, unsigned in_page, unsigned n, unsigned long at) {
        return static_cast<bool>(mem.read_frame(pfn, in_page, dst + at, n));
    });
}

long pl_ib_umem_dma_write(pl_ib_umem* pu, unsigned long offset, const void* buf, unsigned long len) {
    IbUmem* u = umem_of(pu, "pl_ib_umem_dma_write");
    if (!u || (len && !buf)) return -EINVAL;
    if (!u->writable) return -EFAULT;  // the HCA refuses: a remote access error
    const auto* src = static_cast<const uint8_t*>(buf);
    return umem_access(*u, offset, len, [&](PhysMem& mem, pfn_t pfn, unsigned in_page, unsigned n, unsigned long at) {
        return static_cast<bool>(mem.write_frame(pfn, in_page, src + at, n));
    });
}

unsigned long pl_ib_umem_nents(pl_ib_umem* pu) {
    IbUmem* u = umem_of(pu, "pl_ib_umem_nents");
    return u ? u->sgt.size() : 0;
}

unsigned long pl_task_pinned_vm(task_struct* t) {
    if (!t) return 0;
    return reinterpret_cast<Task*>(t)->pinned_vm.load();
}

}  // extern "C"
