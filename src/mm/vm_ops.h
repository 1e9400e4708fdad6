// pinlab — vm_operations_struct: how a file system or driver backs a VMA.
//
// The fault path calls these exactly where upstream calls vma->vm_ops->...;
// drivers (src/drivers) implement them to insert PFN, mixed or huge entries.
#pragma once

#include "base/result.h"
#include "mm/pte.h"
#include "mm/vm_flags.h"

namespace pl {

class Vma;
class Folio;
struct Page;

// struct vm_fault
struct VmFault {
    Vma* vma = nullptr;
    vaddr_t address = 0;     // page-aligned faulting address
    vaddr_t real_address = 0;
    unsigned flags = 0;      // FAULT_FLAG_*
    pgoff_t pgoff = 0;       // file offset of `address`, in pages
    pte::entry_t orig_pte = 0;
    Page* page = nullptr;    // out: the page ->fault found (with a reference), or null after NOPAGE
};

class VmOperations {
public:
    virtual ~VmOperations() = default;
    virtual const char* name() const = 0;
    // A new VMA now refers to this object (fork, split, mremap).
    virtual void open(Vma&) const {}
    virtual void close(Vma&) const {}
    // ->fault: return the page in vmf.page (referenced, VM_FAULT_LOCKED not
    // used by the model), or install entries itself and return VM_FAULT_NOPAGE.
    virtual vm_fault_t fault(VmFault& vmf) const = 0;
    // ->huge_fault(order): PMD (order 9) or PUD (order 18) entries; default:
    // fall back to PTEs.
    virtual vm_fault_t huge_fault(VmFault&, unsigned /*order*/) const { return VM_FAULT_FALLBACK; }
    virtual bool has_huge_fault() const { return false; }
    // ->map_pages: map what is ready in the page cache for file offsets
    // [start_pgoff, end_pgoff] around a read fault (do_fault_around(),
    // src/mm/fault_around.cpp); VM_FAULT_NOPAGE when vmf.address got mapped.
    virtual bool has_map_pages() const { return false; }
    virtual vm_fault_t map_pages(VmFault&, pgoff_t /*start_pgoff*/, pgoff_t /*end_pgoff*/) const { return 0; }
    // ->page_mkwrite: the page is about to become writable in a shared
    // mapping (dirty accounting, block allocation). Returns 0 or VM_FAULT_*.
    virtual bool has_page_mkwrite() const { return false; }
    virtual vm_fault_t page_mkwrite(VmFault&) const { return 0; }
    // ->pfn_mkwrite for VM_PFNMAP/VM_MIXEDMAP entries without a page.
    virtual bool has_pfn_mkwrite() const { return false; }
    virtual vm_fault_t pfn_mkwrite(VmFault&) const { return 0; }
    // ->may_split: -EINVAL refuses a split at addr.
    virtual Status may_split(Vma&, vaddr_t) const { return ok_status(); }
};

}  // namespace pl
