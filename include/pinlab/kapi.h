/*
 * pinlab — the kernel-style C API.
 *
 * A driver author's or reviewer's program links against libpinlab and drives
 * a simulated Linux kernel through the names the kernel itself uses. Every
 * call returns what the kernel returns: addresses or counts, or a negative
 * errno (-EFAULT, -ENOMEM, ...). Nothing here aborts on bad input: invalid
 * handles and arguments give -EINVAL (or NULL), with pl_last_error() saying
 * which argument was wrong.
 *
 * Usable from C (C11) and C++. Thread-safe: several threads may drive one
 * kernel at once; pl_set_current() is per thread.
 */
#ifndef PINLAB_KAPI_H
#define PINLAB_KAPI_H

#include <stddef.h>
#include <sys/mman.h>

#include "pinlab/uapi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque kernel objects. */
struct pl_kernel;       /* one simulated machine: RAM, tasks, files */
struct task_struct;     /* a process (one mm) */
struct mm_struct;       /* an address space */
struct vm_area_struct;  /* a VMA */
struct page;            /* a 4 KiB frame's metadata */
struct folio;           /* a head page of 2^order frames */
struct pl_file;         /* an open file or device */

/* ---- the kernel ------------------------------------------------------------
 * config: space-separated key=value words; NULL or "" for the defaults.
 * Keys: era (v4.8 v5.3 v5.5 v5.8 v5.10 v5.11 v5.16 v6.0 v6.4 v6.5 current),
 * ram, movable, cma, device_mem (sizes with K/M/G/T), hugetlb_2m, hugetlb_1g
 * (page counts), thp (always|madvise|never), thp.use_zero_page,
 * arch.pte_special, arch.gup_fast, arch.pmd_special, arch.pte_devmap,
 * gup.foll_same_file (FOLL_SAME_FILE, never merged; off by default) (on|off),
 * dmabuf.require_pfnmap, dmabuf.refuse_private (seed 003, never merged; off by
 * default; see the dma-buf heaps block) (on|off).
 * Returns NULL on a bad configuration; pl_last_error() names the key. */
struct pl_kernel *pl_kernel_new(const char *config);
/* Tears everything down: tasks exit, files close, memory is released. */
void pl_kernel_free(struct pl_kernel *k);
/* Gives up a kernel whose invariants broke, without tearing it down (that
 * may wait forever, e.g. truncating a page cache that holds a folio at
 * refcount 0): the process-wide registries forget it (its pin-tracker
 * records, the page-to-kernel lookup), so that later kernels in the process
 * behave as in a fresh one; its memory is leaked on purpose. */
void pl_kernel_abandon(struct pl_kernel *k);
/* Why the last call on this thread failed ("" if it did not). */
const char *pl_last_error(void);
/* The configuration in effect, in canonical key=value form. */
const char *pl_kernel_config(struct pl_kernel *k);
/* Full invariant check: 0, or -1 with pl_last_error() naming the broken
 * invariant and where (refcounts and mapcounts agree with page tables and the
 * page cache; no entry points at a freed frame; PageAnonExclusive only on
 * exclusively mapped anonymous pages; ...). */
int pl_kernel_check(struct pl_kernel *k);
/* A /proc/vmstat counter by name (e.g. "nr_foll_pin_acquired"); 0 if unknown. */
unsigned long pl_vmstat(struct pl_kernel *k, const char *name);
/* The kernel log: one "WARNING: <function>: <what>" line per WARN the model
 * raised (invalid GUP flags, a VMA used after the mmap_lock was dropped, an
 * API missing from the configured era, ...); "" when there were none. The
 * string stays valid until the calling thread's next pl_dmesg(). */
const char *pl_dmesg(struct pl_kernel *k);
/* Free pages in the buddy allocator, and RAM pages currently allocated. */
unsigned long pl_nr_free_pages(struct pl_kernel *k);
unsigned long pl_nr_allocated_pages(struct pl_kernel *k);

/* ---- pin tracker (seed 004) ------------------------------------------------
 * Every GET and PIN taken through GUP is recorded with its owner, flags and
 * step; misuse is reported in the kernel log (pl_dmesg() prints every report,
 * one line each). Owner: the innermost pl::PinOwnerScope of the calling thread
 * (a driver and its call site, e.g. "io_uring"), else the C GUP entry point
 * ("pin_user_pages_fast"). Step: the kernel's count of GUP entry calls, from 1.
 * Report kinds (stable names):
 *   "warn"               a WARN of the model (Kernel::warn), no page
 *   "put_page_on_pinned" put_page() on a page whose folio has outstanding pins
 *                        while the reference ledger holds no reference besides
 *                        the pins' own: the put can only be eating a pin (a put
 *                        of a GET or get_page() reference on a folio someone
 *                        else has pinned is legal and not reported); names the
 *                        page and the pinning owner and step
 *   "unpin_not_pinned"   unpin_user_page*() of a page with no pin (or one taken
 *                        with FOLL_GET); nothing is released
 *   "double_unpin"       unpin of a page whose pins were all released already,
 *                        or of more pins than it holds; nothing is released
 *   "leak"               pins still held when they can no longer be released
 *                        by their owner, one report per owner and folio: at
 *                        munmap() (pins the unmapping task's own GUP calls
 *                        took on pages it leaves with no mapping at all), at
 *                        a task's exit (pins its own GUP calls took), and at
 *                        the last task's exit or pl_kernel_free() (all, driver
 *                        pins included: rings and containers are closed at
 *                        exit, so theirs are released before). The frames are
 *                        quarantined (never freed)
 *   "pinned_page_moved"  a pinned folio freed (its last reference put),
 *                        truncated out of its file, or moved, evicted or freed
 *                        by a driver (TTM, dma-buf) while pinned
 *   "dangling_vma"       a vmas[] entry used after the mmap_lock was dropped
 *   "pfnmap_gup"         GUP took a reference on a page mapped by a PFN entry
 *                        (a huge PFN mapping without pmd_special or devmap,
 *                        seed 003); GUP itself refuses VM_PFNMAP/VM_IO VMAs
 * Pins taken inside pl_pin_owner_begin()/_end() belong to that owner, as a
 * driver's do: they are not the calling task's, so its exit and munmap do not
 * report them (the end of the run still does). */
/* Owner scopes for C callers (pl::PinOwnerScope): pins and GETs taken by this
 * thread until the matching pl_pin_owner_end() are recorded for `owner`
 * (and `site`, may be NULL). Scopes nest, innermost wins. -EINVAL for a NULL
 * owner or an end without a begin. The strings are copied. */
int pl_pin_owner_begin(const char *owner, const char *site);
int pl_pin_owner_end(void);
/* The number of reports of `kind` (NULL: all). */
int pl_warning_count(struct pl_kernel *k, const char *kind);
/* The dmesg line of report `index` (0-based, in order), valid while the kernel
 * lives; NULL past the end. */
const char *pl_warning_text(struct pl_kernel *k, int index);
/* Pins outstanding (recorded by the tracker, leaked ones included) that
 * `owner` took; owner NULL: all of them (for pins of non-zero pages this is
 * nr_foll_pin_acquired - nr_foll_pin_released, unless a pinned folio was freed:
 * "pinned_page_moved" drops its records). -EINVAL if k is NULL. */
long pl_pin_balance(struct pl_kernel *k, const char *owner);
/* Frames held by quarantined (leaked) pins: never freed. */
unsigned long pl_nr_quarantined_pages(struct pl_kernel *k);

/* ---- tasks ---------------------------------------------------------------- */
/* A new process with an empty address space. */
struct task_struct *pl_task_new(struct pl_kernel *k);
/* fork(): the child gets a copy of the parent's address space (copy_page_range,
 * COW, and the early copy of possibly-pinned exclusive anonymous pages).
 * NULL with pl_last_error() on failure (e.g. out of memory). */
