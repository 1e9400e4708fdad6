// pinlab — vfio type1 (drivers/vfio/vfio_iommu_type1.c): vfio_dma_do_map(),
// vfio_pin_map_dma(), vfio_pin_pages_remote(), vaddr_get_pfns(),
// follow_fault_pfn(), vfio_lock_acct(), vfio_dma_do_unmap(),
// vfio_unmap_unpin(), put_pfn(). The IOMMU page table is the per-mapping pfn
// array; "DMA" reads and writes frames by pfn as a device behind it would.
#include "base/handle_registry.h"
#include "drivers/vfio_iommu_type1.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "base/sync/spinlock.h"
#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/mm_struct.h"
#include "mm/page_table.h"
#include "mm/physmem.h"
#include "mm/pte.h"
#include "mm/vma.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

constexpr unsigned long kPageSize = 4096;
constexpr unsigned long kBatch = kPageSize / sizeof(void*);  // VFIO_BATCH_MAX_CAPACITY
constexpr unsigned kKnownFlags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

HandleRegistry<VfioContainer>& registry() {
    static HandleRegistry<VfioContainer> r;
    return r;
}
bool container_ok(const pl_vfio_container* c, const char* fn) {
    auto* vc = reinterpret_cast<const VfioContainer*>(c);
    if (registry().contains(vc)) return true;
    kapi_set_error(std::string(fn) + ": invalid argument 'c'");
    return false;
}
VfioContainer* C(pl_vfio_container* c) { return reinterpret_cast<VfioContainer*>(c); }

// is_invalid_reserved_pfn(): no struct page, or a PageReserved one. Such
// pfns are mapped without a reference and never charged.
bool is_invalid_reserved_pfn(const PhysMem& mem, pfn_t pfn) {
    Page* p = mem.pfn_to_page(pfn);
    return !p || pl::PageReserved(p);
}

// put_pfn(): drop the pin of a normal pfn, dirtying it when the device could
// write it. 1 if a pin was dropped.
int put_pfn(PhysMem& mem, pfn_t pfn, bool write) {
    if (is_invalid_reserved_pfn(mem, pfn)) return 0;
    page* p = reinterpret_cast<page*>(mem.pfn_to_page(pfn));
    PinOwnerScope owner("vfio", "put_pfn");
    ::unpin_user_pages_dirty_lock(&p, 1, write);
    return 1;
}

// follow_fault_pfn(): the pfn a VM_PFNMAP VMA maps at vaddr, faulting it in
// with fixup_user_fault() when absent (or read-only for a write). -EAGAIN
// when the fault dropped the mmap_lock (the caller looks the VMA up again).
int follow_fault_pfn(MmStruct& mm, vaddr_t vaddr, bool write_fault, pfn_t* pfn) PL_NO_TSA {
    auto lookup = [&](bool* writable) -> int {
        sync::SpinGuard g(mm.page_table_lock);
        PageTable::Leaf leaf = mm.pgtable.find_leaf(vaddr);
        if (!leaf.slot || !pte::is_leaf(leaf.entry)) return -EINVAL;
        // A huge leaf maps consecutive pfns: the one for this page.
        const unsigned long span = leaf.level == PtLevel::Pte ? kPageSize
                                   : leaf.level == PtLevel::Pmd ? (2UL << 20) : (1UL << 30);
        *pfn = pte::pfn(leaf.entry) + ((vaddr & (span - 1)) / kPageSize);
        *writable = pte::write(leaf.entry);
        return 0;
    };
    bool writable = false;
    int ret = lookup(&writable);
    if (ret) {
        bool unlocked = false;
        ret = ::fixup_user_fault(reinterpret_cast<mm_struct*>(&mm), vaddr,
                                 FAULT_FLAG_REMOTE | (write_fault ? FAULT_FLAG_WRITE : 0), &unlocked);
        if (unlocked) return -EAGAIN;
        if (ret) return ret;
        ret = lookup(&writable);
        if (ret) return ret;
    }
    if (write_fault && !writable) return -EFAULT;
    return 0;
}

