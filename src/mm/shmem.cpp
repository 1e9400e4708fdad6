// pinlab — tmpfs, memfd and shared anonymous memory (upstream mm/shmem.c).
//
// shmem folios are swap-backed page-cache folios with no writeback: a fault
// finds or allocates a zeroed page in the cache and never drops the
// mmap_lock (there is no I/O without swap, which the model does not have).
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/fault_around.h"
#include "mm/internal.h"

namespace pl {

namespace {

// shmem_fault() → shmem_get_folio_gfp(SGP_CACHE).
class ShmemVmOps final : public VmOperations {
public:
    const char* name() const override { return "shmem_vm_ops"; }
    vm_fault_t fault(VmFault& vmf) const override {
        Inode& inode = *vmf.vma->file->inode;
        if (vmf.pgoff >= size_to_pages(inode.size.load())) return VM_FAULT_SIGBUS;
        Folio* folio = nullptr;
        vm_fault_t r = filemap_get_or_create(inode, vmf.pgoff, CreateMode::Fault, &folio);
        if (r) return r;
        vmf.page = folio->head();
        return 0;
    }
    // shmem_vm_ops and shmem_anon_vm_ops map around read faults too.
    bool has_map_pages() const override { return true; }
    vm_fault_t map_pages(VmFault& vmf, pgoff_t s, pgoff_t e) const override { return filemap_map_pages(vmf, s, e); }
};

// shmem_file_operations: ->mmap is shmem_mmap().
class ShmemFileOps final : public FileOperations {
public:
    Status mmap(File&, Vma& vma) const override {
        vma.ops = &shmem_vm_ops();
        return ok_status();
    }
};

}  // namespace

const VmOperations& shmem_vm_ops() {
    static const ShmemVmOps ops;
    return ops;
}

const FileOperations& shmem_file_operations() {
    static const ShmemFileOps ops;
    return ops;
}

// shmem_alloc_folio(): movable unless a longterm pin is being taken
// (memalloc_pin_save), so FOLL_LONGTERM can migrate shmem pages away from
// ZONE_MOVABLE/CMA.
Result<Folio*> shmem_alloc_folio(Inode& inode) {
    PL_TRY_ASSIGN(Folio * folio, inode.kernel.mem->alloc_folio(0, current_gfp_context(GFP_HIGHUSER_MOVABLE)));
    folio->set(PG_swapbacked);
    return folio;
}

// shmem_fallocate(mode 0): allocates the pages of the range into the cache.
// Caller holds i_rwsem for write.
Status shmem_fallocate(Inode& inode, uint64_t off, uint64_t len) {
    PhysMem& mem = *inode.kernel.mem;
    pgoff_t first = off >> PAGE_SHIFT, last = size_to_pages(off + len);
    for (pgoff_t index = first; index < last; ++index) {
        Folio* folio = nullptr;
        if (filemap_get_or_create(inode, index, CreateMode::Write, &folio)) return Error(ENOSPC);
        mem.folio_put(folio);
    }
    return ok_status();
}

// shmem_zero_setup(): MAP_SHARED|MAP_ANONYMOUS is backed by an internal
// tmpfs file ("/dev/zero (deleted)") as large as the mapping.
Status shmem_zero_setup(Vma& vma) {
    Kernel& k = kernel_of(vma);
    uint64_t size = (vma.pgoff << PAGE_SHIFT) + (vma.end - vma.start);
    if (size > MAX_FILE_SIZE) return Error(EINVAL);
    Inode* inode = k.inode_new(FsKind::Tmpfs);
    inode->size.store(size);
    File* file = new File(inode, &shmem_file_operations(), "/dev/zero (deleted)");
    if (vma.file) vma.file->put();
    vma.file = file;  // the VMA owns this reference
    vma.ops = &shmem_vm_ops();
    inode->mapping.link_vma(&vma);
    return ok_status();
}

}  // namespace pl