struct task_struct *pl_fork(struct task_struct *parent);
/* clone(CLONE_VM|CLONE_THREAD): a new thread of t's process, with its own pid,
 * sharing t's address space (one more mm_users reference) and starting with
 * t's RLIMIT_MEMLOCK and CAP_IPC_LOCK. GUP run as the thread (pl_set_current)
 * works on the shared mm; pins its own GUP calls take are attributed to its
 * pid. pl_fork() of a thread forks the process (the child's parent is the
 * thread). Driver objects stay with the task that opened them. NULL with
 * pl_last_error() (-EINVAL) if t is NULL or has no mm. */
struct task_struct *pl_thread_new(struct task_struct *t);
/* exit(): drops the task's use of its address space (the last user, the last
 * thread of a process, tears it down), closes its driver objects, and frees
 * the task. */
void pl_exit(struct task_struct *t);
/* The task whose mm the calling thread's non-remote GUP calls use. */
void pl_set_current(struct task_struct *t);
struct task_struct *pl_current(void);
struct mm_struct *pl_task_mm(struct task_struct *t);
int pl_task_pid(struct task_struct *t);
/* Deliver a signal (SIGKILL is fatal; others are not) or clear pending ones. */
int pl_task_signal(struct task_struct *t, int sig);
void pl_task_clear_signals(struct task_struct *t);

/* ---- files and devices -------------------------------------------------------
 * fs: "ext4", "xfs", "btrfs" (page cache with writeback and page_mkwrite),
 * "tmpfs", "memfd" (shmem), "memfd-hugetlb", "hugetlbfs" (hugetlb pages;
 * size rounded up to the huge page size), "fsdax" (ZONE_DEVICE pages mapped
 * directly), "secretmem" (memfd_secret). A new, empty file of `size` bytes. */
struct pl_file *pl_file_new(struct pl_kernel *k, const char *fs, unsigned long size);
/* Devices: "pfnmap" (mmap uses remap_pfn_range: VM_IO|VM_PFNMAP, special
 * PTEs), "mixedmap" (vm_insert_page of normal pages into a VM_MIXEDMAP VMA). */
struct pl_file *pl_dev_open(struct pl_kernel *k, const char *device);
/* Another reference to the same open file (as dup() does). */
struct pl_file *pl_file_get(struct pl_file *f);
/* Drop a reference; the file closes when no fd or mapping holds it. */
void pl_file_put(struct pl_file *f);
/* pread()/pwrite() through the page cache: bytes or -errno. */
long pl_pread(struct pl_file *f, void *buf, unsigned long len, unsigned long off);
long pl_pwrite(struct pl_file *f, const void *buf, unsigned long len, unsigned long off);
/* ftruncate(): shrinking truncates the page cache and unmaps the pages. */
int pl_ftruncate(struct pl_file *f, unsigned long size);
/* fallocate(): mode 0 allocates, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE (3)
 * punches a hole. */
int pl_fallocate(struct pl_file *f, int mode, unsigned long off, unsigned long len);
/* fsync(): write back the file's dirty pages (pinned ones too). */
int pl_fsync(struct pl_file *f);
unsigned long pl_file_size(struct pl_file *f);
/* Bytes of the file as its backing store (the disk) holds them, ignoring the
 * page cache: what survives a crash. -EOPNOTSUPP for memory file systems. */
long pl_file_read_disk(struct pl_file *f, void *buf, unsigned long len, unsigned long off);

/* ---- address-space system calls (arguments as the syscalls', after the task) */
/* Returns the address, or a negative errno. PROT_* and MAP_* as <sys/mman.h>. */
long pl_mmap(struct task_struct *t, unsigned long addr, unsigned long len, int prot, int flags,
             struct pl_file *f, unsigned long off);
int pl_munmap(struct task_struct *t, unsigned long addr, unsigned long len);
int pl_mprotect(struct task_struct *t, unsigned long addr, unsigned long len, int prot);
int pl_madvise(struct task_struct *t, unsigned long addr, unsigned long len, int advice);
long pl_mremap(struct task_struct *t, unsigned long old_addr, unsigned long old_len, unsigned long new_len,
               int flags, unsigned long new_addr);
/* echo VALUE > /proc/PID/clear_refs (4 clears soft-dirty bits). */
int pl_clear_refs(struct task_struct *t, int value);

/* ---- the CPU's view --------------------------------------------------------
 * Loads and stores through the task's page tables, faulting and COWing as the
 * hardware and the kernel would. Returns len, or -EFAULT where the process
 * would get SIGSEGV/SIGBUS (-ENOMEM when the fault ran out of memory). */
long pl_write(struct task_struct *t, unsigned long addr, const void *buf, unsigned long len);
long pl_read(struct task_struct *t, unsigned long addr, void *buf, unsigned long len);
/* memset() through the page tables. */
long pl_memset(struct task_struct *t, unsigned long addr, int c, unsigned long len);

/* access_process_vm() (mm/memory.c __access_remote_vm()): a debugger's view
 * of t's memory, as ptrace(PEEKDATA/POKEDATA) and /proc/PID/mem use it. Each
 * page is taken with get_user_pages_remote(gup_flags, a FOLL_GET reference)
 * under t's mmap_read_lock, copied into (gup_flags & FOLL_WRITE) or out of,
 * set_page_dirty_lock()ed after a write and put_page()d. /proc/PID/mem passes
 * FOLL_FORCE [| FOLL_WRITE]: FOLL_FORCE writes a read-only private mapping by
 * breaking COW (never the file; Dirty COW, CVE-2016-5195, in era v4.8).
 * Returns the bytes copied, stopping at the first page GUP refuses (0 when
 * it is the first, or t has no mm: /proc/PID/mem turns that into -EIO);
 * -EINVAL for a NULL t, a NULL buf with len, or FOLL_GET/FOLL_PIN/
 * FOLL_LONGTERM in gup_flags (the call takes its own references). */
long pl_access_process_vm(struct task_struct *t, unsigned long addr, void *buf, unsigned long len,
                          unsigned int gup_flags);

/* ---- the device's view: a frame's bytes, as DMA sees them --------------------- */
int pl_page_read(struct page *p, unsigned int off, void *buf, unsigned int len);
int pl_page_write(struct page *p, unsigned int off, const void *buf, unsigned int len);

/* ---- inspection ------------------------------------------------------------ */
/* The page mapped at addr in t's page tables, without faulting; NULL if none
 * (or a special/PFN mapping without a struct page). No reference is taken. */
struct page *pl_virt_to_page(struct task_struct *t, unsigned long addr);
struct page *pl_pfn_to_page(struct pl_kernel *k, unsigned long pfn);
/* Page-table entry bits at addr, as a string such as
 * "present write dirty young soft_dirty pfn=0x1234 level=pte", or "none". */
const char *pl_pte_describe(struct task_struct *t, unsigned long addr);
/* Migrate the folio mapped at addr to a new frame (move_pages()-style):
 * 0, -EBUSY when it may be pinned or is otherwise referenced, -EFAULT if
 * nothing is mapped there. */
int pl_migrate_page(struct task_struct *t, unsigned long addr);
/* Compact memory (echo 1 > /proc/sys/vm/compact_memory): folios moved. */
long pl_compact_memory(struct pl_kernel *k);
/* memory_failure(): mark the frame poisoned. */
int pl_memory_failure(struct pl_kernel *k, unsigned long pfn);