// vaddr_get_pfns(): pin up to npages from vaddr with pin_user_pages_remote()
// (FOLL_LONGTERM [|FOLL_WRITE]); if nothing could be pinned and the VMA is
// VM_PFNMAP, one raw pfn through follow_fault_pfn() (only a reserved or
// non-RAM one: a RAM pfn there would be unpinned later without a pin).
// Returns the number of entries filled into pfns, or -errno.
long vaddr_get_pfns(Task& task, vaddr_t vaddr, unsigned long npages, bool write, std::vector<pfn_t>& out) PL_NO_TSA {
    MmStruct* mm = task.mm;
    if (!mm) return -ENODEV;  // the mm is gone (mmget_not_zero() failed)
    PhysMem& mem = *task.kernel.mem;
    mm_struct* cmm = reinterpret_cast<mm_struct*>(mm);
    std::vector<page*> pages(npages, nullptr);
    const unsigned flags = FOLL_LONGTERM | (write ? FOLL_WRITE : 0);
    PinOwnerScope owner("vfio", "vaddr_get_pfns");
    ::mmap_read_lock(cmm);
    long ret = ::pin_user_pages_remote(cmm, vaddr, npages, flags, pages.data(), nullptr);
    if (ret > 0) {
        for (long i = 0; i < ret; i++) out.push_back(mem.page_to_pfn(reinterpret_cast<Page*>(pages[i])));
    } else {
        for (;;) {
            Vma* vma = mm->vma_lookup(vaddr);
            if (!vma || !(vma->flags & VM_PFNMAP)) break;
            pfn_t pfn = 0;
            int r = follow_fault_pfn(*mm, vaddr, write, &pfn);
            if (r == -EAGAIN) continue;
            if (r) {
                ret = r;
            } else if (is_invalid_reserved_pfn(mem, pfn)) {
                out.push_back(pfn);
                ret = 1;
            } else {
                ret = -EFAULT;
            }
            break;
        }
    }
    ::mmap_read_unlock(cmm);
    return ret ? ret : -EFAULT;
}

// vfio_unmap_unpin() + vfio_remove_dma(): every pin dropped, the charge returned.
void remove_dma(VfioContainer& c, VfioDma* dma) {
    PhysMem& mem = *c.kernel->mem;
    for (pfn_t pfn : dma->pfns) put_pfn(mem, pfn, dma->write);
    if (dma->locked && c.task) task_account_locked(*c.task, c.task->locked_vm, -static_cast<long>(dma->locked));
    delete dma;
}

// vfio_pin_map_dma() with vfio_pin_pages_remote() folded in: batches of
// pins, each charged to locked_vm (RLIMIT_MEMLOCK unless CAP_IPC_LOCK); any
// failure unwinds the whole mapping.
int pin_map_dma(VfioContainer& c, VfioDma* dma) {
    PhysMem& mem = *c.task->kernel.mem;
    const unsigned long npages = dma->size / kPageSize;
    while (dma->pfns.size() < npages) {
        const size_t before = dma->pfns.size();
        const unsigned long want = std::min(kBatch, npages - before);
        long got = vaddr_get_pfns(*c.task, dma->vaddr + before * kPageSize, want, dma->write, dma->pfns);
        if (got <= 0) return static_cast<int>(got);
        unsigned long acct = 0;
        for (size_t i = before; i < dma->pfns.size(); i++)
            if (!is_invalid_reserved_pfn(mem, dma->pfns[i])) acct++;
        if (!acct) continue;
        // vfio_lock_acct(): charged even with CAP_IPC_LOCK, only not limited.
        int r = dma->lock_cap ? (c.task->locked_vm.fetch_add(acct), 0)
                              : task_account_locked(*c.task, c.task->locked_vm, static_cast<long>(acct));
        if (r) {
            const std::string limit = std::to_string(c.task->rlimit_memlock.load());
            c.task->kernel.warn("vfio_pin_pages_remote", "RLIMIT_MEMLOCK (" + limit + ") exceeded");
            return r;
        }
        dma->locked += acct;
    }
    return 0;
}

// The mapping and pfn behind iova, or null.
VfioDma* find_dma(VfioContainer& c, unsigned long iova) {
    auto it = c.dmas.upper_bound(iova);
    if (it == c.dmas.begin()) return nullptr;
    --it;
    VfioDma* d = it->second;
    return iova - d->iova < d->size ? d : nullptr;
}

template <typename Fn>
long dma_access(VfioContainer& c, unsigned long iova, unsigned long len, bool write, Fn&& fn) {
    sync::WriteGuard g(c.lock);
    PhysMem& mem = *c.kernel->mem;
    unsigned long done = 0;
    while (done < len) {
        VfioDma* d = find_dma(c, iova + done);
        if (!d || (write ? !d->write : !d->read)) return -EFAULT;  // an IOMMU fault
        const unsigned long off = iova + done - d->iova;
        const unsigned in_page = static_cast<unsigned>(off % kPageSize);
        const unsigned n = static_cast<unsigned>(std::min(len - done, kPageSize - in_page));
        Status s = fn(mem, d->pfns[off / kPageSize], in_page, n, done);
        if (!s) return -EFAULT;
        done += n;
    }
    return static_cast<long>(done);
}

// exit_files() closing the container fd: vfio_iommu_type1_release() removes
// every DMA mapping, unpinning and uncharging. The handle stays valid until
// pl_vfio_close(); other calls now give -ESRCH.
void container_close_on_exit(void* obj) {
    auto* c = static_cast<VfioContainer*>(obj);
    sync::WriteGuard g(c->lock);
    for (auto& [iova, dma] : c->dmas) remove_dma(*c, dma);
    c->dmas.clear();
    c->task = nullptr;
}

}  // namespace

