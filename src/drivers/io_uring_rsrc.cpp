// pinlab — io_uring fixed buffers (io_uring/rsrc.c io_sqe_buffers_register(),
// io_sqe_buffer_register(), io_buffer_account_pin(), io_check_coalesce_buffer(),
// io_coalesce_buffer(), io_buffer_unmap(), io_import_fixed(); io_uring/memmap.c
// io_pin_pages(); the 2023 rsrc.c io_pin_pages() with its vmas[] walk; seed
// 002's FOLL_SAME_FILE form of it) and the RLIMIT_MEMLOCK charge for the
// ring's own memory (io_uring_create(), io_create_region(); before v5.12
// ring_pages()).
#include "base/handle_registry.h"
#include "drivers/io_uring_rsrc.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/sync/spinlock.h"
#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/mm_struct.h"
#include "mm/physmem.h"
#include "mm/vma.h"
#include "pinlab/kapi.h"

namespace pl {

IoPinVariant io_pin_variant(const Config& cfg) {
    if (cfg.gup_foll_same_file) return IoPinVariant::SameFile;
    if (cfg.era <= Era::v6_4) return IoPinVariant::VmaCheck;
    return IoPinVariant::PinFast;
}

IoRingAcct io_ring_acct(const Config& cfg) {
    // v5.3 still had v5.1's separate rings ("io_uring: allocate the two rings
    // together" is v5.4); v4.8 had no io_uring and is served as v5.3.
    if (cfg.era <= Era::v5_3) return IoRingAcct::Whole;
    // "io_uring: place ring SQ/CQ arrays under memcg memory limits" (v5.12).
    if (cfg.era <= Era::v5_11) return IoRingAcct::PowerOfTwo;
    // "io_uring: use region api for SQ/CQ" (v6.14) made the rings regions,
    // and io_create_region() charges ctx->user.
    if (cfg.era < Era::current) return IoRingAcct::Memcg;
    return IoRingAcct::Regions;
}

}  // namespace pl

using namespace pl;

namespace {

constexpr unsigned kMaxEntries = 32768;           // IORING_MAX_ENTRIES
constexpr unsigned kMaxRegBuffers = 1U << 14;     // IORING_MAX_REG_BUFFERS
constexpr unsigned long kMaxBufLen = 1UL << 30;   // SZ_1G, io_buffer_validate()
constexpr unsigned long kPageSize = 4096;
constexpr unsigned long kCacheLine = 64;  // SMP_CACHE_BYTES (x86-64)
constexpr unsigned long kSqeSize = 64;    // sizeof(struct io_uring_sqe)
constexpr unsigned long kCqeSize = 16;    // sizeof(struct io_uring_cqe)

unsigned long pages_of(unsigned long bytes) { return (bytes + kPageSize - 1) / kPageSize; }

// 1 << get_order(bytes): the power-of-two allocation io_mem_alloc() made.
unsigned long order_pages(unsigned long bytes) {
    unsigned long n = 1;
    while (n * kPageSize < bytes) n <<= 1;
    return n;
}

// rings_size(): struct io_rings with its CQE array (the CQEs start on a
// cache line), cache-line aligned, then the u32 SQ index array. `header` is
// sizeof(struct io_rings): 320 while each head and tail had a cache line of
// its own, 64 now; with the CQ twice the SQ, as here, both give the same page
// counts for every power-of-two SQ.
unsigned long rings_size(unsigned long header, unsigned long sq, unsigned long cq) {
    unsigned long off = header + cq * kCqeSize;
    off = (off + kCacheLine - 1) / kCacheLine * kCacheLine;
    return off + sq * sizeof(uint32_t);
}

}  // namespace