/* ---- kernel names --------------------------------------------------------------- */
struct folio *page_folio(struct page *p);
struct page *folio_page(struct folio *f, unsigned long n);
unsigned long page_to_pfn(struct page *p);
unsigned long folio_nr_pages(struct folio *f);
int page_ref_count(struct page *p);
int folio_ref_count(struct folio *f);
int page_mapcount(struct page *p);
int folio_mapcount(struct folio *f);
/* folio->_pincount: pins of a large folio, one per pinned subpage (small
 * folios keep their pins in _refcount, GUP_PIN_COUNTING_BIAS each: 0 here). */
int pl_folio_pincount(struct folio *f);
/* 1 when the page is part of a large folio (THP, hugetlb). */
int PageCompound(struct page *p);
int PageAnonExclusive(struct page *p);
int PageAnon(struct page *p);
int PageDirty(struct page *p);
int PageWriteback(struct page *p);
int PageHuge(struct page *p);
int PageReserved(struct page *p);
/* 1 for the 4 KiB shared zero page and for any page of the huge zero folio
 * (what /proc/kpageflags reports as KPF_ZERO_PAGE; upstream's is_zero_page()
 * is the small one only: GUP pins the huge zero folio, never the small one). */
int is_zero_page(struct page *p);
/* Reference counting of a page the caller already holds a reference on. */
void get_page(struct page *p);
void put_page(struct page *p);
void folio_get(struct folio *f);
void folio_put(struct folio *f);
/* set_page_dirty_lock(). */
void set_page_dirty_lock(struct page *p);

void mmap_read_lock(struct mm_struct *mm);
void mmap_read_unlock(struct mm_struct *mm);
void mmap_write_lock(struct mm_struct *mm);
void mmap_write_unlock(struct mm_struct *mm);
/* The VMA containing addr, or NULL (callers hold the mmap_lock). */
struct vm_area_struct *vma_lookup(struct mm_struct *mm, unsigned long addr);
unsigned long pl_vma_start(struct vm_area_struct *vma);
unsigned long pl_vma_end(struct vm_area_struct *vma);
unsigned long pl_vma_flags(struct vm_area_struct *vma);

/* VMA flags, upstream values. (pinlab's own sources use the typed constants
 * of src/mm/vm_flags.h instead.) */
#ifndef PINLAB_INTERNAL
#define VM_NONE 0x00000000UL
#define VM_READ 0x00000001UL
#define VM_WRITE 0x00000002UL
#define VM_EXEC 0x00000004UL
#define VM_SHARED 0x00000008UL
#define VM_MAYREAD 0x00000010UL
#define VM_MAYWRITE 0x00000020UL
#define VM_MAYEXEC 0x00000040UL
#define VM_MAYSHARE 0x00000080UL
#define VM_GROWSDOWN 0x00000100UL
#define VM_UFFD_MISSING 0x00000200UL
#define VM_PFNMAP 0x00000400UL
#define VM_UFFD_WP 0x00001000UL
#define VM_LOCKED 0x00002000UL
#define VM_IO 0x00004000UL
#define VM_DONTCOPY 0x00020000UL
#define VM_DONTEXPAND 0x00040000UL
#define VM_ACCOUNT 0x00100000UL
#define VM_NORESERVE 0x00200000UL
#define VM_HUGETLB 0x00400000UL
#define VM_WIPEONFORK 0x02000000UL
#define VM_DONTDUMP 0x04000000UL
#define VM_SOFTDIRTY 0x08000000UL
#define VM_MIXEDMAP 0x10000000UL
#define VM_HUGEPAGE 0x20000000UL
#define VM_NOHUGEPAGE 0x40000000UL
#define VM_MERGEABLE 0x80000000UL
#endif /* PINLAB_INTERNAL */


/* ==== drivers: io_uring and vfio (src/drivers/) ===============================
 * Per-task memory-lock limit: RLIMIT_MEMLOCK in bytes (default 8 MiB, as
 * upstream's MLOCK_LIMIT), charged by io_uring buffer registration (the
 * user's locked_vm) and by vfio MAP_DMA (the mm's locked_vm); CAP_IPC_LOCK
 * lifts it. pl_task_locked_vm() reads the two counters in pages. */
int pl_task_set_rlimit_memlock(struct task_struct *t, unsigned long bytes);
int pl_task_set_cap_ipc_lock(struct task_struct *t, int on);
/* which: 0 = the mm's locked_vm (vfio), 1 = the user's locked_vm (io_uring). */
unsigned long pl_task_locked_vm(struct task_struct *t, int which);

/* io_uring fixed buffers (io_uring/rsrc.c, io_uring/memmap.c io_pin_pages()).
 * A ring belongs to the task that set it up; calls run as that task. The
 * way buffers are pinned follows the kernel's configuration:
 *  - gup.foll_same_file=on (seed 002): pin_user_pages(FOLL_WRITE|
 *    FOLL_LONGTERM|FOLL_SAME_FILE) under mmap_read_lock, then only the first
 *    VMA is checked: file-backed, not shmem, not hugetlb → -EOPNOTSUPP; a
 *    range over two files pins partially → -EFAULT;
 *  - era v6.4 and earlier (rsrc.c of 2023): pin_user_pages() with the vmas[]
 *    array under mmap_read_lock; VMAs of different files → -EINVAL;
 *    file-backed, not shmem and not hugetlb → -EOPNOTSUPP;
 *  - later eras: pin_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM), all or
 *    nothing (a partial pin is dropped: -EFAULT; GUP's own errors as they
 *    are, e.g. -EFAULT for a shared ext4 mapping); era current also
 *    coalesces a buffer backed by same-size large folios into one segment
 *    per folio, keeping one pin per folio (io_coalesce_buffer()).
 * pl_io_uring_setup: NULL (pl_last_error) for entries 0 or > 32768 (-EINVAL)
 * or when the ring's own pages do not fit RLIMIT_MEMLOCK (-ENOMEM; without
 * CAP_IPC_LOCK at setup they are charged to the user's locked_vm as
 * io_uring_create() does in the configured era, and returned at close); then
 * pl_last_error() reads "pl_io_uring_setup: -E...: ...". A ring
 * (or vfio container) left open when its task exits is closed by the exit,
 * as exit_files() closes its fd: its buffers (or DMA mappings) are
 * unregistered and unpinned then. The handle must still be freed with
 * pl_io_uring_exit() (pl_vfio_close()); other calls on it return -ESRCH. */
struct pl_io_uring;
struct iovec;
struct pl_io_uring *pl_io_uring_setup(struct task_struct *t, unsigned entries);
/* Closing the ring: registered buffers are unregistered. */
void pl_io_uring_exit(struct pl_io_uring *ring);
/* IORING_REGISTER_BUFFERS: 0, -EBUSY (buffers already registered), -EINVAL
 * (nr 0 or > 16384, NULL iov), -EFAULT (iov_len 0 or > 1 GiB with a base, a
 * partial pin), -EOVERFLOW, -ENOMEM (RLIMIT_MEMLOCK), or the pin's error. A
 * NULL base with length 0 registers a sparse slot. On error nothing stays
 * registered. */
int pl_io_uring_register_buffers(struct pl_io_uring *ring, const struct iovec *iov, unsigned nr);
/* IORING_UNREGISTER_BUFFERS: 0 or -ENXIO when none are registered. Pages
 * written by read_fixed are released dirty (unpin_user_pages_dirty_lock). */
int pl_io_uring_unregister_buffers(struct pl_io_uring *ring);
/* IORING_OP_WRITE_FIXED / READ_FIXED against `f` at `off`: [addr, addr+len)
 * must lie inside registered buffer buf_index (else -EFAULT). The data move
 * as the device's DMA: straight between the pinned frames and the file,
 * never through the task's page tables. Bytes moved or -errno. */
long pl_io_uring_write_fixed(struct pl_io_uring *ring, struct pl_file *f, unsigned buf_index, unsigned long addr,
                             unsigned long len, unsigned long off);