extern "C" {

pl_vfio_container* pl_vfio_open(task_struct* t) {
    if (!t || !reinterpret_cast<Task*>(t)->mm) {
        kapi_set_error("pl_vfio_open: invalid argument 't'");
        return nullptr;
    }
    auto* c = new VfioContainer;
    c->task = reinterpret_cast<Task*>(t);
    c->kernel = &c->task->kernel;
    registry().add(c);
    c->task->files_add(c, container_close_on_exit);
    return reinterpret_cast<pl_vfio_container*>(c);
}

void pl_vfio_close(pl_vfio_container* pc) {
    if (!container_ok(pc, "pl_vfio_close")) return;
    VfioContainer* c = C(pc);
    registry().remove(c);
    {
        sync::WriteGuard g(c->lock);
        if (c->task && !task_alive(*c->kernel, c->task)) c->task = nullptr;
        if (c->task) c->task->files_remove(c);
        for (auto& [iova, dma] : c->dmas) remove_dma(*c, dma);
        c->dmas.clear();
    }
    delete c;
}

int pl_vfio_map_dma(pl_vfio_container* pc, unsigned long iova, unsigned long vaddr, unsigned long size,
                    unsigned flags) {
    if (!container_ok(pc, "pl_vfio_map_dma")) return -EINVAL;
    VfioContainer& c = *C(pc);
    if (flags & ~kKnownFlags) return -EINVAL;
    const bool rd = flags & VFIO_DMA_MAP_FLAG_READ, wr = flags & VFIO_DMA_MAP_FLAG_WRITE;
    if ((!rd && !wr) || !size || ((size | iova | vaddr) & (kPageSize - 1))) return -EINVAL;
    if (iova + size - 1 < iova || vaddr + size - 1 < vaddr) return -EINVAL;
    sync::WriteGuard g(c.lock);
    if (c.task && !task_alive(*c.kernel, c.task)) c.task = nullptr;
    if (!c.task) {
        kapi_set_error("pl_vfio_map_dma: the container's task has exited");
        return -ESRCH;
    }
    // vfio_find_dma(): any mapping intersecting [iova, iova + size).
    auto it = c.dmas.lower_bound(iova + size);
    if (it != c.dmas.begin() && std::prev(it)->second->iova + std::prev(it)->second->size > iova) return -EEXIST;
    auto* dma = new VfioDma;
    dma->iova = iova;
    dma->vaddr = vaddr;
    dma->size = size;
    dma->read = rd;
    dma->write = wr;
    dma->lock_cap = c.task->cap_ipc_lock.load();
    int ret = pin_map_dma(c, dma);
    if (ret) {
        remove_dma(c, dma);
        return ret;
    }
    c.dmas.emplace(iova, dma);
    return 0;
}

long pl_vfio_unmap_dma(pl_vfio_container* pc, unsigned long iova, unsigned long size) {
    if (!container_ok(pc, "pl_vfio_unmap_dma")) return -EINVAL;
    VfioContainer& c = *C(pc);
    if (!size || ((iova | size) & (kPageSize - 1)) || iova + size - 1 < iova) return -EINVAL;
    sync::WriteGuard g(c.lock);
    if (c.task && !task_alive(*c.kernel, c.task)) c.task = nullptr;
    const unsigned long last = iova + size - 1;
    // v2 semantics: a mapping may not be split by either end of the range.
    if (VfioDma* d = find_dma(c, iova); d && d->iova != iova) return -EINVAL;
    if (VfioDma* d = find_dma(c, last); d && d->iova + d->size - 1 != last) return -EINVAL;
    long unmapped = 0;
    for (auto it = c.dmas.lower_bound(iova); it != c.dmas.end() && it->first <= last;) {
        unmapped += static_cast<long>(it->second->size);
        remove_dma(c, it->second);
        it = c.dmas.erase(it);
    }
    return unmapped;
}

long pl_vfio_dma_read(pl_vfio_container* pc, unsigned long iova, void* buf, unsigned long len) {
    if (!container_ok(pc, "pl_vfio_dma_read")) return -EINVAL;
    if (!buf && len) return -EINVAL;
    auto* out = static_cast<unsigned char*>(buf);
    auto rd = [&](PhysMem& mem, pfn_t pfn, unsigned off, unsigned n, unsigned long at) {
        return mem.read_frame(pfn, off, out + at, n);
    };
    return dma_access(*C(pc), iova, len, false, rd);
}

long pl_vfio_dma_write(pl_vfio_container* pc, unsigned long iova, const void* buf, unsigned long len) {
    if (!container_ok(pc, "pl_vfio_dma_write")) return -EINVAL;
    if (!buf && len) return -EINVAL;
    auto* in = static_cast<const unsigned char*>(buf);
    auto wr = [&](PhysMem& mem, pfn_t pfn, unsigned off, unsigned n, unsigned long at) {
        return mem.write_frame(pfn, off, in + at, n);
    };
    return dma_access(*C(pc), iova, len, true, wr);
}

}  // extern "C"