IoRingPages pl::io_ring_pages(const Config& cfg, unsigned entries) {
    unsigned long sq = 1;  // roundup_pow_of_two(entries)
    while (sq < entries) sq <<= 1;
    const unsigned long cq = 2 * sq;
    IoRingPages p;
    switch (io_ring_acct(cfg)) {
        case IoRingAcct::Whole:
            // v5.1 ring_pages(): struct_size() of the SQ ring and of the CQ
            // ring (each header a 128-byte struct io_uring and four or three
            // u32, padded to 192) plus the SQE array, summed, then rounded.
            p.rings = pages_of((192 + sq * sizeof(uint32_t)) + sq * kSqeSize + (192 + cq * kCqeSize));
            break;
        case IoRingAcct::PowerOfTwo:
            p.rings = order_pages(rings_size(320, sq, cq));
            p.sqes = order_pages(sq * kSqeSize);
            break;
        case IoRingAcct::Memcg: break;
        case IoRingAcct::Regions:
            // io_allocate_scq_urings(): each region is PAGE_ALIGN(size).
            p.rings = pages_of(rings_size(64, sq, cq));
            p.sqes = pages_of(sq * kSqeSize);
            break;
    }
    return p;
}

namespace {

HandleRegistry<IoRing>& registry() {
    static HandleRegistry<IoRing> r;
    return r;
}
bool ring_ok(const pl_io_uring* r, const char* fn) {
    auto* ring = reinterpret_cast<const IoRing*>(r);
    if (registry().contains(ring)) return true;
    kapi_set_error(std::string(fn) + ": invalid argument 'ring'");
    return false;
}
IoRing* R(pl_io_uring* r) { return reinterpret_cast<IoRing*>(r); }

task_struct* TS(Task* t) { return reinterpret_cast<task_struct*>(t); }
Kernel& kernel_of(const IoRing& ring) { return *ring.kernel; }

// After its task exited the ring can only be closed: the pins are dropped
// but there is no user left to uncharge.
bool ring_task_ok(IoRing& ring, const char* fn) {
    if (ring.task && !task_alive(*ring.kernel, ring.task)) ring.task = nullptr;
    if (ring.task) return true;
    kapi_set_error(std::string(fn) + ": the ring's task has exited");
    return false;
}

unsigned long folio_page_idx(folio* f, page* p) { return page_to_pfn(p) - page_to_pfn(folio_page(f, 0)); }

// The 2023 rsrc.c check of every VMA the pin went through (v6.3 form after
// "io_uring/rsrc: disallow multi-source reg buffers"): one file (or none) for
// the whole buffer, and that file shmem or hugetlb.
int check_vmas_2023(vm_area_struct** vmas, unsigned long nr) {
    const Vma* first = reinterpret_cast<const Vma*>(vmas[0]);
    const File* file = first->file;
    for (unsigned long i = 0; i < nr; i++) {
        const Vma* v = reinterpret_cast<const Vma*>(vmas[i]);
        if (v->file != file) return -EINVAL;
        if (!file) continue;
        if (!v->is_shmem() && !v->is_hugetlb()) return -EOPNOTSUPP;
    }
    return 0;
}

// io_pin_pages(): 0 with all of [uaddr, uaddr + len) pinned into `pages`, or
// a negative errno with nothing pinned.
int io_pin_pages(IoRing& ring, unsigned long uaddr, unsigned long len, std::vector<page*>& pages) PL_NO_TSA {
    unsigned long end = 0;
    if (__builtin_add_overflow(uaddr, len, &end)) return -EOVERFLOW;
    if (__builtin_add_overflow(end, kPageSize - 1, &end)) return -EOVERFLOW;
    const unsigned long nr = end / kPageSize - uaddr / kPageSize;
    Kernel& k = kernel_of(ring);
    if (nr == 0) {
        k.warn("io_pin_pages", "no pages in the range");
        return -EINVAL;
    }
    if (nr > INT_MAX) {
        k.warn("io_pin_pages", "range of more than INT_MAX pages");
        return -EOVERFLOW;
    }
    pages.assign(nr, nullptr);
    PinOwnerScope owner("io_uring", "io_pin_pages");  // the pin tracker names the driver
    const IoPinVariant variant = io_pin_variant(k.cfg);
    int ret = 0;
    long pret = 0;
    if (variant == IoPinVariant::PinFast) {
        pret = ::pin_user_pages_fast(uaddr, static_cast<int>(nr), FOLL_WRITE | FOLL_LONGTERM, pages.data());
        if (pret != static_cast<long>(nr)) ret = pret < 0 ? static_cast<int>(pret) : -EFAULT;
    } else {
        mm_struct* mm = pl_task_mm(TS(ring.task));
        ::mmap_read_lock(mm);
        if (variant == IoPinVariant::VmaCheck) {
            std::vector<vm_area_struct*> vmas(nr, nullptr);
            pret = ::pl_v6_4_pin_user_pages(uaddr, nr, FOLL_WRITE | FOLL_LONGTERM, pages.data(), vmas.data());
            if (pret == static_cast<long>(nr)) ret = check_vmas_2023(vmas.data(), nr);
        } else {
            // Seed 002: GUP enforces one vm_file for the range, so the first
            // VMA speaks for all of them.
            pret = ::pin_user_pages(uaddr, nr, FOLL_WRITE | FOLL_LONGTERM | FOLL_SAME_FILE, pages.data());
            if (pret == static_cast<long>(nr)) {
                const Vma* vma = reinterpret_cast<const Vma*>(::vma_lookup(mm, uaddr));
                if (!vma) {
                    k.warn("io_pin_pages", "no VMA at the start of a pinned range");
                    ret = -EINVAL;
                } else if (vma->file && !vma->is_shmem() && !vma->is_hugetlb()) {
                    ret = -EOPNOTSUPP;
                }
            }
        }
        if (pret != static_cast<long>(nr)) ret = pret < 0 ? static_cast<int>(pret) : -EFAULT;
        ::mmap_read_unlock(mm);
    }
    if (ret) {
        if (pret > 0) ::unpin_user_pages(pages.data(), static_cast<unsigned long>(pret));
        pages.clear();
    }
    return ret;
}

struct CoalesceData {
    unsigned long nr_pages_head = 0;
    unsigned long nr_pages_mid = 0;
    unsigned long first_folio_page_idx = 0;
    unsigned long nr_folios = 0;
    unsigned folio_shift = 12;
};

unsigned folio_shift_of(folio* f) {
    unsigned s = 12;
    for (unsigned long n = folio_nr_pages(f); n > 1; n >>= 1) s++;
    return s;
}

// io_check_coalesce_buffer(): pages consecutive inside each folio, all
// folios of one size, only the first entered past its start and only the
// last left before its end.
bool io_check_coalesce_buffer(const std::vector<page*>& pages, CoalesceData* d) {
    folio* f = page_folio(pages[0]);
    unsigned long count = 1, nr_folios = 1;
    d->nr_pages_mid = folio_nr_pages(f);
    d->folio_shift = folio_shift_of(f);
    d->first_folio_page_idx = folio_page_idx(f, pages[0]);
    for (size_t i = 1; i < pages.size(); i++) {
        if (page_folio(pages[i]) == f && page_to_pfn(pages[i]) == page_to_pfn(pages[i - 1]) + 1) {
            count++;
            continue;
        }
        if (nr_folios == 1) {
            if (folio_page_idx(f, pages[i - 1]) != d->nr_pages_mid - 1) return false;
            d->nr_pages_head = count;
        } else if (count != d->nr_pages_mid) {
            return false;
        }
        f = page_folio(pages[i]);
        if (folio_shift_of(f) != d->folio_shift || folio_page_idx(f, pages[i]) != 0) return false;
        count = 1;
        nr_folios++;
    }
    if (nr_folios == 1) d->nr_pages_head = count;
    d->nr_folios = nr_folios;
    return true;
}

// io_coalesce_buffer(): one entry per folio (its head page), all but one of
// the folio's pins dropped with unpin_user_folio().
void io_coalesce_buffer(std::vector<page*>& pages, const CoalesceData& d) {
    PinOwnerScope owner("io_uring", "io_coalesce_buffer");
    std::vector<page*> out;
    out.reserve(d.nr_folios);
    size_t j = 0;
    unsigned long left = pages.size();
    for (unsigned long i = 0; i < d.nr_folios; i++) {
        folio* f = page_folio(pages[j]);
        unsigned long nr = std::min(i ? d.nr_pages_mid : d.nr_pages_head, left);
        if (nr > 1) ::unpin_user_folio(f, nr - 1);
        out.push_back(folio_page(f, 0));
        j += nr;
        left -= nr;
    }
    pages.swap(out);
}

// __io_account_mem(): `nr` more pages of user->locked_vm, up to
// RLIMIT_MEMLOCK. No capability check here: CAP_IPC_LOCK counted once, when
// io_uring_create() left ctx->user NULL (charge_user false).
int io_account_user(Task& t, unsigned long nr) {
    if (!nr) return 0;
    const unsigned long limit = t.rlimit_memlock.load() / kPageSize;
    unsigned long cur = t.user_locked_vm.load();
    for (;;) {
        const unsigned long want = cur + nr;
        if (want > limit) return -ENOMEM;
        if (t.user_locked_vm.compare_exchange(cur, want)) return 0;
    }
}

// __io_unaccount_mem().
void io_unaccount_user(Task& t, unsigned long nr) { t.user_locked_vm.fetch_sub(nr); }

// io_uring_create()'s charge for the ring's own memory, before anything is
// allocated: v5.1-v5.11 __io_account_mem() of ring_pages() (from v5.9 the
// pages also go to mm->locked_vm, ACCT_LOCKED, unlimited); from v6.14
// io_create_region() of the rings, then of the SQE array, the first
// returned by io_rings_free() if the second does not fit.
int io_account_ring(IoRing& ring) {
    const Config& cfg = kernel_of(ring).cfg;
    Task& t = *ring.task;
    const IoRingPages want = io_ring_pages(cfg, ring.entries);
    if (ring.charge_user) {
        if (int r = io_account_user(t, want.rings)) return r;
        if (int r = io_account_user(t, want.sqes)) {
            io_unaccount_user(t, want.rings);
            return r;
        }
        ring.ring_pages = want;
    }
    if (cfg.era == Era::v5_10 || cfg.era == Era::v5_11) {
        ring.ring_mm_locked = want.rings + want.sqes;
        t.locked_vm.fetch_add(ring.ring_mm_locked);
    }
    return 0;
}

// io_ring_ctx_free(): io_rings_free() (io_free_region() of each region)
// or, before v5.12, io_unaccount_mem() of ring_pages(). Nothing once the
// task is gone: the model keeps the user's counter on the task.
void io_unaccount_ring(IoRing& ring) {
    if (ring.task) {
        io_unaccount_user(*ring.task, ring.ring_pages.rings + ring.ring_pages.sqes);
        ring.task->locked_vm.fetch_sub(ring.ring_mm_locked);
    }
    ring.ring_pages = {};
    ring.ring_mm_locked = 0;
}

// headpage_already_acct(): a large folio is charged once per ring.
bool folio_already_acct(const IoRing& ring, const std::vector<page*>& pages, size_t upto, folio* f) {
    for (size_t i = 0; i < upto; i++)
        if (PageCompound(pages[i]) && page_folio(pages[i]) == f) return true;
    for (const IoMappedUbuf* imu : ring.bufs) {
        if (!imu) continue;
        for (const IoBvec& bv : imu->bvec)
            if (PageCompound(bv.pg) && page_folio(bv.pg) == f) return true;
    }
    return false;
}

// io_buffer_account_pin() + io_account_mem(): pages of small folios one by
// one, large folios whole and once.
int io_buffer_account_pin(IoRing& ring, const std::vector<page*>& pages, IoMappedUbuf* imu) {
    unsigned long acct = 0;
    folio* last = nullptr;
    for (size_t i = 0; i < pages.size(); i++) {
        if (!PageCompound(pages[i])) {
            acct++;
            continue;
        }
        folio* f = page_folio(pages[i]);
        if (f == last) continue;
        last = f;
        if (folio_already_acct(ring, pages, i, f)) continue;
        acct += folio_nr_pages(f);
    }
    imu->acct_pages = acct;
    if (!acct) return 0;
    if (ring.charge_user)
        if (int r = io_account_user(*ring.task, acct)) return r;
    // io_account_mem() also adds the pages to ctx->mm_account->pinned_vm
    // (VmPin), with no limit of its own ("io_uring: report pinned memory
    // usage", v5.9; whatever the creator's capabilities).
    if (kernel_of(ring).cfg.era >= Era::v5_10) ring.task->pinned_vm.fetch_add(acct);
    return 0;
}

// io_buffer_unmap(): every pin goes, dirty where a read stored data (see
// FIDELITY: upstream does not dirty), and the charge is returned.
void io_buffer_unmap(IoRing& ring, IoMappedUbuf* imu) {
    if (!imu) return;
    PinOwnerScope owner("io_uring", "io_buffer_unmap");
    for (IoBvec& bv : imu->bvec) {
        if (imu->coalesced) {
            if (bv.written) ::set_page_dirty_lock(bv.pg);
            ::unpin_user_folio(page_folio(bv.pg), 1);
        } else {
            ::unpin_user_pages_dirty_lock(&bv.pg, 1, bv.written);
        }
    }
    if (imu->acct_pages && ring.task) {
        // io_unaccount_mem(): user->locked_vm and mm_account->pinned_vm.
        if (ring.charge_user) io_unaccount_user(*ring.task, imu->acct_pages);
        if (kernel_of(ring).cfg.era >= Era::v5_10) ring.task->pinned_vm.fetch_sub(imu->acct_pages);
    }
    delete imu;
}

// io_sqe_buffer_register(): one iovec.
int io_sqe_buffer_register(IoRing& ring, const iovec& iov, IoMappedUbuf** out) {
    *out = nullptr;
    const unsigned long ubuf = reinterpret_cast<unsigned long>(iov.iov_base);
    if (!ubuf) return 0;  // sparse slot
    std::vector<page*> pages;
    int ret = io_pin_pages(ring, ubuf, iov.iov_len, pages);
    if (ret) return ret;
    CoalesceData d;
    bool coalesced = false;
    // Huge-page coalescing came with v6.12 (only era "current" here).
    if (kernel_of(ring).cfg.era == Era::current && pages.size() > 1 && io_check_coalesce_buffer(pages, &d) &&
        d.nr_pages_mid != 1) {
        io_coalesce_buffer(pages, d);
        coalesced = true;
    }
    auto* imu = new IoMappedUbuf;
    ret = io_buffer_account_pin(ring, pages, imu);
    if (ret) {
        PinOwnerScope owner("io_uring", "io_sqe_buffer_register");
        if (coalesced) {
            for (page* p : pages) ::unpin_user_folio(page_folio(p), 1);
        } else {
            ::unpin_user_pages(pages.data(), pages.size());
        }
        delete imu;
        return ret;
    }
    imu->ubuf = ubuf;
    imu->len = iov.iov_len;
    imu->coalesced = coalesced;
    imu->folio_shift = coalesced ? d.folio_shift : 12;
    unsigned long off = ubuf & (kPageSize - 1);
    if (coalesced) off += d.first_folio_page_idx * kPageSize;
    unsigned long size = iov.iov_len;
    for (page* p : pages) {
        const unsigned long vec_len = std::min(size, (1UL << imu->folio_shift) - off);
        imu->bvec.push_back(IoBvec{p, off, vec_len, false});
        off = 0;
        size -= vec_len;
    }
    *out = imu;
    return 0;
}

// io_buffer_validate().
int io_buffer_validate(const iovec& iov) {
    const unsigned long base = reinterpret_cast<unsigned long>(iov.iov_base);
    if (!base) return iov.iov_len ? -EFAULT : 0;
    if (!iov.iov_len) return -EFAULT;
    if (iov.iov_len > kMaxBufLen) return -EFAULT;
    unsigned long end = 0;
    if (__builtin_add_overflow(base, iov.iov_len, &end)) return -EOVERFLOW;
    return 0;
}

void unregister_locked(IoRing& ring) {
    for (IoMappedUbuf* imu : ring.bufs) io_buffer_unmap(ring, imu);
    ring.bufs.clear();
    ring.registered = false;
}

// io_import_fixed(): the frame and in-page offset of each byte of
// [addr, addr + len) of buffer `idx`, handed to `fn` in page-sized pieces.
template <typename Fn>
long for_each_piece(IoRing& ring, unsigned idx, unsigned long addr, unsigned long len, Fn&& fn) {
    if (idx >= ring.bufs.size() || !ring.bufs[idx]) return -EFAULT;
    IoMappedUbuf* imu = ring.bufs[idx];
    unsigned long end = 0;
    if (__builtin_add_overflow(addr, len, &end)) return -EFAULT;
    if (addr < imu->ubuf || end > imu->ubuf + imu->len) return -EFAULT;
    PhysMem& mem = *kernel_of(ring).mem;
    const unsigned long seg_mask = (1UL << imu->folio_shift) - 1;
    unsigned long done = 0;
    while (done < len) {
        const unsigned long off = addr + done - imu->ubuf + imu->bvec[0].offset;
        IoBvec& bv = imu->bvec[off >> imu->folio_shift];
        const unsigned long in_seg = off & seg_mask;
        Page* p = mem.pfn_to_page(mem.page_to_pfn(reinterpret_cast<Page*>(bv.pg)) + in_seg / kPageSize);
        const unsigned long in_page = in_seg % kPageSize;
        const unsigned long n = std::min(len - done, kPageSize - in_page);
        int r = fn(bv, reinterpret_cast<page*>(p), static_cast<unsigned>(in_page), static_cast<unsigned>(n), done);
        if (r) return r;
        done += n;
    }
    return static_cast<long>(done);
}

// io_import_fixed()'s checks alone: 0 or -EFAULT.
long io_import_check(IoRing& ring, unsigned idx, unsigned long addr, unsigned long len) {
    long r = for_each_piece(ring, idx, addr, len, [](IoBvec&, page*, unsigned, unsigned, unsigned long) { return 0; });
    return r < 0 ? r : 0;
}

// exit_files() closing the ring's fd: io_ring_ctx_free() unregisters the
// buffers, dropping their pins and the user's locked_vm charge. The handle
// stays valid until pl_io_uring_exit(); other calls now give -ESRCH.
void ring_close_on_exit(void* obj) {
    auto* ring = static_cast<IoRing*>(obj);
    sync::WriteGuard g(ring->uring_lock);
    AsTask as(ring->task);
    unregister_locked(*ring);
    io_unaccount_ring(*ring);
    ring->task = nullptr;
}

}  // namespace