long pl_io_uring_read_fixed(struct pl_io_uring *ring, struct pl_file *f, unsigned buf_index, unsigned long addr,
                            unsigned long len, unsigned long off);
/* Inspection: segments (bio_vecs) of registered buffer buf_index, or -EINVAL;
 * *seg_size (may be NULL) receives the segment size (1 << folio_shift). */
int pl_io_uring_buffer_segments(struct pl_io_uring *ring, unsigned buf_index, unsigned long *seg_size);

/* vfio type1 IOMMU (drivers/vfio/vfio_iommu_type1.c): a container per task;
 * MAP_DMA pins the task's pages with pin_user_pages_remote(FOLL_LONGTERM
 * [|FOLL_WRITE]) in batches; VM_IO|VM_PFNMAP VMAs fall back to
 * follow_fault_pfn() (raw PFNs, no reference; RAM pfns are still charged
 * unless reserved). Pages charged to the mm's locked_vm. */
#ifndef VFIO_DMA_MAP_FLAG_READ
#define VFIO_DMA_MAP_FLAG_READ (1U << 0)
#define VFIO_DMA_MAP_FLAG_WRITE (1U << 1)
#endif
struct pl_vfio_container;
struct pl_vfio_container *pl_vfio_open(struct task_struct *t);
/* Closing the container unmaps everything. */
void pl_vfio_close(struct pl_vfio_container *c);
/* VFIO_IOMMU_MAP_DMA: 0, -EINVAL (size 0, iova/vaddr/size not page aligned,
 * no READ|WRITE, unknown flags, overflow), -EEXIST (overlaps a mapping),
 * -ENOMEM (RLIMIT_MEMLOCK), -EFAULT (nothing pinnable). On error nothing of
 * the range stays mapped or pinned. */
int pl_vfio_map_dma(struct pl_vfio_container *c, unsigned long iova, unsigned long vaddr, unsigned long size,
                    unsigned flags);
/* VFIO_IOMMU_UNMAP_DMA: the bytes unmapped (the mappings wholly inside
 * [iova, iova+size)), or -EINVAL (misaligned, or the range splits a mapping). */
long pl_vfio_unmap_dma(struct pl_vfio_container *c, unsigned long iova, unsigned long size);
/* Device DMA through the IOMMU: bytes or -EFAULT (unmapped iova, or a write
 * to a mapping without WRITE). A write dirties the pages at unmap. */
long pl_vfio_dma_read(struct pl_vfio_container *c, unsigned long iova, void *buf, unsigned long len);
long pl_vfio_dma_write(struct pl_vfio_container *c, unsigned long iova, const void *buf, unsigned long len);
/* ==== end of drivers: io_uring and vfio ====================================== */

/* ==== drivers: vmsplice and process_vm_readv/writev (src/drivers/) ==========
 * A pipe of PIPE_DEF_BUFFERS (16) buffers. vmsplice() (fs/splice.c
 * vmsplice_to_pipe(), iter_to_pipe()) takes the pages of [addr, addr+len) of
 * task t with get_user_pages_fast() as t, read-only and FOLL_GET (no pin), one
 * buffer per page until the pipe is full. Returns the bytes spliced, 0 for
 * len 0, -EAGAIN when the pipe is already full (SPLICE_F_NONBLOCK: the model
 * never sleeps), -EFAULT (bad or wrapping address, nothing spliced), -EINVAL
 * (bad handle). pl_pipe_read() copies out what the held pages contain now and
 * put_page()s each buffer once consumed: bytes, or -EAGAIN when empty.
 * pl_pipe_free() releases unread buffers. Pin tracker owner: "vmsplice". */
struct pl_pipe;
struct pl_pipe *pl_pipe_new(struct pl_kernel *k);
void pl_pipe_free(struct pl_pipe *p);
long pl_vmsplice(struct task_struct *t, struct pl_pipe *p, unsigned long addr, unsigned long len);
long pl_pipe_read(struct pl_pipe *p, void *buf, unsigned long len);
/* Buffers currently in the pipe (0 for a bad handle). */
unsigned pl_pipe_nr_bufs(struct pl_pipe *p);

/* process_vm_readv()/process_vm_writev() (mm/process_vm_access.c) with one
 * iovec each side: `caller` copies len bytes from target's remote_addr to its
 * own local_addr (readv) or the other way (writev). The target's pages are
 * pinned with pin_user_pages_remote() ([FOLL_WRITE for writev]) in batches
 * under mmap_read_lock, the caller's side goes through its page tables
 * (faulting, COWing), and the pins are dropped with
 * unpin_user_pages_dirty_lock() (dirty for writev). Permission, a reduced
 * ptrace check: every task is root (CAP_SYS_PTRACE), so any caller may
 * access a target while pl_task_set_ptrace_allowed(target, 1) (the default);
 * with 0 (a caller without CAP_SYS_PTRACE under Yama's ptrace_scope=1) only
 * the target's own thread group and its ancestors (task_is_descendant())
 * may; else -EPERM. Returns bytes copied
 * (a partial transfer returns what moved), 0 for len 0, -EFAULT (nothing
 * copied: unmapped or protected remote or local memory, wrapping ranges),
 * -ESRCH (target exited), -EINVAL (bad caller). Pin tracker owner:
 * "process_vm_access". */
long pl_process_vm_readv(struct task_struct *caller, struct task_struct *target, unsigned long local_addr,
                         unsigned long remote_addr, unsigned long len);
long pl_process_vm_writev(struct task_struct *caller, struct task_struct *target, unsigned long local_addr,
                          unsigned long remote_addr, unsigned long len);
int pl_task_set_ptrace_allowed(struct task_struct *t, int on);
/* ==== end of drivers: vmsplice and process_vm_readv/writev ================== */

/* ==== drivers: direct I/O, RDMA umem and futex keys (src/drivers/) ==========
 * O_DIRECT reads and writes of a disk file ("ext4", "xfs", "btrfs"; any other
 * file is -EINVAL, as open(O_DIRECT) refuses it) as iomap_dio_rw() does them:
 * file offset, length and user address must be multiples of the logical block
 * size (512), else -EINVAL; the user buffer of task t is pinned with
 * pin_user_pages_fast() as t (FOLL_WRITE for a read, which stores into
 * memory; not FOLL_LONGTERM), through iov_iter_extract_pages(). Before the
 * I/O the file's dirty page cache is written back, and for a write the page
 * cache of the range is invalidated (unmapped and dropped, pinned folios
 * included) before and after it, as kiocb_invalidate_pages() and
 * kiocb_invalidate_post_direct_write() do. A read stops at EOF (0 at or past
 * it); a write past EOF extends the file at completion.
 * With inflight == NULL the I/O completes before the call returns (bytes or
 * -errno). With inflight != NULL it is left in flight: the call returns the
 * bytes the I/O will move (pins held, nothing transferred yet) and
 * *inflight; the "device" moves the data between the disk and the pinned
 * pages when pl_dio_complete() runs, which then releases the pages
 * (bio_release_pages(): unpin_user_pages_dirty_lock(), dirty for a read),
 * frees the request and returns the bytes. Meanwhile the caller may fork,
 * munmap or store into the buffer. -EFAULT: unmapped or unpinnable memory
 * (VM_IO|VM_PFNMAP, ...) anywhere in the buffer (nothing moves). Eras up
 * to v6.0 (before v6.3's iov_iter_extract_pages()) take GET references with
 * get_user_pages_fast() and release them with put_page()
 * (set_page_dirty_lock() first for a read): fork() shares such pages COW
 * with the child. Pin tracker owner: "direct_io". */
struct pl_dio;
long pl_direct_read(struct task_struct *t, struct pl_file *f, unsigned long addr, unsigned long len,
                    unsigned long off, struct pl_dio **inflight);
