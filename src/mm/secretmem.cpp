// pinlab — memfd_secret() (upstream mm/secretmem.c).
//
// Pages are unmovable, removed from the direct map (PG_secretmem), mapped
// only through shared, locked mappings, and unreachable by GUP. The file has
// no read, write or fallocate; its size is fixed once a page exists.
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

const VmOperations& secretmem_vm_ops();

namespace {

// secretmem_fault()
class SecretmemVmOps final : public VmOperations {
public:
    const char* name() const override { return "secretmem_vm_ops"; }
    vm_fault_t fault(VmFault& vmf) const override {
        Inode& inode = *vmf.vma->file->inode;
        if (vmf.pgoff >= size_to_pages(inode.size.load())) return VM_FAULT_SIGBUS;
        Folio* folio = nullptr;
        vm_fault_t r = filemap_get_or_create(inode, vmf.pgoff, CreateMode::Fault, &folio);
        if (r) return r;
        vmf.page = folio->head();
        return 0;
    }
};

// secretmem_mmap()
class SecretmemFileOps final : public FileOperations {
public:
    Status mmap(File&, Vma& vma) const override {
        if (!(vma.flags & (VM_SHARED | VM_MAYSHARE))) return Error(EINVAL);
        vma.flags |= VM_LOCKED | VM_DONTDUMP;
        vma.ops = &secretmem_vm_ops();
        return ok_status();
    }
};

}  // namespace

const VmOperations& secretmem_vm_ops() {
    static const SecretmemVmOps ops;
    return ops;
}

const FileOperations& secretmem_file_operations() {
    static const SecretmemFileOps ops;
    return ops;
}

// The mapping's gfp mask is GFP_HIGHUSER: never movable, so a secretmem
// page is never a migration candidate.
Result<Folio*> secretmem_alloc_folio(Inode& inode) {
    PL_TRY_ASSIGN(Folio * folio, inode.kernel.mem->alloc_folio(0, current_gfp_context(GFP_USER)));
    // set_direct_map_invalid_noflush()
    folio->set(PG_secretmem);
    return folio;
}

}  // namespace pl
