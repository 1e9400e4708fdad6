// pinlab — the dma-buf system heap (upstream drivers/dma-buf/heaps/system_heap.c:
// system_heap_allocate(), alloc_largest_available(), system_heap_mmap(),
// system_heap_dma_buf_release(); before v5.11 heap-helpers.c's
// dma_heap_mmap()/dma_heap_vm_fault()), and the variant that maps its pages
// with vm_insert_page() as the 2021 patch behind seed 003 proposed.
#include <algorithm>
#include <vector>

#include "debug/pin_tracker.h"
#include "drivers/dma_heap.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "mm/physmem.h"

namespace pl {

namespace {

// orders[] of system_heap.c: 1 MiB, 64 KiB, 4 KiB chunks, sized to suit IOMMUs.
constexpr unsigned kOrders[] = {8, 4, 0};
// HIGH_ORDER_GFP (opportunistic, compound) and LOW_ORDER_GFP. GFP_HIGHUSER is
// not movable: the chunks never come from ZONE_MOVABLE or CMA.
constexpr gfp_t kHighOrderGfp = __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY | __GFP_COMP;
constexpr gfp_t kLowOrderGfp = __GFP_ZERO;

struct SystemHeapBuffer {
    std::vector<Folio*> chunks;  // the sg table: one entry per chunk; the heap's reference each
    SystemHeapMap how;
};

SystemHeapBuffer& buffer_of(DmaBuf& b) { return *static_cast<SystemHeapBuffer*>(b.priv); }

// heap-helpers.c (v5.6-v5.10) dma_heap_vm_ops: the buffer's page goes back
// to the fault path with a reference (get_page()), and finish_fault() maps it
// with an ordinary PTE that GUP can take. The buffer is order-0 pages then.
class HeapHelperVmOps final : public VmOperations {
public:
    const char* name() const override { return "dma_heap_vm_ops"; }
    vm_fault_t fault(VmFault& vmf) const override {
        auto& buf = *static_cast<SystemHeapBuffer*>(vmf.vma->private_data);
        // Upstream tested `pgoff > pagecount` (fixed in 2024 stable
        // backports); the model uses the fixed test.
        if (vmf.pgoff >= buf.chunks.size()) return VM_FAULT_SIGBUS;
        Folio* f = buf.chunks[vmf.pgoff];
        f->ref_add(1);
        vmf.page = f->head();
        return 0;
    }
};

const HeapHelperVmOps kHeapHelperVmOps;

// Drops the heap's reference on each chunk (__free_pages()). A chunk someone
// else still holds (a GUP reference through a vm_insert_page() mapping) lives
// on with them, no longer part of any buffer: a pinned one is reported.
void free_chunks(Kernel& k, std::vector<Folio*>& chunks, const char* where) {
    for (Folio* c : chunks) {
        pin_track_moved(k, c, c->head(), where, "freed by the exporter while pinned");
        k.ref_note(c, -1);
        k.mem->folio_put(c);
    }
    chunks.clear();
}

class SystemHeapOps final : public DmaBufOps {
public:
    Status mmap(DmaBuf& b, Vma& vma) const override {
        SystemHeapBuffer& buf = buffer_of(b);
        if (buf.how == SystemHeapMap::HeapHelperFault) {
            // dma_heap_mmap(): shared mappings only; pages come at fault time.
            if (!(vma.flags & (VM_SHARED | VM_MAYSHARE))) return Error(EINVAL);
            vma.ops = &kHeapHelperVmOps;
            vma.private_data = &buf;
            return ok_status();
        }
        // Skip the chunks before vm_pgoff, then map chunk by chunk.
        pgoff_t pgoff = vma.pgoff;
        size_t i = 0;
        for (; i < buf.chunks.size(); ++i) {
            const unsigned long n = buf.chunks[i]->nr_pages();
            if (pgoff < n) break;
            pgoff -= n;
        }
        vaddr_t addr = vma.start;
        for (; i < buf.chunks.size() && addr < vma.end; ++i, pgoff = 0) {
            Folio* c = buf.chunks[i];
            const uint64_t size = std::min<uint64_t>((c->nr_pages() - pgoff) << PAGE_SHIFT, vma.end - addr);
            if (buf.how == SystemHeapMap::RemapPfnRange) {
                // system_heap_mmap(): special PTEs, no struct page for GUP. A
                // COW mapping needs the whole VMA in one call (remap_pfn_range's
                // is_cow_mapping() rule), so MAP_PRIVATE of a buffer of several
                // chunks fails here with -EINVAL, as upstream.
                PL_TRY(remap_pfn_range(vma, addr, k_of(b).mem->page_to_pfn(c->page(pgoff)), size));
            } else {
                for (uint64_t off = 0; off < size; off += PAGE_SIZE)
                    PL_TRY(vm_insert_page(vma, addr + off, c->page(pgoff + (off >> PAGE_SHIFT))));
            }
            addr += size;
        }
        return ok_status();
    }

    void release(DmaBuf& b) const override {
        SystemHeapBuffer* buf = &buffer_of(b);
        free_chunks(k_of(b), buf->chunks, "system_heap_dma_buf_release");
        delete buf;
    }

    Status device_access(DmaBuf& b, uint64_t off, void* data, uint64_t len, bool write) const override {
        return heap_chunks_access(k_of(b), buffer_of(b).chunks, off, data, len, write);
    }

private:
    static Kernel& k_of(DmaBuf& b) { return *b.kernel; }
};

const SystemHeapOps kSystemHeapOps;

// alloc_largest_available(): the largest chunk not above max_order that fits
// what is left, falling back to smaller orders when the buddy has none.
Result<Folio*> alloc_largest_available(Kernel& k, uint64_t size, unsigned max_order) {
    for (unsigned order : kOrders) {
        if (size < (PAGE_SIZE << order) || order > max_order) continue;
        auto f = k.mem->alloc_folio(order, order ? kHighOrderGfp : kLowOrderGfp);
        if (f) return f;
    }
    return Error(ENOMEM);
}

}  // namespace

Result<File*> system_heap_allocate(Kernel& k, uint64_t len, SystemHeapMap how) {
    auto* buf = new SystemHeapBuffer{{}, how};
    uint64_t remaining = len;
    // heap-helpers' system heap allocated page by page (alloc_page()).
    unsigned max_order = how == SystemHeapMap::HeapHelperFault ? 0 : kOrders[0];
    while (remaining) {
        // "Avoid trying to allocate memory if the process has been killed".
        Task* cur = current();
        Result<Folio*> f = Error(EINTR);
        if (!cur || !cur->fatal_signal_pending()) f = alloc_largest_available(k, remaining, max_order);
        if (!f) {
            free_chunks(k, buf->chunks, "system_heap_allocate");
            delete buf;
            return f.error();
        }
        k.ref_note(*f, 1);
        buf->chunks.push_back(*f);
        remaining -= (*f)->nr_pages() << PAGE_SHIFT;
        max_order = (*f)->order();
    }
    // The heap's name is the exporter name (exp_info.exp_name = dma_heap_get_name()).
    const char* name = how == SystemHeapMap::VmInsertPage ? "system-insert-page" : "system";
    auto f = dma_buf_export(k, kSystemHeapOps, name, len, buf);
    if (!f) {
        free_chunks(k, buf->chunks, "system_heap_allocate");
        delete buf;
    }
    return f;
}

}  // namespace pl