long pl_direct_write(struct task_struct *t, struct pl_file *f, unsigned long addr, unsigned long len,
                     unsigned long off, struct pl_dio **inflight);
long pl_dio_complete(struct pl_dio *dio);

/* RDMA memory registration (drivers/infiniband/core/umem.c ib_umem_get(),
 * ib_umem_release()): [addr, addr+size) of task t is charged to its
 * mm->pinned_vm (pages; -ENOMEM over RLIMIT_MEMLOCK unless CAP_IPC_LOCK, see
 * pl_task_set_rlimit_memlock()) and pinned as t with pin_user_pages_fast()
 * (FOLL_LONGTERM, plus FOLL_WRITE when the access flags are writable: LOCAL_
 * or REMOTE_WRITE, REMOTE_ATOMIC, MW_BIND) in chunks of 512 pages, kept in a
 * scatterlist of physically contiguous runs. NULL with pl_last_error() and
 * *err (when err is given) set to -EINVAL (size 0, wrapping range, bad
 * task), -EOPNOTSUPP (IB_ACCESS_ON_DEMAND), -ENOMEM (limit), or GUP's error
 * (-EFAULT, -ENOMEM, ...; everything unwound), -EPERM (RLIMIT_MEMLOCK 0 without
 * CAP_IPC_LOCK: can_do_mlock()). pl_ib_umem_release() unpins
 * each run with unpin_user_page_range_dirty_lock(dirty when writable) and
 * uncharges pinned_vm. The device's view: RDMA READ (pl_ib_umem_dma_read)
 * and RDMA WRITE / receive (pl_ib_umem_dma_write, -EFAULT on a umem without
 * write access) at a byte offset into the region: bytes or -EFAULT/-EINVAL.
 * A umem still registered when its task exits is released then, as closing
 * the uverbs fd does (exit_files()); the handle must still be freed with
 * pl_ib_umem_release(), and device access through it gives -EFAULT.
 * Pin tracker owner: "ib_umem". */
#define PL_IB_ACCESS_LOCAL_WRITE 1
#define PL_IB_ACCESS_REMOTE_WRITE 2
#define PL_IB_ACCESS_REMOTE_READ 4
#define PL_IB_ACCESS_REMOTE_ATOMIC 8
#define PL_IB_ACCESS_MW_BIND 16
#define PL_IB_ACCESS_ON_DEMAND 64
struct pl_ib_umem;
struct pl_ib_umem *pl_ib_umem_get(struct task_struct *t, unsigned long addr, unsigned long size, int access,
                                  int *err);
void pl_ib_umem_release(struct pl_ib_umem *umem);
long pl_ib_umem_dma_read(struct pl_ib_umem *umem, unsigned long offset, void *buf, unsigned long len);
long pl_ib_umem_dma_write(struct pl_ib_umem *umem, unsigned long offset, const void *buf, unsigned long len);
/* Scatterlist entries (physically contiguous runs); 0 for a bad handle. */
unsigned long pl_ib_umem_nents(struct pl_ib_umem *umem);
/* mm->pinned_vm of t, in pages. */
unsigned long pl_task_pinned_vm(struct task_struct *t);

/* get_futex_key() (kernel/futex/core.c) for the u32 at uaddr of task t.
 * Private (PL_FUTEX_SHARED clear): mm + address, memory untouched. Shared:
 * the page is looked up with get_user_pages_fast(FOLL_WRITE) as t (so a COW
 * page is unshared first), or, when that faults and PL_FUTEX_READ is set (a
 * FUTEX_WAIT), read-only; the GET reference is dropped before returning.
 * Anonymous page: mm + address (FUT_OFF_MMSHARED; a read-only one is
 * -EFAULT); file, shmem or shared anonymous page: the inode's sequence
 * number + page index (FUT_OFF_INODE). Returns 0, -EINVAL (uaddr not 4-byte
 * aligned, bad task or out), -EFAULT (unmapped, unpinnable: VM_PFNMAP ...).
 * Two keys name the same futex iff pl_futex_key_equal() (match_futex()).
 * (The struct is pl_futex_key, the call pl_get_futex_key: C++ could not
 * otherwise name both.)
 * Pin tracker owner: "futex". */
#define PL_FUTEX_SHARED 1
#define PL_FUTEX_READ 2
#define PL_FUT_OFF_INODE 1U
#define PL_FUT_OFF_MMSHARED 2U
struct pl_futex_key {
    unsigned long ptr;   /* inode sequence number, or the mm */
    unsigned long word;  /* page index in the file, or the page-aligned address */
    unsigned int offset; /* offset in the page | PL_FUT_OFF_INODE | PL_FUT_OFF_MMSHARED */
};
int pl_get_futex_key(struct task_struct *t, unsigned long uaddr, int flags, struct pl_futex_key *out);
int pl_futex_key_equal(const struct pl_futex_key *a, const struct pl_futex_key *b);
/* ==== end of drivers: direct I/O, RDMA umem and futex keys ================== */

/* ==== drivers: videobuf2 (src/drivers/) ======================================
 * A V4L2 video queue with V4L2_MEMORY_USERPTR buffers, as videobuf2 runs it
 * (drivers/media/common/videobuf2/): each QBUF hands a user range to the
 * queue's allocator, whose get_userptr builds a frame vector with
 * vb2_create_framevec() (get_vaddr_frames(), <pinlab/frame_vector.h>: what it
 * takes depends on the era: GET references before v5.8, pins from v5.8,
 * FOLL_LONGTERM pins from v5.12 (era v5.16), raw PFNs without any reference
 * for VM_IO|VM_PFNMAP buffers until v6.1 (eras up to v6.0), -EFAULT for them
 * after). The queue belongs to task t (ioctls run as t); sizeimage is the
 * format's plane size (a buffer must be at least that long). Allocators:
 *  - PL_VB2_VMALLOC: pages (vm_map_ram) or, for PFNs without struct pages,
 *    physically contiguous PFNs (ioremap); else -ENOMEM;
 *  - PL_VB2_DMA_CONTIG: address and length 128-byte aligned (else -EINVAL);
 *    pages must be physically contiguous unless flags has PL_VB2_DEV_IOMMU
 *    (else -EFAULT, "contiguous mapping is too small"); PFNs without struct
 *    pages must be contiguous (dma_map_resource; else -EINVAL);
 *  - PL_VB2_DMA_SG: struct pages only; every failure is -ENOMEM.
 * PFNs that have struct pages (a remap_pfn_range() of RAM, "/dev/pfnmap")
 * are turned into pages by all three, still without a reference; those of
 * pl_dev_open(k, "iomem") (I/O memory mapped with io_remap_pfn_range():
 * VM_IO|VM_PFNMAP, no struct pages) are not. Released
 * (put_userptr: capture pages set_page_dirty_lock()ed, then
 * vb2_destroy_framevec()) when the buffer is queued again with another
 * pointer or length, at pl_vb2_reqbufs(), pl_vb2_queue_free() or when the
 * task exits; not at DQBUF. Pin tracker owner: "videobuf2". */
enum { PL_VB2_VMALLOC = 0, PL_VB2_DMA_CONTIG = 1, PL_VB2_DMA_SG = 2 };
/* V4L2_BUF_TYPE_VIDEO_CAPTURE (the device writes memory) and _OUTPUT (reads). */
enum { PL_VB2_CAPTURE = 1, PL_VB2_OUTPUT = 2 };
#define PL_VB2_DEV_IOMMU 0x1u
struct pl_vb2_queue;
/* NULL (pl_last_error) for a bad task, memops, type, flags, or sizeimage 0
 * or > 1 GiB. */
struct pl_vb2_queue *pl_vb2_queue_new(struct task_struct *t, int memops, int type, unsigned long sizeimage,
                                      unsigned flags);
