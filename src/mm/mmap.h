// pinlab — address-space system calls and VMA plumbing shared by them.
#pragma once

#include "base/result.h"
#include "mm/mm_struct.h"

namespace pl {

class File;

// mmap(): caller holds no lock. Returns the address.
Result<vaddr_t> do_mmap(MmStruct& mm, vaddr_t addr, uint64_t len, int prot, int flags, File* file, uint64_t off);
// munmap() body: caller holds mmap_lock for write.
Status do_munmap(MmStruct& mm, vaddr_t start, uint64_t len);
// mprotect(), madvise(), mremap(): take the mmap_lock themselves.
Status do_mprotect(MmStruct& mm, vaddr_t start, uint64_t len, int prot);
Status do_madvise(MmStruct& mm, vaddr_t start, uint64_t len, int advice);
Result<vaddr_t> do_mremap(MmStruct& mm, vaddr_t addr, uint64_t old_len, uint64_t new_len, int flags, vaddr_t new_addr);
// /proc/PID/clear_refs.
Status do_clear_refs(MmStruct& mm, int value);

// VMA plumbing (caller holds mmap_lock for write).
Result<Vma*> split_vma(MmStruct& mm, Vma* vma, vaddr_t addr);  // returns the upper part
Status split_vma_range(MmStruct& mm, vaddr_t start, vaddr_t end);
void vma_destroy(MmStruct& mm, Vma* v);  // close, unreserve, unlink anon/file, free
void vma_link_file(Vma& v);              // takes a file reference, joins i_mmap
void vma_unlink_file(Vma& v);
// vm_flags_reset() of a live VMA: under its rmap locks, which the rmap
// walkers (migration, unmap_mapping_range) that read vm_flags hold.
void vma_set_flags(Vma& v, vm_flags_t flags);
// vm_end changes (mremap growing in place) under the same rmap locks.
void vma_set_end(Vma& v, vaddr_t end);
vm_flags_t vm_flags_from_prot(int prot);

}  // namespace pl
