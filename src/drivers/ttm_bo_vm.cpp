// pinlab — the TTM bo's mmap and fault handler (upstream
// drivers/gpu/drm/ttm/ttm_bo_vm.c: ttm_bo_mmap_obj(), ttm_bo_vm_fault(),
// ttm_bo_vm_fault_reserved() and, from the v5.x huge page-table entry series,
// ttm_bo_vm_huge_fault() / ttm_bo_vm_insert_huge()).
//
//   bo (file offsets)      0 ............ 511 | 512 ........... 1023 | 1024 1025 ...
//   backing (system)       [ folio, order 9  ] [ folio, order 9    ] [ order 0 ] ...
//   backing (VRAM)         [ one iomem range, aligned to its size ...............]
//   user mapping           [ PMD leaf        ] [ PMD leaf          ] [ PTE ][ PTE ]
//
// A huge leaf is used only where the VMA, the file offset and the pfn are
// all aligned to the leaf size and the backing is contiguous under it; every
// other page gets a PTE. No entry holds a page reference.
#include "base/sync/rwsem.h"
#include "drivers/ttm_bo.h"
#include "fs/file.h"
#include "mm/internal.h"
#include "mm/physmem.h"

namespace pl {

namespace {

class TtmBoVmOps final : public VmOperations {
public:
    const char* name() const override { return "ttm_bo_vm"; }

    // ttm_bo_vm_fault_reserved() for one page (the model does not prefault
    // the TTM_BO_VM_NUM_PREFAULT neighbours).
    vm_fault_t fault(VmFault& vmf) const override {
        TtmBo& bo = *static_cast<TtmBo*>(vmf.vma->private_data);
        sync::ReadGuard g(bo.resv);
        if (vmf.pgoff >= bo.nr_pages) return VM_FAULT_SIGBUS;
        const pfn_t pfn = bo.pfn_at(vmf.pgoff);
        // VM_MIXEDMAP: vmf_insert_mixed() with PFN_DEV (a normal, refcounted
        // page where the arch has no pte_special); VM_PFNMAP: vmf_insert_pfn().
        if (vmf.vma->flags & VM_MIXEDMAP) return vmf_insert_mixed(*vmf.vma, vmf.address, pfn, PFN_DEV);
        return vmf_insert_pfn(*vmf.vma, vmf.address, pfn);
    }

    bool has_huge_fault() const override { return true; }

    // ttm_bo_vm_insert_huge(): falls back to PTEs unless the whole leaf lies
    // inside the bo, the pfn is aligned and the backing contiguous.
    vm_fault_t huge_fault(VmFault& vmf, unsigned order) const override {
        TtmBo& bo = *static_cast<TtmBo*>(vmf.vma->private_data);
        if (bo.opts.huge == TtmHuge::Off) return VM_FAULT_FALLBACK;
        if (order != PMD_ORDER && order != PUD_ORDER) return VM_FAULT_FALLBACK;
        sync::ReadGuard g(bo.resv);
        const unsigned long nr = 1UL << order;
        const pgoff_t pgoff = vmf.pgoff & ~pgoff_t{nr - 1};  // the fault must not cross the bo's boundary
        if (pgoff != vmf.pgoff || pgoff + nr > bo.nr_pages) return VM_FAULT_FALLBACK;
        const pfn_t pfn = bo.pfn_at(pgoff);
        if (pfn & (nr - 1)) return VM_FAULT_FALLBACK;
        PhysMem& mem = *bo.kernel.mem;
        unsigned pfn_flags = PFN_DEV;
        if (bo.opts.huge_pfn == TtmHugePfnFlags::DevMap) {
            // Hellström's fix (seed 003): a devmap entry with no pgmap behind
            // it, which GUP-fast backs off from; a pfn that does have a pgmap
            // must not be mapped this way.
            Page* p = mem.pfn_to_page(pfn);
            if (p && mem.page_pgmap(p)) return VM_FAULT_FALLBACK;
            pfn_flags |= PFN_MAP;
        }
        if (!bo.contiguous(pgoff, nr)) return VM_FAULT_FALLBACK;
        const bool write = vmf.flags & FAULT_FLAG_WRITE;
        vm_fault_t r = order == PMD_ORDER ? vmf_insert_pfn_pmd(*vmf.vma, vmf.address, pfn, pfn_flags, write)
                                          : vmf_insert_pfn_pud(*vmf.vma, vmf.address, pfn, pfn_flags, write);
        return r == VM_FAULT_NOPAGE ? r : VM_FAULT_FALLBACK;
    }
};

const TtmBoVmOps kTtmBoVmOps;

}  // namespace

// ttm_bo_mmap_obj(): private (COW) mappings are refused, as upstream does
// since the seed 003 thread (a COW'ed PFN mapping needs pte_special or the
// linear-pfn rule); the range must lie inside the bo.
Status ttm_bo_mmap(TtmBo& bo, Vma& vma) {
    if (vma.is_cow_mapping()) return Error(EINVAL);
    if (vma.pgoff >= bo.nr_pages || vma.nr_pages() > bo.nr_pages - vma.pgoff) return Error(EINVAL);
    vma.ops = &kTtmBoVmOps;
    vma.private_data = &bo;
    // ttm_bo_mmap_obj(): VM_PFNMAP|VM_IO since the 2021 switch that followed
    // seed 003; VM_MIXEDMAP before (v5.11 ttm_bo_mmap_vma_setup()).
    if (bo.opts.mode == TtmMapMode::PfnMap) vma.flags |= VM_PFNMAP | VM_IO;
    else vma.flags |= VM_MIXEDMAP;
    vma.flags |= VM_DONTEXPAND | VM_DONTDUMP;
    return ok_status();
}

}  // namespace pl