/* close(): every buffer's memory is released. */
void pl_vb2_queue_free(struct pl_vb2_queue *q);
/* VIDIOC_REQBUFS(USERPTR): releases the old buffers and makes `count`
 * (at most 32) new ones; returns how many, or -EBUSY while buffers are queued
 * or done but not dequeued, -ESRCH once the task exited. */
int pl_vb2_reqbufs(struct pl_vb2_queue *q, unsigned count);
/* VIDIOC_QBUF: 0, -EINVAL (index, a buffer already queued, length <
 * sizeimage, dma-contig alignment), or get_userptr's error (see above); on
 * error the buffer holds no memory. */
int pl_vb2_qbuf(struct pl_vb2_queue *q, unsigned index, unsigned long userptr, unsigned long length);
/* The device completes the oldest queued buffer by DMA through the frames
 * its vector names now: capture writes min(len, length) bytes of data into
 * it, output reads them into data. Bytes moved, -EAGAIN when nothing is
 * queued, -EIO when a frame is not memory. */
long pl_vb2_device_dma(struct pl_vb2_queue *q, void *data, unsigned long len);
/* VIDIOC_DQBUF (O_NONBLOCK): the index of the oldest completed buffer
 * (*bytesused, may be NULL, gets its payload), or -EAGAIN. */
int pl_vb2_dqbuf(struct pl_vb2_queue *q, unsigned long *bytesused);
/* Inspection: the number of frames behind buffer `index` (-EINVAL if it has
 * no memory); the first `max` PFNs go to pfns (may be NULL), *got_ref (may be
 * NULL) says whether the vector holds references (0: raw PFNs). */
int pl_vb2_buffer_frames(struct pl_vb2_queue *q, unsigned index, unsigned long *pfns, unsigned max, int *got_ref);
/* ==== end of drivers: videobuf2 =============================================== */

/* ==== drivers: ttm (src/drivers/) ============================================
 * TTM-like GPU buffer objects (drivers/gpu/drm/ttm: ttm_bo.c, ttm_bo_vm.c),
 * the driver of seed 003. pl_ttm_bo_create() returns the bo's file (one
 * reference: drop it with pl_ttm_bo_put() or pl_file_put()); mmap it
 * MAP_SHARED (a private mapping is -EINVAL, as ttm_bo_mmap_obj() refuses COW
 * mappings). Placement PL_TTM_PL_SYSTEM: RAM pages the driver allocates in
 * chunks of up to 2 MiB and frees itself; PL_TTM_PL_VRAM: device memory
 * without a struct page. The fault handler inserts PFN entries that hold no
 * page reference: PTEs with vmf_insert_pfn() (VM_PFNMAP|VM_IO, the default)
 * or vmf_insert_mixed(PFN_DEV) (PL_TTM_MIXEDMAP: VM_MIXEDMAP, TTM in
 * v5.11), and, unless PL_TTM_NO_HUGE, PMD/PUD leaves with
 * vmf_insert_pfn_pmd()/_pud() where the mapping, file offset and pfn are
 * aligned and the backing is contiguous: PFN_DEV, or PFN_DEV|PFN_MAP with
 * PL_TTM_PFN_MAP (the fix proposed in the seed 003 thread: a devmap entry
 * with no pgmap behind it, refused by GUP-fast). Whether GUP can reach
 * those pages depends on arch.pte_special, arch.pmd_special and
 * arch.pte_devmap; when GUP takes a page through a PFN leaf (GUP-fast: a
 * leaf neither special nor devmap; the slow path: a huge leaf of a
 * VM_MIXEDMAP VMA, follow_huge_pmd()) the pin tracker reports "pfnmap_gup".
 * pl_ttm_bo_move() zaps every user mapping of the bo (ttm_bo_unmap_virtual),
 * copies the contents to a new backing in `placement` and frees the old one
 * (0; a move to the current placement does nothing; -ENOMEM). Freed system
 * pages that GUP still holds stay allocated until GUP lets go (TTM only drops
 * its own reference); each one that is still pinned is reported as
 * "pinned_page_moved" ("ttm_bo_move" or, when the last reference to the bo
 * goes, "ttm_bo_release"). pl_ttm_bo_read()/_write(): the device's (kernel
 * mapping's) access to the contents at byte offset off: len, or -EINVAL past
 * the end. pl_ttm_bo_pfn(): the pfn backing page pgoff (~0UL if none). Bad
 * handles: -EINVAL / NULL / ~0UL with pl_last_error(). */
#define PL_TTM_PL_SYSTEM 0
#define PL_TTM_PL_VRAM 1
#define PL_TTM_MIXEDMAP 0x1U
#define PL_TTM_NO_HUGE 0x2U
#define PL_TTM_PFN_MAP 0x4U
struct pl_file *pl_ttm_bo_create(struct pl_kernel *k, unsigned long size, int placement, unsigned int flags);
int pl_ttm_bo_move(struct pl_file *bo, int placement);
int pl_ttm_bo_placement(struct pl_file *bo);
unsigned long pl_ttm_bo_pfn(struct pl_file *bo, unsigned long pgoff);
long pl_ttm_bo_read(struct pl_file *bo, unsigned long off, void *buf, unsigned long len);
long pl_ttm_bo_write(struct pl_file *bo, unsigned long off, const void *buf, unsigned long len);
void pl_ttm_bo_put(struct pl_file *bo);
/* ==== end of drivers: ttm ===================================================== */

/* ==== drivers: dma-buf heaps (src/drivers/) ==================================
 * DMA_HEAP_IOCTL_ALLOC (drivers/dma-buf/dma-heap.c) on /dev/dma_heap/<heap>:
 * a dma-buf file of PAGE_ALIGN(len) bytes, zero-filled; the reference is the
 * caller's (pl_file_put() closes it; a mapping keeps it alive). pl_mmap() of
 * it goes through dma_buf_mmap_internal(): -EINVAL unless [off, off+len) lies
 * inside the buffer, then the heap's mmap:
 *   "system"              system_heap.c: chunks of order 8/4/0; remap_pfn_range
 *                         (VM_IO|VM_PFNMAP, special PTEs): GUP gives -EFAULT.
 *                         MAP_PRIVATE works only for a range inside one chunk
 *                         (remap_pfn_range's COW rule), else -EINVAL. Eras
 *                         v5.8/v5.10 (heap-helpers.c, before v5.11): order-0
 *                         pages faulted in as normal PTEs (GUP succeeds),
 *                         MAP_PRIVATE -EINVAL.
 *   "system-insert-page"  the 2021 proposal seed 003 reacted to: the same
 *                         chunks mapped with vm_insert_page (VM_MIXEDMAP,
 *                         normal PTEs): GUP succeeds (the uapi hazard).
 *   "cma"                 cma_heap.c, only when the config has cma= (else
 *                         NULL/ENOENT): pages from CMA pageblocks; MAP_PRIVATE
 *                         -EINVAL; faults map them with vmf_insert_pfn into a
 *                         VM_IO|VM_PFNMAP VMA (era current, upstream v6.9+) or,
 *                         in older eras, as normal pages (->fault returns the
 *                         page): GUP succeeds there.
 * fd_flags: O_CLOEXEC|O_ACCMODE only; heap_flags: must be 0 (else EINVAL);
 * len 0 is EINVAL; eras before v5.6 have no heaps (ENOENT). NULL on error,
 * pl_last_error() naming the errno.
 * Config switches (seed 003, never merged; off by default = upstream):
 *   dmabuf.require_pfnmap=on  after the heap's mmap, WARN "dma-buf: exporter
 *                             <heap> mmap did not set VM_PFNMAP" (report kind
 *                             "warn") when the VMA lacks VM_PFNMAP; the mmap's
 *                             own result is returned unchanged (the patch
 *                             WARNs, it does not refuse);
 *   dmabuf.refuse_private=on  MAP_PRIVATE (COW) mappings fail with -EINVAL.
 * Releasing a buffer whose pages are still pinned (possible only through a
 * mapping GUP could take: system-insert-page, system before v5.11, cma
 * before v6.9) reports
 * "pinned_page_moved" per pinned folio; the pin's references keep the frames
 * until unpinned, as upstream's put_page()-based __free_pages(). */
