// pinlab — the VMAs GUP handed out through its vmas[] output array (before
// v6.5), and the uses of them that come too late.
//
// A vm_area_struct pointer from vmas[] is valid only while the caller keeps
// the mmap_lock it held across the GUP call (upstream: "@vmas are valid only
// as long as mmap_lock is held"). Once the hold ends another thread may
// munmap() the range and free the VMA; seed 002 (Lorenzo Stoakes, "remove the
// vmas parameter from GUP APIs", merged for v6.5) removed the array to end
// that "entire class of errors". The model keeps a record of every pointer it
// handed out, per calling thread and mm, marks the records stale when that
// thread's hold ends, and lets the C API's VMA accessors refuse a stale
// pointer without ever dereferencing it (the VMA may have been freed).
//
// Cost: nothing for GUP calls without vmas; the accessors and the unlock
// hooks read one counter while no record exists.
#pragma once

#include <string>

namespace pl {

class Kernel;
class MmStruct;
class Vma;

// vmas[0..n) were just filled by `api` (a kernel function name, kept for the
// warning) for `mm`, which the calling thread holds the mmap_lock of.
void vmas_track(MmStruct& mm, Vma* const* vmas, long n, const char* api);

// The calling thread's hold on mm's mmap_lock ends: mmap_read_unlock() or
// mmap_write_unlock() through the C API, or GUP dropping the lock inside a
// fault. Every VMA handed to this thread for this mm becomes stale.
void vmas_lock_released(const MmStruct& mm);

// May `fn` (a C accessor such as pl_vma_start) use `vma`? False when vma was
// handed out through vmas[] and has gone stale: the use is then WARNed in the
// kernel's log and *why says what happened. Never dereferences vma.
bool vmas_use_ok(const void* vma, const char* fn, std::string* why);

// `vma` was just obtained afresh under the mmap_lock (vma_lookup()): a stale
// record for the same address (a freed VMA whose memory now holds a new one)
// no longer describes it.
void vmas_forget(const void* vma);

// The kernel is being freed: drop its records (their pointers are meaningless
// afterwards and could collide with a later kernel's VMAs).
void vmas_forget_kernel(const Kernel& k);

// Records currently held (fresh + stale), for tests.
long vmas_tracked();

}  // namespace pl
