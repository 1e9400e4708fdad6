// pinlab — VMA predicates that depend on the file behind the mapping
// (upstream include/linux/mm.h, mm/mmap.c: vma_wants_writenotify(),
// vma_needs_dirty_tracking(), vm_get_page_prot()).
#include "mm/vma.h"

#include "fs/file.h"
#include "fs/inode.h"
#include "mm/vm_ops.h"

namespace pl {

namespace {

const Inode* inode_of(const Vma& v) { return v.file ? v.file->inode : nullptr; }

bool shared_writable(const Vma& v) { return (v.flags & (VM_SHARED | VM_WRITE)) == (VM_SHARED | VM_WRITE); }

// vm_ops_needs_writenotify()
bool ops_need_writenotify(const VmOperations* ops) {
    return ops && (ops->has_page_mkwrite() || ops->has_pfn_mkwrite());
}

// vma_fs_can_writeback()
bool fs_can_writeback(const Vma& v) {
    if (v.flags & VM_PFNMAP) return false;
    const Inode* inode = inode_of(v);
    return inode && inode->mapping.can_writeback();
}

}  // namespace

bool Vma::is_shmem() const {
    const Inode* inode = inode_of(*this);
    return inode && (inode->fs == FsKind::Tmpfs || inode->fs == FsKind::Memfd);
}

bool Vma::is_dax() const {
    const Inode* inode = inode_of(*this);
    return inode && inode->fs == FsKind::Fsdax;
}

bool Vma::is_secretmem() const {
    const Inode* inode = inode_of(*this);
    return inode && inode->fs == FsKind::Secretmem;
}

uint64_t Vma::huge_page_size() const {
    if (!is_hugetlb()) return PAGE_SIZE;
    const Inode* inode = inode_of(*this);
    if (inode && inode->huge_size == HugeSize::Size1G) return PUD_SIZE;
    return PMD_SIZE;
}

pte::entry_t Vma::page_prot() const {
    pte::entry_t prot = pte::PRESENT | pte::USER;
    if (!(flags & VM_ACCESS_FLAGS)) prot |= pte::PROTNONE;
    // Private writable mappings start read-only (COW); shared writable ones
    // too when writes must be noticed (vma_set_page_prot()).
    if (shared_writable(*this) && !wants_writenotify()) prot |= pte::WRITE;
    return prot;
}

bool Vma::wants_writenotify() const {
    // Private or read-only: the write bit is clear anyway.
    if (!shared_writable(*this)) return false;
    // The backer wants to know when pages are first written to.
    if (ops_need_writenotify(ops)) return true;
    // Soft-dirty tracking armed (clear_refs cleared VM_SOFTDIRTY).
    if (!(flags & VM_SOFTDIRTY) && !is_hugetlb()) return true;
    // userfaultfd write protection.
    if (flags & VM_UFFD_WP) return true;
    // Dirty accounting of a mapping that writes back.
    return fs_can_writeback(*this);
}

bool Vma::needs_dirty_tracking() const {
    if (!shared_writable(*this)) return false;
    if (ops_need_writenotify(ops)) return true;
    return fs_can_writeback(*this);
}

}  // namespace pl