struct pl_file *pl_dma_heap_alloc(struct pl_kernel *k, const char *heap, unsigned long len, unsigned int fd_flags,
                                  unsigned long long heap_flags);
/* The buffer's size in bytes; 0 if f is not a dma-buf. */
unsigned long pl_dma_buf_size(struct pl_file *f);
/* The device's view: bytes [off, off+len) of the buffer's memory, read or
 * written as a DMA engine would (never through page tables). len or -EINVAL
 * (not a dma-buf, range outside the buffer). */
long pl_dma_buf_device_read(struct pl_file *f, unsigned long off, void *buf, unsigned long len);
long pl_dma_buf_device_write(struct pl_file *f, unsigned long off, const void *buf, unsigned long len);
/* ==== end of drivers: dma-buf heaps ========================================== */

/* ==== GUP: get_user_pages() / pin_user_pages() (src/gup/) ====================
 * FOLL_* flags: the public ones, current upstream values (the internal ones
 * such as FOLL_PIN/FOLL_TOUCH are rejected from callers, as upstream's
 * is_valid_gup_args() does). pinlab's own sources use the typed constants
 * of src/gup/foll_flags.h instead. */
#ifndef __cplusplus
#include <stdbool.h>
#endif
#ifndef PINLAB_INTERNAL
#define FOLL_WRITE 0x1U
#define FOLL_GET 0x2U
#define FOLL_DUMP 0x4U
#define FOLL_FORCE 0x8U
#define FOLL_NOWAIT 0x10U
#define FOLL_NOFAULT 0x20U
#define FOLL_HWPOISON 0x40U
#define FOLL_ANON 0x80U
#define FOLL_LONGTERM 0x100U
#define FOLL_SPLIT_PMD 0x200U
#define FOLL_PCI_P2PDMA 0x400U
#define FOLL_INTERRUPTIBLE 0x800U
#define FOLL_HONOR_NUMA_FAULT 0x1000U
#define GUP_PIN_COUNTING_BIAS 1024
#endif /* PINLAB_INTERNAL */

/* Returns: the number of pages taken (possibly fewer than nr_pages: the
 * caller releases exactly that many), or a negative errno when none were.
 * GET references (get_*) are dropped with put_page(), PIN references (pin_*)
 * with unpin_user_page*(). Non-remote variants use pl_current()'s mm.
 * get_user_pages()/pin_user_pages(): the caller holds mmap_read_lock().
 * *_remote(): the caller holds mm's mmap_lock for read; with `locked`
 * (must point at 1) the lock may be dropped, and then *locked is 0 on return.
 * *_unlocked(): takes and releases the lock itself.
 * Invalid arguments: get_* → -EINVAL; pin_user_pages*() → 0. */
long get_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages);
long get_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages,
                           unsigned int gup_flags, struct page **pages, int *locked);
long get_user_pages_unlocked(unsigned long start, unsigned long nr_pages, struct page **pages,
                             unsigned int gup_flags);
long pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, struct page **pages);
long pin_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages,
                           unsigned int gup_flags, struct page **pages, int *locked);
long pin_user_pages_unlocked(unsigned long start, unsigned long nr_pages, struct page **pages,
                             unsigned int gup_flags);

/* The lockless walk first (no mmap_lock; RCU keeps page tables alive), then
 * the slow path for the rest with the lock taken inside. Flags outside
 * upstream's fast set (FOLL_NOWAIT, FOLL_ANON, FOLL_DUMP, ...) → -EINVAL;
 * both return -EINVAL on invalid arguments. FOLL_LONGTERM pins migrate
 * folios out of ZONE_MOVABLE/CMA first, as the slow path does. */
int get_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages);
int pin_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages);

/* Releasing pins. */
void unpin_user_page(struct page *page);
void unpin_user_pages(struct page **pages, unsigned long npages);
void unpin_user_pages_dirty_lock(struct page **pages, unsigned long npages, bool make_dirty);
void unpin_user_page_range_dirty_lock(struct page *page, unsigned long npages, bool make_dirty);
void unpin_folio(struct folio *folio);
void unpin_folios(struct folio **folios, unsigned long nfolios);
void unpin_user_folio(struct folio *folio, unsigned long npages);
/* folio_maybe_dma_pinned(): exact for large folios, heuristic for small. */
int folio_maybe_dma_pinned(struct folio *folio);
/* ---- more entry points: fast_only, single page + VMA, fixup_user_fault,
 *      get_dump_page, memfd_pin_folios (src/gup/) -------------------------- */
/* Kernel-style error pointers (include/linux/err.h): functions that return a
 * pointer or an error (get_user_page_vma_remote()) encode -errno in the
 * pointer's top 4095 values. */
#ifndef MAX_ERRNO
#define MAX_ERRNO 4095
#endif
static inline void *ERR_PTR(long error) { return (void *)error; }
static inline long PTR_ERR(const void *ptr) { return (long)ptr; }
static inline bool IS_ERR(const void *ptr) { return (unsigned long)ptr >= (unsigned long)-MAX_ERRNO; }
static inline bool IS_ERR_OR_NULL(const void *ptr) { return !ptr || IS_ERR(ptr); }

/* Fault flags of handle_mm_fault()/fixup_user_fault(), upstream values (enum
 * fault_flag). pinlab's own sources use the constants of src/mm/vm_flags.h. */
#ifndef PINLAB_INTERNAL
#define FAULT_FLAG_WRITE 0x001U
#define FAULT_FLAG_MKWRITE 0x002U
#define FAULT_FLAG_ALLOW_RETRY 0x004U
#define FAULT_FLAG_RETRY_NOWAIT 0x008U
#define FAULT_FLAG_KILLABLE 0x010U
#define FAULT_FLAG_TRIED 0x020U
#define FAULT_FLAG_USER 0x040U
#define FAULT_FLAG_REMOTE 0x080U
#define FAULT_FLAG_INSTRUCTION 0x100U
#define FAULT_FLAG_INTERRUPTIBLE 0x200U
#define FAULT_FLAG_UNSHARE 0x400U
#endif /* PINLAB_INTERNAL */

/* GUP-fast only: the lockless walk and nothing else (FOLL_GET|FOLL_FAST_ONLY).
 * Never takes the mmap_lock, never faults, so it may run where sleeping is
 * not allowed (futex, perf). Returns how many pages, from start on, the walk
 * took (0..nr_pages; 0 when the first page is absent, special, needs a fault
 * or fork is copying page tables); -EINVAL on invalid arguments or flags
 * outside the fast set; -EOVERFLOW/-EFAULT for a range that overflows or
 * ends beyond TASK_SIZE. Release with put_page(). */
int get_user_pages_fast_only(unsigned long start, int nr_pages, unsigned int gup_flags, struct page **pages);

/* One page and its VMA (include/linux/mm.h): get_user_pages_remote() of one
 * page, then vma_lookup(). The caller holds mm's mmap_lock for read (it is
 * never dropped). Returns the page (a GET reference: put_page()) and sets
 * *vmap, or ERR_PTR(-errno): the GUP error (-EFAULT for no VMA or a VM_IO/
 * VM_PFNMAP one, ...), -EINVAL for FOLL_NOWAIT (WARN) or bad arguments.
 * Test the result with IS_ERR(), never against NULL. */
