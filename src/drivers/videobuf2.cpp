// pinlab — videobuf2 USERPTR buffers: vb2_core_reqbufs(), vb2_core_qbuf() with
// __prepare_userptr(), vb2_core_dqbuf(), vb2_queue_release();
// vb2_create_framevec()/vb2_destroy_framevec() (videobuf2-memops.c); the
// get_userptr/put_userptr of vb2_vmalloc_memops, vb2_dma_contig_memops and
// vb2_dma_sg_memops. The "device" completes queued buffers by DMA through
// what the frame vector holds: pinned pages, or raw PFNs that hold nothing
// (seed 000: the frame may have been freed and reused since QBUF).
#include "base/handle_registry.h"
#include "drivers/videobuf2.h"

#include <algorithm>
#include <cerrno>
#include <string>

#include "debug/pin_tracker.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/physmem.h"
#include "pinlab/frame_vector.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

constexpr unsigned long kPageSize = 4096;
constexpr unsigned kMaxFrame = 32;  // VB2_MAX_FRAME (VIDEO_MAX_FRAME)
// dma_get_cache_alignment() on the arm64 SoCs whose capture drivers use
// dma-contig (ARCH_DMA_MINALIGN); x86 would give 1.
constexpr unsigned long kDmaAlign = 128;

HandleRegistry<Vb2Queue>& registry() {
    static HandleRegistry<Vb2Queue> r;
    return r;
}
bool queue_ok(const pl_vb2_queue* q, const char* fn) {
    if (registry().contains(reinterpret_cast<const Vb2Queue*>(q))) return true;
    kapi_set_error(std::string(fn) + ": invalid argument 'q'");
    return false;
}
Vb2Queue* Q(pl_vb2_queue* q) { return reinterpret_cast<Vb2Queue*>(q); }

bool write_access(const Vb2Queue& q) { return q.dir == DmaDir::FromDevice; }

// vb2_create_framevec(): every frame of [start, start + length) or an error;
// a partial result is dropped ("We accept only complete set of PFNs").
int vb2_create_framevec(unsigned long start, unsigned long length, bool write, frame_vector** out) {
    const unsigned long first = start / kPageSize;
    const unsigned long last = (start + length - 1) / kPageSize;
    const unsigned long nr = last - first + 1;
    frame_vector* vec = frame_vector_create(static_cast<unsigned>(nr));
    if (!vec) return -ENOMEM;
    PinOwnerScope owner("videobuf2", "vb2_create_framevec");
    const int ret = get_vaddr_frames(start & ~(kPageSize - 1), static_cast<unsigned>(nr), write, vec);
    if (ret < 0) {
        frame_vector_destroy(vec);
        return ret;
    }
    if (static_cast<unsigned long>(ret) != nr) {
        put_vaddr_frames(vec);
        frame_vector_destroy(vec);
        return -EFAULT;
    }
    *out = vec;
    return 0;
}

// vb2_destroy_framevec(): put_vaddr_frames() drops what get_vaddr_frames()
// took in that era (put_page() of GET references before v5.8,
// unpin_user_pages() after; nothing for PFNs), then the vector goes.
void vb2_destroy_framevec(frame_vector* vec) {
    PinOwnerScope owner("videobuf2", "vb2_destroy_framevec");
    put_vaddr_frames(vec);
    frame_vector_destroy(vec);
}

// The physical frame entry i names now: a page's own frame, or the raw PFN.
pfn_t frame_pfn(const PhysMem& mem, const frame_vector* vec, unsigned i) {
    if (vec->is_pfns) return static_cast<pfn_t>(reinterpret_cast<uintptr_t>(vec->ptrs[i]));
    return mem.page_to_pfn(static_cast<const Page*>(vec->ptrs[i]));
}

// Frames [0, n) consecutive? (the allocators' "physically contiguous" loops)
bool pfns_contiguous(const PhysMem& mem, const frame_vector* vec) {
    for (unsigned i = 1; i < vec->nr_frames; i++)
        if (frame_pfn(mem, vec, i - 1) + 1 != frame_pfn(mem, vec, i)) return false;
    return true;
}

