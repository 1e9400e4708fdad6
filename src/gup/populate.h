// pinlab — populating page tables through GUP (upstream mm/gup.c:
// populate_vma_page_range(), faultin_page_range(), __mm_populate(); the
// caller side of MADV_POPULATE_(READ|WRITE) is mm/madvise.c's
// madvise_populate()).
//
// None of these take references: they run __get_user_pages() with no pages
// array, so entries without a struct page (-EEXIST) are simply skipped.
#pragma once

#include "mm/mm_struct.h"
#include "mm/vma.h"

namespace pl {

enum class PopulateAccess : uint8_t { Read, Write };
enum class PopulateErrors : uint8_t { Report, Ignore };

// populate_vma_page_range(): faults in [start, end) of one VMA as mlock()
// and MAP_POPULATE want it: a write fault for private writable mappings (to
// break COW now), otherwise a FOLL_FORCE read fault. VM_LOCKONFAULT VMAs are
// left alone; inaccessible (PROT_NONE) ones give -EFAULT. Caller holds the
// mmap_lock: for read or write when `locked` is null (it stays held), for
// read when `locked` points at 1 (it may be dropped: *locked = 0). Returns
// the pages processed (0 when the lock was dropped first) or -errno.
long populate_vma_page_range(Vma& vma, vaddr_t start, vaddr_t end, int* locked);

// faultin_page_range(): MADV_POPULATE_(READ|WRITE)'s fault-in of the page-
// aligned [start, end) across VMAs, with proper permissions (no FOLL_FORCE)
// and FOLL_MADV_POPULATE's error reporting: -ENOMEM at a hole, -EINVAL for a
// VMA check_vma_flags() rejects, -EHWPOISON for poisoned pages, -EFAULT for
// SIGBUS/SIGSEGV faults, -EINTR on a fatal signal. Caller holds the
// mmap_lock for read (*locked == 1); it may be dropped (*locked = 0).
// Returns the pages processed or -errno.
long faultin_page_range(MmStruct& mm, vaddr_t start, vaddr_t end, PopulateAccess access, int* locked);

// madvise_populate() (mm/madvise.c): faultin_page_range() until the whole
// range is done, re-taking the lock whenever it was dropped, and madvise's
// errno mapping. Caller holds the mmap_lock for read; it still does on return.
int madvise_populate(MmStruct& mm, vaddr_t start, vaddr_t end, PopulateAccess access);

// __mm_populate(): MAP_POPULATE / MAP_LOCKED (and mlock()) after the VMAs
// are set up. Caller holds no mmap_lock; it is taken for read here and may be
// dropped and re-taken by faults. VM_IO/VM_PFNMAP VMAs and holes are skipped.
// 0 or the first -errno (always 0 with PopulateErrors::Ignore).
int __mm_populate(MmStruct& mm, vaddr_t start, uint64_t len, PopulateErrors errors);

// mm_populate(): what mmap() does for MAP_POPULATE; errors are ignored.
inline void mm_populate(MmStruct& mm, vaddr_t start, uint64_t len) {
    (void)__mm_populate(mm, start, len, PopulateErrors::Ignore);
}

}  // namespace pl