struct page *get_user_page_vma_remote(struct mm_struct *mm, unsigned long addr, int gup_flags,
                                      struct vm_area_struct **vmap);

/* fixup_user_fault(): run handle_mm_fault() for one address as a user access
 * would (futex, KVM), fixing up the PTE (COW on a write fault) without taking
 * a reference. The caller holds mm's mmap_lock for read, and holds it again
 * on return even when the fault dropped it; then *unlocked is set to true (the
 * caller's VMA pointers are stale). With `unlocked` non-NULL the fault may
 * drop the lock (ALLOW_RETRY|KILLABLE are added); with NULL it must not, and
 * FAULT_FLAG_ALLOW_RETRY is refused with -EINVAL. Returns 0, -EFAULT (no VMA,
 * the VMA forbids the access, SIGBUS/SIGSEGV, poisoned page), -ENOMEM, or
 * -EINTR when KILLABLE and a fatal signal is pending. */
int fixup_user_fault(struct mm_struct *mm, unsigned long address, unsigned int fault_flags, bool *unlocked);

/* get_dump_page(): the page a core dump writes for addr of pl_current()'s mm
 * (FOLL_FORCE|FOLL_DUMP|FOLL_GET), or NULL for a hole in the core file: an
 * anonymous page never touched (nothing is allocated), the zero page, VM_IO/
 * VM_PFNMAP mappings, no VMA. *locked == 1: the caller holds the mmap_lock
 * for read and keeps it; 0: it is taken and released here (*locked stays 0).
 * Release the page with put_page(). */
struct page *get_dump_page(unsigned long addr, int *locked);

/* memfd_pin_folios(): pin (FOLL_PIN, long-term) the page-cache folios of a
 * shmem ("memfd", "tmpfs") or hugetlb ("memfd-hugetlb", "hugetlbfs") file
 * that cover the bytes [start, end] (end inclusive), allocating missing ones.
 * Each folio is pinned once, in file order, at most max_folios of them;
 * *offset is start's offset inside the first folio. Folios in ZONE_MOVABLE or
 * CMA are migrated first, as FOLL_LONGTERM does. Returns the number of folios
 * pinned, or -EINVAL (not shmem/hugetlb, start < 0, start > end,
 * end >= i_size, max_folios == 0, NULL arguments), -ENOMEM (allocation or
 * migration failed). Release with unpin_folios()/unpin_folio(). */
long memfd_pin_folios(struct pl_file *memfd, long long start, long long end, struct folio **folios,
                      unsigned int max_folios, unsigned long *offset);

/* page_maybe_dma_pinned(): folio_maybe_dma_pinned() of the page's folio. */
int page_maybe_dma_pinned(struct page *page);
/* folio_is_longterm_pinnable(): may the folio stay pinned indefinitely where
 * it is (not in ZONE_MOVABLE, CMA or isolated pageblocks, not device-coherent
 * or fsdax memory; the zero page always may)? 1 or 0; 0 with pl_last_error()
 * for NULL or a folio of no live kernel. */
int folio_is_longterm_pinnable(struct folio *folio);
/* folio_add_pin()/folio_add_pins(): more pins on a folio the caller already
 * pinned (e.g. by memfd_pin_folios(), to unpin it page by page later); none
 * on the zero page. folio_add_pins() returns 0, or -ENOMEM/-EINVAL for a
 * folio with no reference or bad arguments. */
void folio_add_pin(struct folio *folio);
int folio_add_pins(struct folio *folio, unsigned int pins);

/* ---- historical eras (config key era=): put_user_page*() of v5.3-v5.5 and
 *      the vmas[] output array before v6.5 ---------------------------------- */
/* put_user_page*() (v5.2 - v5.5; seed 004): the release calls that
 * get_user_pages*() callers were converted to before GUP references became
 * trackable. In those eras they were put_page() under another name: they drop
 * FOLL_GET references (put_user_pages_dirty_lock() first marks each clean
 * page dirty with set_page_dirty_lock() when make_dirty; v5.3 had no
 * make_dirty argument and always dirtied). They exist only in a kernel whose
 * era is v5.3 or v5.5; in any other era they WARN (naming the era and the
 * replacement: put_page() for GET references, unpin_user_page*() for the
 * FOLL_PIN pins that replaced them in v5.6) and release nothing. */
void put_user_page(struct page *page);
void put_user_pages(struct page **pages, unsigned long npages);
void put_user_pages_dirty_lock(struct page **pages, unsigned long npages, bool make_dirty);

/* The vmas[] output array (seed 002; removed in v6.5 by "remove the vmas
 * parameter from GUP APIs"): the v6.4 signatures, as pl_v6_4_*() because C
 * has no overloading. vmas, when not NULL, receives the VMA of each page
 * taken. Those pointers are valid only while the calling thread keeps the
 * mmap_lock it held across the call: after its mmap_read_unlock()/
 * mmap_write_unlock() (or a GUP call that dropped the lock), pl_vma_start(),
 * pl_vma_end() and pl_vma_flags() refuse them — WARN "dangling VMA ...",
 * return 0, pl_last_error() says why — without touching them (they may have
 * been freed). As in v6.4, vmas cannot be combined with `locked` (WARN;
 * invalid arguments). Returns and other arguments as the current functions.
 * In a kernel whose era is v6.5 or later they WARN "vmas parameter removed in
 * v6.5" and fail as on invalid arguments: get_*() -EINVAL, pin_*() 0.
 *
 * Era-6.4 driver code compiles unchanged when it defines
 * PINLAB_KERNEL_API_V6_4 before including this header: get_user_pages,
 * pin_user_pages, get_user_pages_remote and pin_user_pages_remote then name
 * the pl_v6_4_*() functions (the current four-argument forms are no longer
 * reachable by those names in that translation unit). */
long pl_v6_4_get_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                            struct page **pages, struct vm_area_struct **vmas);
long pl_v6_4_pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                            struct page **pages, struct vm_area_struct **vmas);
long pl_v6_4_get_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages,
                                   unsigned int gup_flags, struct page **pages, struct vm_area_struct **vmas,
                                   int *locked);
long pl_v6_4_pin_user_pages_remote(struct mm_struct *mm, unsigned long start, unsigned long nr_pages,
                                   unsigned int gup_flags, struct page **pages, struct vm_area_struct **vmas,
                                   int *locked);
#ifdef PINLAB_KERNEL_API_V6_4
#define get_user_pages pl_v6_4_get_user_pages
#define pin_user_pages pl_v6_4_pin_user_pages
#define get_user_pages_remote pl_v6_4_get_user_pages_remote
#define pin_user_pages_remote pl_v6_4_pin_user_pages_remote
#endif

/* FOLL_SAME_FILE (proposed in v1-v3 of that series, Apr 2023, for io_uring;
 * dropped in v4, never merged): the slow path fails with -EFAULT at the first
 * VMA whose vm_file differs from the first VMA's (NULL counts as a file), so
 * the call returns the pages before it (partial success) or -EFAULT. The
 * fast path (get/pin_user_pages_fast) refuses it with -EINVAL. Only with the
 * configuration switch gup.foll_same_file=on; otherwise the slow path WARNs
 * and returns -EINVAL. Its value is pinlab's own (the patch used 1 << 12,
 * today FOLL_HONOR_NUMA_FAULT): bit 31, clear of the public and the internal
 * FOLL_* bits. */
#ifndef PINLAB_INTERNAL
#define FOLL_SAME_FILE 0x80000000U
#endif

/* Frame vectors (get_vaddr_frames() and friends; seed 000). */
#include "pinlab/frame_vector.h"
/* ==== end of GUP ============================================================= */

#ifdef __cplusplus
}
#endif

#endif /* PINLAB_KAPI_H */