extern "C" {

pl_io_uring* pl_io_uring_setup(task_struct* t, unsigned entries) {
    if (!t || !reinterpret_cast<Task*>(t)->mm) {
        kapi_set_error("pl_io_uring_setup: invalid argument 't'");
        return nullptr;
    }
    if (entries == 0 || entries > kMaxEntries) {
        kapi_set_error("pl_io_uring_setup: -EINVAL: entries must be 1..32768");
        return nullptr;
    }
    auto* ring = new IoRing;
    ring->task = reinterpret_cast<Task*>(t);
    ring->kernel = &ring->task->kernel;
    ring->entries = entries;
    // capable(CAP_IPC_LOCK) at creation, once: with it ctx->user stays NULL.
    ring->charge_user = !ring->task->cap_ipc_lock.load();
    if (int r = io_account_ring(*ring)) {
        delete ring;
        kapi_set_error("pl_io_uring_setup: -" + std::string(errno_name(-r)) +
                       ": the ring's memory is over RLIMIT_MEMLOCK (io_uring_create())");
        return nullptr;
    }
    registry().add(ring);
    ring->task->files_add(ring, ring_close_on_exit);
    return reinterpret_cast<pl_io_uring*>(ring);
}

void pl_io_uring_exit(pl_io_uring* r) {
    if (!ring_ok(r, "pl_io_uring_exit")) return;
    IoRing* ring = R(r);
    registry().remove(ring);
    {
        sync::WriteGuard g(ring->uring_lock);
        if (ring->task && !task_alive(*ring->kernel, ring->task)) ring->task = nullptr;
        if (ring->task) ring->task->files_remove(ring);
        AsTask as(ring->task);
        unregister_locked(*ring);
        io_unaccount_ring(*ring);
    }
    delete ring;
}

int pl_io_uring_register_buffers(pl_io_uring* r, const iovec* iov, unsigned nr) {
    if (!ring_ok(r, "pl_io_uring_register_buffers")) return -EINVAL;
    IoRing& ring = *R(r);
    sync::WriteGuard g(ring.uring_lock);
    if (!ring_task_ok(ring, "pl_io_uring_register_buffers")) return -ESRCH;
    AsTask as(ring.task);
    if (ring.registered) return -EBUSY;
    if (!nr || nr > kMaxRegBuffers) return -EINVAL;
    if (!iov) return -EFAULT;  // copy_from_user() of the iovec array
    ring.registered = true;
    for (unsigned i = 0; i < nr; i++) {
        int ret = io_buffer_validate(iov[i]);
        IoMappedUbuf* imu = nullptr;
        if (!ret) ret = io_sqe_buffer_register(ring, iov[i], &imu);
        if (ret) {
            unregister_locked(ring);  // io_sqe_buffers_unregister() of what was done
            return ret;
        }
        ring.bufs.push_back(imu);
    }
    return 0;
}

int pl_io_uring_unregister_buffers(pl_io_uring* r) {
    if (!ring_ok(r, "pl_io_uring_unregister_buffers")) return -EINVAL;
    IoRing& ring = *R(r);
    sync::WriteGuard g(ring.uring_lock);
    if (ring.task && !task_alive(*ring.kernel, ring.task)) ring.task = nullptr;
    AsTask as(ring.task);
    if (!ring.registered) return -ENXIO;
    unregister_locked(ring);
    return 0;
}

}  // extern "C"

