// pinlab — the vfio type1 IOMMU backend: VFIO_IOMMU_MAP_DMA/UNMAP_DMA and
// the device's DMA through the mappings (drivers/vfio/vfio_iommu_type1.c).
// The C API is in pinlab/kapi.h.
#pragma once

#include <map>
#include <vector>

#include "base/sync/rwsem.h"
#include "base/units.h"

namespace pl {

class Kernel;
class Task;

// struct vfio_dma: one MAP_DMA. pfns[i] backs iova + i * PAGE_SIZE; a pfn
// that is_invalid_reserved_pfn() (no struct page, or PageReserved) was found
// through follow_fault_pfn() and holds no reference.
struct VfioDma {
    unsigned long iova = 0;
    unsigned long vaddr = 0;
    unsigned long size = 0;
    bool read = false;
    bool write = false;
    bool lock_cap = false;          // capable(CAP_IPC_LOCK) at MAP_DMA
    unsigned long locked = 0;       // pages charged to the mm's locked_vm
    std::vector<pfn_t> pfns;
};

// struct vfio_iommu.
struct VfioContainer {
    Kernel* kernel = nullptr;
    Task* task = nullptr;                    // null once the task has exited
    sync::Rwsem lock;                        // iommu->lock (a mutex: write only)
    std::map<unsigned long, VfioDma*> dmas;  // keyed by iova (the dma_list rb-tree)
};

}  // namespace pl
