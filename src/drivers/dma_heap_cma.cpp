// pinlab — the dma-buf CMA heap (upstream drivers/dma-buf/heaps/cma_heap.c:
// cma_heap_allocate(), cma_heap_mmap(), cma_heap_vm_fault(),
// cma_heap_dma_buf_release()).
//
// Eras: before v6.9 cma_heap_vm_fault() handed the buffer's page back to the
// fault path (vmf->page + get_page()), so the VMA was an ordinary file
// mapping with normal, refcounted PTEs that GUP could take (and the pages
// counted in RssFile). T.J. Mercier's "dma-buf: heaps: Don't track CMA
// dma-buf pages under RssFile" (v6.9) made the VMA VM_IO|VM_PFNMAP and the
// fault vmf_insert_pfn(). The model's eras: v6.5 and before → the old fault,
// `current` → the new one.
#include <string>
#include <vector>

#include "debug/pin_tracker.h"
#include "drivers/dma_heap.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "mm/physmem.h"

namespace pl {

namespace {

struct CmaHeapBuffer {
    std::vector<Folio*> pages;  // buffer->pages[]: order-0 pages from CMA pageblocks; the heap's reference each
};

CmaHeapBuffer& buffer_of(const Vma& vma) { return *static_cast<CmaHeapBuffer*>(vma.private_data); }

bool fault_inserts_pfn(const Kernel& k) { return k.cfg.era_at_least(Era::current); }

// dma_heap_vm_ops
class CmaHeapVmOps final : public VmOperations {
public:
    const char* name() const override { return "cma_heap_vm_ops"; }
    vm_fault_t fault(VmFault& vmf) const override {
        Vma& vma = *vmf.vma;
        CmaHeapBuffer& buf = buffer_of(vma);
        // Upstream tested `pgoff > pagecount` until v6.12 (an off-by-one that
        // dma_buf_mmap_internal()'s size check and VM_DONTEXPAND keep out of
        // reach); the model uses the fixed test in every era.
        if (vmf.pgoff >= buf.pages.size()) return VM_FAULT_SIGBUS;
        Page* page = buf.pages[vmf.pgoff]->head();
        if (fault_inserts_pfn(kernel_of(vma))) return vmf_insert_pfn(vma, vmf.address, mem_of(vma).page_to_pfn(page));
        // Before v6.9: get_page() and let finish_fault() map the page (the
        // reference becomes the PTE's).
        page_folio(page)->ref_add(1);
        vmf.page = page;
        return 0;
    }
};

const CmaHeapVmOps kCmaHeapVmOps;

class CmaHeapOps final : public DmaBufOps {
public:
    Status mmap(DmaBuf& b, Vma& vma) const override {
        // cma_heap_mmap(): shared mappings only, in every era.
        if (!(vma.flags & (VM_SHARED | VM_MAYSHARE))) return Error(EINVAL);
        if (fault_inserts_pfn(*b.kernel)) vma.flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
        vma.ops = &kCmaHeapVmOps;
        vma.private_data = b.priv;
        return ok_status();
    }

    void release(DmaBuf& b) const override {
        auto* buf = static_cast<CmaHeapBuffer*>(b.priv);
        release_pages(*b.kernel, buf->pages, "cma_heap_dma_buf_release");
        delete buf;
    }

    Status device_access(DmaBuf& b, uint64_t off, void* data, uint64_t len, bool write) const override {
        return heap_chunks_access(*b.kernel, static_cast<CmaHeapBuffer*>(b.priv)->pages, off, data, len, write);
    }

    // cma_release() → free_contig_range(): __free_page() of each page (a
    // reference drop: a page someone still holds is freed when they let go)
    // and WARN "%lu pages are still in use!" for those whose count was not 1.
    // A pinned one is also reported to the pin tracker.
    static void release_pages(Kernel& k, std::vector<Folio*>& pages, const char* where) {
        unsigned long busy = 0;
        for (Folio* p : pages) {
            busy += p->ref_count() != 1;
            pin_track_moved(k, p, p->head(), where, "freed by the exporter while pinned");
            k.ref_note(p, -1);
            k.mem->folio_put(p);
        }
        pages.clear();
        if (busy) k.warn("free_contig_range", std::to_string(busy) + " pages are still in use!");
    }
};

const CmaHeapOps kCmaHeapOps;

}  // namespace

Result<File*> cma_heap_allocate(Kernel& k, uint64_t len) {
    auto* buf = new CmaHeapBuffer;
    const uint64_t pagecount = len >> PAGE_SHIFT;
    for (uint64_t i = 0; i < pagecount; ++i) {
        // The clearing loop's "killed by SIGKILL" check.
        Task* cur = current();
        Result<Folio*> f = Error(EINTR);
        if (!cur || !cur->fatal_signal_pending()) f = k.mem->cma_alloc_folio(0);
        if (!f) {
            CmaHeapOps::release_pages(k, buf->pages, "cma_heap_allocate");
            delete buf;
            return f.error();
        }
        k.ref_note(*f, 1);
        buf->pages.push_back(*f);
    }
    auto f = dma_buf_export(k, kCmaHeapOps, "cma", len, buf);
    if (!f) {
        CmaHeapOps::release_pages(k, buf->pages, "cma_heap_allocate");
        delete buf;
    }
    return f;
}

}  // namespace pl
