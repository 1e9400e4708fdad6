// pinlab — the dma-heap allocation ioctl (upstream drivers/dma-buf/dma-heap.c
// dma_heap_ioctl_allocate(), dma_heap_buffer_alloc()) and the dma-buf C API.
#include "drivers/dma_heap.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "fs/file.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

namespace pl {

Result<File*> dma_heap_alloc(Kernel& k, std::string_view heap, uint64_t len, uint32_t fd_flags, uint64_t heap_flags) {
    // The heap is the /dev/dma_heap/<name> node the ioctl is issued on.
    enum class Heap : uint8_t { System, SystemInsertPage, Cma } which;
    // dma-buf heaps came in v5.6: the model's eras before it have none.
    if (!k.cfg.era_at_least(Era::v5_8)) return Error(ENOENT);
    if (heap == "system") which = Heap::System;
    else if (heap == "system-insert-page") which = Heap::SystemInsertPage;
    else if (heap == "cma" && k.cfg.cma) which = Heap::Cma;  // add_default_cma_heap(): only with a CMA area
    else return Error(ENOENT);
    // dma_heap_ioctl_allocate(): unknown fd or heap flags.
    if (fd_flags & ~kDmaHeapValidFdFlags) return Error(EINVAL);
    if (heap_flags & ~kDmaHeapValidHeapFlags) return Error(EINVAL);
    // dma_heap_buffer_alloc(): "allocations have to begin and end on page
    // boundaries"; PAGE_ALIGN() of a length near ULONG_MAX wraps to 0.
    const uint64_t aligned = (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if (aligned == 0) return Error(EINVAL);
    switch (which) {
        case Heap::System:
            return system_heap_allocate(k, aligned,
                                        k.cfg.era_at_least(Era::v5_11) ? SystemHeapMap::RemapPfnRange
                                                                       : SystemHeapMap::HeapHelperFault);
        case Heap::SystemInsertPage: return system_heap_allocate(k, aligned, SystemHeapMap::VmInsertPage);
        case Heap::Cma: return cma_heap_allocate(k, aligned);
    }
    return Error(ENOENT);
}

Status heap_chunks_access(Kernel& k, const std::vector<Folio*>& chunks, uint64_t off, void* data, uint64_t len,
                          bool write) {
    uint64_t total = 0;
    for (Folio* c : chunks) total += c->nr_pages() << PAGE_SHIFT;
    if (off > total || len > total - off) return Error(EINVAL);
    auto* bytes = static_cast<uint8_t*>(data);
    uint64_t base = 0;  // byte offset of the current chunk
    for (Folio* c : chunks) {
        const uint64_t csize = c->nr_pages() << PAGE_SHIFT;
        while (len && off < base + csize) {
            const uint64_t in = off - base;
            const pfn_t pfn = k.mem->page_to_pfn(c->page(in >> PAGE_SHIFT));
            const unsigned po = static_cast<unsigned>(in & (PAGE_SIZE - 1));
            const unsigned n = static_cast<unsigned>(std::min<uint64_t>(len, PAGE_SIZE - po));
            PL_TRY(write ? k.mem->write_frame(pfn, po, bytes, n) : k.mem->read_frame(pfn, po, bytes, n));
            bytes += n;
            off += n;
            len -= n;
        }
        base += csize;
    }
    return ok_status();
}

}  // namespace pl

using namespace pl;

namespace {

long fail(const char* fn, Error e, const std::string& what = {}) {
    kapi_set_error(std::string(fn) + ": " + std::string(errno_name(e.errnum)) +
                   (what.empty() ? "" : " (" + what + ")"));
    return e.negative();
}

long device_access(const char* fn, pl_file* f, unsigned long off, void* buf, unsigned long len, bool write) {
    DmaBuf* db = dma_buf_of_file(reinterpret_cast<File*>(f));
    if (!db) return fail(fn, Error(EINVAL), "f is not a dma-buf");
    if (!buf && len) return fail(fn, Error(EINVAL), "buf");
    Status s = db->ops->device_access(*db, off, buf, len, write);
    if (!s) return fail(fn, s.error(), "outside the buffer");
    kapi_clear_error();
    return static_cast<long>(len);
}

}  // namespace

extern "C" {

pl_file* pl_dma_heap_alloc(pl_kernel* k, const char* heap, unsigned long len, unsigned int fd_flags,
                           unsigned long long heap_flags) {
    if (!k) return fail("pl_dma_heap_alloc", Error(EINVAL), "k"), nullptr;
    if (!heap) return fail("pl_dma_heap_alloc", Error(EINVAL), "heap"), nullptr;
    auto f = dma_heap_alloc(*reinterpret_cast<Kernel*>(k), heap, len, fd_flags, heap_flags);
    if (!f) {
        fail("pl_dma_heap_alloc", f.error(),
             f.error().errnum == ENOENT
                 ? std::string("no heap '") + heap + "' (expected system, system-insert-page, or cma with cma= set)"
                 : std::string());
        return nullptr;
    }
    kapi_clear_error();
    return reinterpret_cast<pl_file*>(*f);
}

unsigned long pl_dma_buf_size(pl_file* f) {
    DmaBuf* db = dma_buf_of_file(reinterpret_cast<File*>(f));
    return db ? db->size : 0;
}

long pl_dma_buf_device_read(pl_file* f, unsigned long off, void* buf, unsigned long len) {
    return device_access("pl_dma_buf_device_read", f, off, buf, len, false);
}

long pl_dma_buf_device_write(pl_file* f, unsigned long off, const void* buf, unsigned long len) {
    return device_access("pl_dma_buf_device_write", f, off, const_cast<void*>(buf), len, true);
}

}  // extern "C"