namespace {

// The shared prologue of IORING_OP_{READ,WRITE}_FIXED: a live ring, a file,
// and io_import_fixed()'s range check at prep time (before the file is
// touched); `io` then runs under the uring_lock with a bounce buffer of len.
template <typename Io>
long fixed_io(pl_io_uring* r, const char* fn, pl_file* f, unsigned buf_index, unsigned long addr,
              unsigned long len, Io&& io) {
    if (!ring_ok(r, fn)) return -EINVAL;
    if (!f) return -EBADF;
    IoRing& ring = *R(r);
    sync::WriteGuard g(ring.uring_lock);
    long v = io_import_check(ring, buf_index, addr, len);
    if (v < 0) return v;
    std::vector<unsigned char> data(len);
    return io(ring, data.data());
}

}  // namespace

extern "C" {

long pl_io_uring_write_fixed(pl_io_uring* r, pl_file* f, unsigned buf_index, unsigned long addr, unsigned long len,
                             unsigned long off) {
    return fixed_io(r, "pl_io_uring_write_fixed", f, buf_index, addr, len, [&](IoRing& ring, unsigned char* data) {
        long n = for_each_piece(ring, buf_index, addr, len,
                                [&](IoBvec&, page* p, unsigned in_page, unsigned cnt, unsigned long at) {
                                    return pl_page_read(p, in_page, data + at, cnt);
                                });
        if (n < 0) return n;
        return pl_pwrite(f, data, len, off);
    });
}

long pl_io_uring_read_fixed(pl_io_uring* r, pl_file* f, unsigned buf_index, unsigned long addr, unsigned long len,
                            unsigned long off) {
    return fixed_io(r, "pl_io_uring_read_fixed", f, buf_index, addr, len, [&](IoRing& ring, unsigned char* data) {
        long got = pl_pread(f, data, len, off);
        if (got <= 0) return got;
        long n = for_each_piece(ring, buf_index, addr, static_cast<unsigned long>(got),
                                [&](IoBvec& bv, page* p, unsigned in_page, unsigned cnt, unsigned long at) {
                                    bv.written = true;
                                    return pl_page_write(p, in_page, data + at, cnt);
                                });
        return n < 0 ? n : got;
    });
}

int pl_io_uring_buffer_segments(pl_io_uring* r, unsigned buf_index, unsigned long* seg_size) {
    if (!ring_ok(r, "pl_io_uring_buffer_segments")) return -EINVAL;
    IoRing& ring = *R(r);
    sync::WriteGuard g(ring.uring_lock);
    if (buf_index >= ring.bufs.size() || !ring.bufs[buf_index]) return -EINVAL;
    if (seg_size) *seg_size = 1UL << ring.bufs[buf_index]->folio_shift;
    return static_cast<int>(ring.bufs[buf_index]->bvec.size());
}

int pl_task_set_rlimit_memlock(task_struct* t, unsigned long bytes) {
    if (!t) return -EINVAL;
    reinterpret_cast<Task*>(t)->rlimit_memlock.store(bytes);
    return 0;
}

int pl_task_set_cap_ipc_lock(task_struct* t, int on) {
    if (!t) return -EINVAL;
    reinterpret_cast<Task*>(t)->cap_ipc_lock.store(on != 0);
    return 0;
}

unsigned long pl_task_locked_vm(task_struct* t, int which) {
    if (!t) return 0;
    Task* task = reinterpret_cast<Task*>(t);
    return which ? task->user_locked_vm.load() : task->locked_vm.load();
}

}  // extern "C"
