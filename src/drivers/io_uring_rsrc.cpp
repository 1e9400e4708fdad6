// pinlab — io_uring fixed buffers (io_uring/rsrc.c io_sqe_buffers_register(),
// io_sqe_buffer_register(), io_buffer_account_pin(), io_check_coalesce_buffer(),
// io_coalesce_buffer(), io_buffer_unmap(), io_import_fixed(); io_uring/memmap.c
// io_pin_pages(); the 2023 rsrc.c io_pin_pages() with its vmas[] walk; seed
// 002's FOLL_SAME_FILE form of it).
#include "base/handle_registry.h"
#include "drivers/io_uring_rsrc.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

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

}  // namespace pl

using namespace pl;

namespace {

constexpr unsigned kMaxEntries = 32768;           // IORING_MAX_ENTRIES
constexpr unsigned kMaxRegBuffers = 1U << 14;     // IORING_MAX_REG_BUFFERS
constexpr unsigned long kMaxBufLen = 1UL << 30;   // SZ_1G, io_buffer_validate()
constexpr unsigned long kPageSize = 4096;

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
    return task_account_locked(*ring.task, ring.task->user_locked_vm, static_cast<long>(acct));
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
    if (imu->acct_pages && ring.task)
        task_account_locked(*ring.task, ring.task->user_locked_vm, -static_cast<long>(imu->acct_pages));
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
