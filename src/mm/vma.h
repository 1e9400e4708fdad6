// pinlab — struct vm_area_struct.
#pragma once

#include <cstdint>

#include "base/units.h"
#include "mm/pte.h"
#include "mm/vm_flags.h"

namespace pl {

class MmStruct;
class File;
class AnonVma;
class VmOperations;

class Vma {
public:
    MmStruct* mm = nullptr;
    vaddr_t start = 0;   // vm_start
    vaddr_t end = 0;     // vm_end (exclusive)
    vm_flags_t flags = 0;
    pgoff_t pgoff = 0;   // vm_pgoff: file offset (or linear anon index) of `start`, in pages
    File* file = nullptr;        // vm_file, a counted reference
    AnonVma* anon_vma = nullptr; // counted reference, set on the first anonymous fault
    // anon_vma came from a parent at fork (anon_vma_fork()): upstream's
    // anon_vma_chain is then not singular, and vma_is_fork_child() keeps a
    // VMA without an anon_vma from merging into this one.
    bool anon_vma_forked = false;
    const VmOperations* ops = nullptr;
    void* private_data = nullptr;
    uint64_t id = 0;             // unique for the kernel's lifetime

    unsigned long nr_pages() const { return (end - start) >> PAGE_SHIFT; }
    bool contains(vaddr_t a) const { return a >= start && a < end; }
    // linear_page_index()
    pgoff_t pgoff_of(vaddr_t a) const { return pgoff + ((a - start) >> PAGE_SHIFT); }
    vaddr_t addr_of(pgoff_t off) const { return start + ((off - pgoff) << PAGE_SHIFT); }

    bool is_anonymous() const { return file == nullptr && ops == nullptr; }  // vma_is_anonymous()
    bool is_shared() const { return flags & VM_SHARED; }
    bool is_cow_mapping() const { return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE; }
    bool is_hugetlb() const { return flags & VM_HUGETLB; }
    bool is_special() const { return flags & (VM_PFNMAP | VM_MIXEDMAP | VM_IO); }
    bool is_shmem() const;      // tmpfs, memfd or shared anonymous
    bool is_dax() const;        // fsdax file
    bool is_secretmem() const;  // memfd_secret
    // Huge page size of a hugetlb VMA (2 MiB or 1 GiB); PAGE_SIZE otherwise.
    uint64_t huge_page_size() const;

    // vm_get_page_prot(): the PTE bits a new mapping of this VMA starts with.
    // Private writable mappings start read-only (COW); shared writable ones
    // that need dirty tracking (vma_wants_writenotify) too.
    pte::entry_t page_prot() const;
    // vma_wants_writenotify(): shared writable, and the file has page_mkwrite
    // or writeback accounting (or soft-dirty tracking is armed).
    bool wants_writenotify() const;
    // vma_needs_dirty_tracking(): GUP's check for FOLL_LONGTERM writes.
    bool needs_dirty_tracking() const;
};

}  // namespace pl
