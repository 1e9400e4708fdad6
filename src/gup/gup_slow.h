// pinlab — the GUP slow path: __get_user_pages() and friends (spec §1–§3).
// The lockless walk is gup_fast.h, the FOLL_LONGTERM loop gup_longterm.h.
#pragma once

#include <string>

#include "gup/foll_flags.h"
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/mm_struct.h"
#include "mm/page.h"
#include "mm/vma.h"

namespace pl {

// is_valid_gup_args(): ORs `to_set` into *gup_flags (and FOLL_UNLOCKABLE when
// `locked` is given). False for: internal flags from the caller, *locked != 1,
// GET together with PIN, LONGTERM without PIN, GET/PIN without pages,
// LONGTERM with PCI_P2PDMA.
// Each refusal is logged (WARN_ON_ONCE upstream) in the current task's kernel.
bool is_valid_gup_args(Page** pages, const int* locked, unsigned* gup_flags, unsigned to_set);
// WARN in the calling thread's current task's kernel (none: dropped).
void gup_warn_current(const char* where, const std::string& what);

// check_vma_flags(): 0 or a negative errno, in upstream order (spec §3).
int check_vma_flags(const Vma& vma, unsigned gup_flags);

// gup_must_unshare(): a R/O PIN of this page must first unshare it (spec §4, §7).
// `vma` may be null (GUP-fast). `huge_leaf`: the page is mapped by a PMD/PUD leaf.
bool gup_must_unshare(const Vma* vma, unsigned flags, Page* page, bool huge_leaf);

// follow_page_mask(): the locked walk. On success `page` is set (and grabbed
// per flags) and *page_mask tells how many following subpages share the
// leaf. Otherwise page is null and err is 0 (not present / not writable
// enough: fault it in), -EMLINK (must unshare), -EEXIST (valid entry without
// a usable struct page) or another negative errno.
struct FollowResult {
    Page* page = nullptr;
    int err = 0;
};
FollowResult follow_page_mask(Vma& vma, vaddr_t addr, unsigned flags, unsigned long* page_mask);

// faultin_page(): 0 (retry the follow), -EBUSY (VM_FAULT_RETRY: *locked = 0
// unless NOWAIT), -EAGAIN (VM_FAULT_COMPLETED, *locked = 0), or an errno.
// In the v4.8 era it may clear FOLL_WRITE in *flags (VM_FAULT_WRITE).
int faultin_page(Vma& vma, vaddr_t addr, unsigned* flags, bool unshare, int* locked);

// vm_fault_to_errno(): a VM_FAULT_ERROR result as an errno (HWPOISON gives
// -EHWPOISON only with FOLL_HWPOISON); 0 when no error bit is set.
int vm_fault_to_errno(vm_fault_t ret, unsigned foll_flags);
// fatal_signal_pending(current).
bool fatal_signal_pending_current();

// __get_user_pages(): caller holds mm's mmap_lock for read. Pages taken, or
// (none taken) a negative errno or 0 when the lock was dropped.
// `vmas` (kernels before v6.5): when given, vmas[i] is set to the VMA of each
// page i taken (or skipped without a page); see src/gup/gup_vmas_tracker.h.
long __get_user_pages(MmStruct& mm, vaddr_t start, unsigned long nr_pages, unsigned gup_flags, Page** pages,
                      int* locked, Vma** vmas = nullptr);

// __get_user_pages_locked(): the lock dance. *locked == 0: take the lock
// here; on return *locked says whether it is still held (the caller's lock
// is dropped only with FOLL_UNLOCKABLE). `vmas` as for __get_user_pages();
// the caller must not combine it with FOLL_UNLOCKABLE (is_valid_gup_args()
// of v6.4 refuses that: a dropped lock invalidates the array). FOLL_SAME_FILE
// without gup.foll_same_file=on: WARN and -EINVAL.
long __get_user_pages_locked(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, int* locked,
                             unsigned flags, Vma** vmas = nullptr);

}  // namespace pl
