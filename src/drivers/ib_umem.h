// pinlab — RDMA memory registration: struct ib_umem, ib_umem_get() and
// ib_umem_release() (drivers/infiniband/core/umem.c). The C API is in
// pinlab/kapi.h.
#pragma once

#include <vector>

struct page;

namespace pl {

class Kernel;
class Task;

// One scatterlist entry: a run of physically contiguous pinned pages, as
// sg_alloc_append_table_from_pages() merges them.
struct IbSg {
    page* first = nullptr;
    unsigned long npages = 0;
};

// struct ib_umem.
struct IbUmem {
    Kernel* kernel = nullptr;
    Task* owner = nullptr;        // owning_mm's task; null once it exited
    unsigned long address = 0;    // the user virtual address registered
    unsigned long length = 0;
    bool writable = false;        // ib_access_writable(access)
    unsigned long charged = 0;    // pages added to pinned_vm (ib_umem_num_pages())
    std::vector<page*> pages;     // every pinned page, in address order (the device's view)
    std::vector<IbSg> sgt;        // umem->sgt_append
};

}  // namespace pl