// vb2_dc_get_contiguous_size() of the table sg_alloc_table_from_pages() +
// dma_map_sgtable() make: behind an IOMMU the whole buffer is one IOVA
// range; without one, only the physically contiguous run from the start.
unsigned long dc_contiguous_size(const Vb2Queue& q, const PhysMem& mem, const Vb2UserBuf& b) {
    if (q.iommu == DevIommu::Yes) return b.size;
    unsigned run = 1;
    while (run < b.vec->nr_frames && frame_pfn(mem, b.vec, run - 1) + 1 == frame_pfn(mem, b.vec, run)) run++;
    return std::min(b.size, run * kPageSize - b.offset);
}

// get_userptr of each allocator: a Vb2UserBuf or a negative errno (with
// pl_last_error() saying which check refused).
int get_userptr(Vb2Queue& q, unsigned long vaddr, unsigned long size, Vb2UserBuf** out) {
    PhysMem& mem = *q.kernel->mem;
    auto* b = new Vb2UserBuf;
    b->offset = vaddr & (kPageSize - 1);
    b->size = size;
    auto fail = [&](int err, const std::string& why) {
        if (b->vec) vb2_destroy_framevec(b->vec);
        delete b;
        if (!why.empty()) kapi_set_error("pl_vb2_qbuf: " + why);
        return err;
    };
    switch (q.memops) {
        case Vb2Memops::Vmalloc: {
            // vb2_vmalloc_get_userptr(): pages are vm_map_ram()ed; PFNs
            // without struct pages must be contiguous and are ioremap()ed.
            int ret = vb2_create_framevec(vaddr, size, write_access(q), &b->vec);
            if (ret) return fail(ret, "vb2_create_framevec() failed");
            if (frame_vector_to_pages(b->vec) < 0) {
                if (!pfns_contiguous(mem, b->vec)) return fail(-ENOMEM, "PFNs not contiguous: cannot ioremap()");
                b->via_pages = false;
            } else {
                b->via_pages = true;
            }
            break;
        }
        case Vb2Memops::DmaContig: {
            // vb2_dc_get_userptr().
            if ((vaddr | size) % kDmaAlign) return fail(-EINVAL, "user data must be aligned to 128 bytes");
            int ret = vb2_create_framevec(vaddr, size, write_access(q), &b->vec);
            if (ret) return fail(ret, "vb2_create_framevec() failed");
            ret = frame_vector_to_pages(b->vec);
            if (ret < 0) {
                // No struct pages: contiguous PFNs go through dma_map_resource().
                if (!pfns_contiguous(mem, b->vec)) return fail(ret, "PFNs not contiguous: cannot dma_map_resource()");
                b->via_pages = false;
                break;
            }
            b->via_pages = true;
            const unsigned long contig = dc_contiguous_size(q, mem, *b);
            if (contig < size)
                return fail(-EFAULT, "contiguous mapping is too small " + std::to_string(contig) + "/" +
                                         std::to_string(size));
            break;
        }
        case Vb2Memops::DmaSg: {
            // vb2_dma_sg_get_userptr(): needs struct pages; every failure
            // comes back as -ENOMEM.
            int ret = vb2_create_framevec(vaddr, size, write_access(q), &b->vec);
            if (ret) return fail(-ENOMEM, "vb2_create_framevec() failed (" + std::to_string(ret) + ")");
            page** pages = frame_vector_pages(b->vec);
            if (IS_ERR(pages)) return fail(-ENOMEM, "frame_vector_pages(): PFNs without struct pages");
            b->via_pages = true;
            break;
        }
    }
    *out = b;
    return 0;
}

// put_userptr of each allocator: unmap, dirty what a capture device may have
// written (set_page_dirty_lock() on the vector's pages), then
// vb2_destroy_framevec(). Until v4.16 dma-contig dirtied output buffers too.
void put_userptr(Vb2Queue& q, Vb2UserBuf* b) {
    bool dirty = b->via_pages && q.dir == DmaDir::FromDevice;
    if (b->via_pages && q.memops == Vb2Memops::DmaContig && q.kernel->cfg.era < Era::v5_3) dirty = true;
    if (dirty) {
        page** pages = frame_vector_pages(b->vec);
        if (!IS_ERR(pages))
            for (unsigned i = 0; i < b->vec->nr_frames; i++) ::set_page_dirty_lock(pages[i]);
    }
    vb2_destroy_framevec(b->vec);
    delete b;
}

void buf_userptr_put(Vb2Queue& q, Vb2Buffer& vb) {
    if (vb.mem) put_userptr(q, vb.mem);
    vb.mem = nullptr;
    vb.userptr = 0;
    vb.length = 0;
}

