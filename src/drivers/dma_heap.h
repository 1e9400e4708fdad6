// pinlab — dma-buf heaps (upstream drivers/dma-buf/dma-heap.c and
// drivers/dma-buf/heaps/): userspace allocates a buffer from a named heap
// (DMA_HEAP_IOCTL_ALLOC on /dev/dma_heap/<name>) and gets a dma-buf file.
//
// Heaps (none before v5.6, which added /dev/dma_heap):
//  "system"              system_heap.c: chunks of order 8, 4, 0 from the
//                        buddy; mmap by remap_pfn_range() (VM_IO|VM_PFNMAP,
//                        special PTEs): GUP refuses the mapping. Before
//                        v5.11 (heap-helpers.c) order-0 pages faulted in as
//                        normal PTEs, MAP_SHARED only: GUP takes them.
//  "system-insert-page"  the system heap as the 2021 patch seed 003 reacted to
//                        wanted it: mmap by vm_insert_page() (VM_MIXEDMAP,
//                        normal refcounted PTEs): GUP takes the pages.
//  "cma"                 cma_heap.c: pages from CMA pageblocks (only when the
//                        config has cma=); faulted in, from v6.9 with
//                        vmf_insert_pfn() into a VM_PFNMAP VMA, before that by
//                        returning the page from ->fault (normal PTEs).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "drivers/dma_buf.h"

namespace pl {

class Kernel;
class File;
class Folio;

// DMA_HEAP_VALID_FD_FLAGS: O_CLOEXEC | O_ACCMODE; DMA_HEAP_VALID_HEAP_FLAGS: none.
inline constexpr uint32_t kDmaHeapValidFdFlags = 02000000u | 3u;
inline constexpr uint64_t kDmaHeapValidHeapFlags = 0;

// dma_heap_ioctl_allocate() + dma_heap_buffer_alloc(): -ENOENT for a heap that
// does not exist (no /dev/dma_heap/<name>; "cma" without cma= in the config;
// any heap in eras before v5.6),
// -EINVAL for len 0 (after PAGE_ALIGN) or unknown flags, -ENOMEM, -EINTR
// (the allocating task has a fatal signal pending). The file reference is the
// caller's.
Result<File*> dma_heap_alloc(Kernel& k, std::string_view heap, uint64_t len, uint32_t fd_flags, uint64_t heap_flags);

// The heaps' allocate ops (dma_heap_system.cpp, dma_heap_cma.cpp); len is
// page aligned and non-zero.
enum class SystemHeapMap : uint8_t {
    RemapPfnRange,    // system_heap_mmap() since v5.11
    HeapHelperFault,  // v5.6-v5.10 heap-helpers.c: dma_heap_vm_fault() returns the page (get_page)
    VmInsertPage,     // the 2021 proposal: vm_insert_page() at mmap
};
Result<File*> system_heap_allocate(Kernel& k, uint64_t len, SystemHeapMap how);
Result<File*> cma_heap_allocate(Kernel& k, uint64_t len);

// The device's access to a buffer made of `chunks` (folios, in buffer order):
// bytes [off, off + len) read or written frame by frame. -EINVAL outside.
Status heap_chunks_access(Kernel& k, const std::vector<Folio*>& chunks, uint64_t off, void* data, uint64_t len,
                          bool write);

}  // namespace pl
