// pinlab — read fault-around: a read fault on a file mapping also maps the
// neighbouring pages that are ready in the page cache, without a fault each
// (upstream do_fault_around() in mm/memory.c, filemap_map_pages() in
// mm/filemap.c).
//
// What matters to GUP and COW: the extra PTEs use the VMA's vm_page_prot, so
// they are read-only wherever a write must be noticed (private mappings: COW;
// shared ones with page_mkwrite or dirty accounting) and a later write still
// faults; private mappings map the page-cache page itself, not a copy; each
// PTE holds a reference and a mapcount like any other file mapping.
#pragma once

#include "mm/vm_ops.h"

namespace pl {

class Vma;
struct Config;

// fault_around_pages: the debugfs fault_around_bytes rounded down to a power
// of two pages, at least one (fault_around_bytes_set()).
unsigned long fault_around_pages(const Config& cfg);

// should_fault_around(): the VMA's backer has ->map_pages, userfaultfd does
// not watch the VMA (uffd_disable_fault_around()), and the window is more
// than the one faulting page.
bool should_fault_around(const Vma& vma);

// do_fault_around(): the fault_around_pages-aligned window around
// vmf.address, clipped to the VMA and to the page table (PMD) holding the
// address, handed to ->map_pages. VM_FAULT_NOPAGE when vmf.address itself
// got mapped (do_read_fault() then does not call ->fault). The caller holds
// the mmap_lock for read and has allocated the PTE table of vmf.address.
vm_fault_t do_fault_around(VmFault& vmf);

// filemap_map_pages(): ->map_pages of page-cache backed files (ext4, xfs,
// btrfs, tmpfs/memfd/shared anonymous). Maps, read-only unless vm_page_prot
// allows writes, each page of [start_pgoff, end_pgoff] (clipped to EOF) whose
// PTE is none and whose folio is uptodate, not locked, still in the file and
// not hwpoisoned.
vm_fault_t filemap_map_pages(VmFault& vmf, pgoff_t start_pgoff, pgoff_t end_pgoff);

}  // namespace pl