// __vb2_queue_free(): every buffer's USERPTR memory is released.
void queue_free_buffers(Vb2Queue& q) {
    AsTask as(q.task);
    for (Vb2Buffer& vb : q.bufs) buf_userptr_put(q, vb);
    q.bufs.clear();
    q.queued.clear();
    q.done.clear();
}

// exit_files() closing the video device: vb2_queue_release().
void queue_close_on_exit(void* obj) {
    auto* q = static_cast<Vb2Queue*>(obj);
    sync::WriteGuard g(q->lock);
    queue_free_buffers(*q);
    q->task = nullptr;
}

bool queue_task_ok(Vb2Queue& q, const char* fn) {
    if (q.task && !task_alive(*q.kernel, q.task)) q.task = nullptr;
    if (q.task) return true;
    kapi_set_error(std::string(fn) + ": the queue's task has exited");
    return false;
}

}  // namespace

extern "C" {

pl_vb2_queue* pl_vb2_queue_new(task_struct* t, int memops, int type, unsigned long sizeimage, unsigned flags) {
    auto fail = [](const char* arg) -> pl_vb2_queue* {
        kapi_set_error(std::string("pl_vb2_queue_new: invalid argument '") + arg + "'");
        return nullptr;
    };
    if (!t || !reinterpret_cast<Task*>(t)->mm) return fail("t");
    if (memops < PL_VB2_VMALLOC || memops > PL_VB2_DMA_SG) return fail("memops");
    if (type != PL_VB2_CAPTURE && type != PL_VB2_OUTPUT) return fail("type");
    if (!sizeimage || sizeimage > (1UL << 30)) return fail("sizeimage");
    if (flags & ~PL_VB2_DEV_IOMMU) return fail("flags");
    auto* q = new Vb2Queue;
    q->task = reinterpret_cast<Task*>(t);
    q->kernel = &q->task->kernel;
    q->memops = static_cast<Vb2Memops>(memops);
    q->dir = type == PL_VB2_CAPTURE ? DmaDir::FromDevice : DmaDir::ToDevice;
    q->iommu = (flags & PL_VB2_DEV_IOMMU) ? DevIommu::Yes : DevIommu::No;
    q->sizeimage = sizeimage;
    registry().add(q);
    q->task->files_add(q, queue_close_on_exit);
    kapi_clear_error();
    return reinterpret_cast<pl_vb2_queue*>(q);
}

void pl_vb2_queue_free(pl_vb2_queue* pq) {
    if (!queue_ok(pq, "pl_vb2_queue_free")) return;
    Vb2Queue* q = Q(pq);
    registry().remove(q);
    {
        sync::WriteGuard g(q->lock);
        if (q->task && !task_alive(*q->kernel, q->task)) q->task = nullptr;
        if (q->task) q->task->files_remove(q);
        queue_free_buffers(*q);
    }
    delete q;
}

int pl_vb2_reqbufs(pl_vb2_queue* pq, unsigned count) {
    if (!queue_ok(pq, "pl_vb2_reqbufs")) return -EINVAL;
    Vb2Queue& q = *Q(pq);
    sync::WriteGuard g(q.lock);
    if (!queue_task_ok(q, "pl_vb2_reqbufs")) return -ESRCH;
    // vb2_core_reqbufs(): not while buffers are with the device or waiting
    // to be dequeued (the model's "streaming").
    if (!q.queued.empty() || !q.done.empty()) {
        kapi_set_error("pl_vb2_reqbufs: streaming active");
        return -EBUSY;
    }
    queue_free_buffers(q);
    count = std::min(count, kMaxFrame);
    q.bufs.resize(count);
    for (unsigned i = 0; i < count; i++) q.bufs[i].index = i;
    return static_cast<int>(count);
}

int pl_vb2_qbuf(pl_vb2_queue* pq, unsigned index, unsigned long userptr, unsigned long length) {
    if (!queue_ok(pq, "pl_vb2_qbuf")) return -EINVAL;
    Vb2Queue& q = *Q(pq);
    sync::WriteGuard g(q.lock);
    if (!queue_task_ok(q, "pl_vb2_qbuf")) return -ESRCH;
    if (index >= q.bufs.size()) {
        kapi_set_error("pl_vb2_qbuf: buffer index out of range");
        return -EINVAL;
    }
    Vb2Buffer& vb = q.bufs[index];
    if (vb.state != Vb2State::Dequeued) {
        kapi_set_error("pl_vb2_qbuf: buffer already in use");
        return -EINVAL;
    }
    // __prepare_userptr().
    if (length < q.sizeimage) {
        kapi_set_error("pl_vb2_qbuf: provided buffer size " + std::to_string(length) +
                       " is less than setup size " + std::to_string(q.sizeimage));
        return -EINVAL;
    }
    if (userptr + length < userptr) return -EFAULT;  // what GUP's range check would say
    // The same pointer and length as last time: the memory stays acquired
    // (vb2 keeps USERPTR mappings across DQBUF, hence FOLL_LONGTERM).
    if (!(vb.mem && vb.userptr == userptr && vb.length == length)) {
        AsTask as(q.task);
        buf_userptr_put(q, vb);
        Vb2UserBuf* mem = nullptr;
        int ret = get_userptr(q, userptr, length, &mem);
        if (ret) return ret;  // "failed acquiring userspace memory for plane 0"
        vb.mem = mem;
        vb.userptr = userptr;
        vb.length = length;
    }
    vb.bytesused = 0;
    vb.state = Vb2State::Queued;
    q.queued.push_back(index);
    return 0;
}

long pl_vb2_device_dma(pl_vb2_queue* pq, void* data, unsigned long len) {
    if (!queue_ok(pq, "pl_vb2_device_dma")) return -EINVAL;
    if (!data && len) return -EINVAL;
    Vb2Queue& q = *Q(pq);
    sync::WriteGuard g(q.lock);
    if (q.queued.empty()) return -EAGAIN;
    const unsigned index = q.queued.front();
    Vb2Buffer& vb = q.bufs[index];
    PhysMem& mem = *q.kernel->mem;
    const Vb2UserBuf& b = *vb.mem;
    const unsigned long n = std::min(len, b.size);
    auto* bytes = static_cast<unsigned char*>(data);
    // The device addresses the frames the vector names now: a pinned page
    // is still the process's; a raw PFN is whatever owns that frame today.
    for (unsigned long done = 0; done < n;) {
        const unsigned long at = b.offset + done;
        const unsigned i = static_cast<unsigned>(at / kPageSize);
        const unsigned in_page = static_cast<unsigned>(at % kPageSize);
        const unsigned cnt = static_cast<unsigned>(std::min(n - done, kPageSize - in_page));
        const pfn_t pfn = frame_pfn(mem, b.vec, i);
        Status s = q.dir == DmaDir::FromDevice ? mem.write_frame(pfn, in_page, bytes + done, cnt)
                                                : mem.read_frame(pfn, in_page, bytes + done, cnt);
        if (!s) return -EIO;  // a bus error: nothing answers at that address
        done += cnt;
    }
    q.queued.pop_front();
    vb.bytesused = n;
    vb.state = Vb2State::Done;
    q.done.push_back(index);
    return static_cast<long>(n);
}

int pl_vb2_dqbuf(pl_vb2_queue* pq, unsigned long* bytesused) {
    if (!queue_ok(pq, "pl_vb2_dqbuf")) return -EINVAL;
    Vb2Queue& q = *Q(pq);
    sync::WriteGuard g(q.lock);
    if (q.done.empty()) return -EAGAIN;  // O_NONBLOCK: nothing finished yet
    const unsigned index = q.done.front();
    q.done.pop_front();
    Vb2Buffer& vb = q.bufs[index];
    vb.state = Vb2State::Dequeued;
    if (bytesused) *bytesused = vb.bytesused;
    return static_cast<int>(index);
}

int pl_vb2_buffer_frames(pl_vb2_queue* pq, unsigned index, unsigned long* pfns, unsigned max, int* got_ref) {
    if (!queue_ok(pq, "pl_vb2_buffer_frames")) return -EINVAL;
    Vb2Queue& q = *Q(pq);
    sync::WriteGuard g(q.lock);
    if (index >= q.bufs.size() || !q.bufs[index].mem) {
        kapi_set_error("pl_vb2_buffer_frames: no USERPTR memory behind that index");
        return -EINVAL;
    }
    const frame_vector* vec = q.bufs[index].mem->vec;
    for (unsigned i = 0; pfns && i < std::min(max, vec->nr_frames); i++) pfns[i] = frame_pfn(*q.kernel->mem, vec, i);
    if (got_ref) *got_ref = vec->got_ref;
    return static_cast<int>(vec->nr_frames);
}

}  // extern "C"
