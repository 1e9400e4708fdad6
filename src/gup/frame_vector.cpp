// pinlab — frame vectors: get_vaddr_frames()/put_vaddr_frames() and the
// vector helpers, each era running the implementation it had (frame_vector.h;
// upstream mm/frame_vector.c @04769cb1c45a and earlier,
// drivers/media/common/videobuf2/frame_vector.c @037dd1308c6d).
#include "debug/pin_tracker.h"
#include "gup/frame_vector.h"

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>

#include "base/sync/spinlock.h"
#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/mm_struct.h"
#include "mm/page_table.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

namespace pl {

FrameVectorImpl frame_vector_impl(Era era) {
    if (era < Era::v5_8) return FrameVectorImpl::GupLocked;
    if (era < Era::v5_16) return FrameVectorImpl::PinLocked;  // v5.11 still: the seed-000 change is v5.12
    if (era < Era::v6_4) return FrameVectorImpl::PinFastFallback;
    return FrameVectorImpl::PinFast;
}

unsigned frame_vector_gup_flags(Era era, bool write) {
    switch (frame_vector_impl(era)) {
        case FrameVectorImpl::GupLocked:
        case FrameVectorImpl::PinLocked:
            // The caller chose gup_flags; videobuf2 asked for FOLL_FORCE and,
            // for a writable buffer, FOLL_WRITE.
            return FOLL_FORCE | (write ? FOLL_WRITE : 0);
        case FrameVectorImpl::PinFastFallback:
            return FOLL_FORCE | FOLL_WRITE | FOLL_LONGTERM;  // no parameter: always writable
        case FrameVectorImpl::PinFast:
            break;
    }
    return FOLL_LONGTERM | (write ? FOLL_WRITE : 0);
}

bool frame_vector_warns_no_pfn_fallback(Era era) { return era >= Era::v6_4 && era <= Era::v6_5; }

bool frame_vector_refuses_fsdax(Era era) { return era >= Era::v5_3; }

}  // namespace pl

using namespace pl;

namespace {

// What the model knows of each live vector: the kernel its frames belong to
// (for pfn_to_page()/page_to_pfn()) and the kind of reference it holds.
// Bookkeeping of the model, not a lock of the modelled kernel.
struct VecState {
    Kernel* kernel = nullptr;
    unsigned ref = 0;  // FOLL_GET or FOLL_PIN while got_ref
};

struct Registry {
    sync::Spinlock lock;
    std::unordered_map<const frame_vector*, VecState> live PL_GUARDED_BY(lock);
};

Registry& registry() {
    static Registry r;
    return r;
}

bool lookup(const frame_vector* vec, const char* fn, VecState* out) {
    Registry& r = registry();
    {
        sync::SpinGuard g(r.lock);
        auto it = r.live.find(vec);
        if (it != r.live.end()) {
            if (out) *out = it->second;
            return true;
        }
    }
    kapi_set_error(std::string(fn) + ": invalid argument 'vec' (not made by frame_vector_create())");
    return false;
}

void set_state(const frame_vector* vec, const VecState& st) {
    Registry& r = registry();
    sync::SpinGuard g(r.lock);
    auto it = r.live.find(vec);
    if (it != r.live.end()) it->second = st;
}

Kernel* current_kernel() {
    Task* t = current();
    return t ? &t->kernel : nullptr;
}

page** ERR_PAGES(int err) { return reinterpret_cast<page**>(static_cast<intptr_t>(err)); }

// The entries as the kernel's frame_vector_pfns() sees them: PFNs stored in
// the pointer slots.
unsigned long pfn_at(const frame_vector* vec, unsigned i) {
    return static_cast<unsigned long>(reinterpret_cast<uintptr_t>(vec->ptrs[i]));
}

int to_pages(frame_vector* vec, const VecState& st) {
    if (!vec->is_pfns) return 0;
    if (vec->nr_frames && !st.kernel) return -EINVAL;
    for (unsigned i = 0; i < vec->nr_frames; i++)
        if (!st.kernel->mem->pfn_valid(pfn_at(vec, i))) return -EINVAL;  // I/O memory: no struct page
    for (unsigned i = 0; i < vec->nr_frames; i++) vec->ptrs[i] = st.kernel->mem->pfn_to_page(pfn_at(vec, i));
    vec->is_pfns = false;
    return 0;
}

void to_pfns(frame_vector* vec, const VecState& st) {
    if (vec->is_pfns) return;
    for (unsigned i = 0; i < vec->nr_frames; i++) {
        const Page* p = static_cast<const Page*>(vec->ptrs[i]);
        Kernel* k = st.kernel ? st.kernel : kapi_kernel_of_page(p);
        vec->ptrs[i] = reinterpret_cast<void*>(static_cast<uintptr_t>(k ? k->mem->page_to_pfn(p) : 0));
    }
    vec->is_pfns = true;
}

// follow_pfn(): the PFN that a VM_IO|VM_PFNMAP VMA maps at addr, read from its
// PTE under the page-table lock; nothing is faulted in and no reference is
// taken. -EINVAL for any other VMA or an address without a present PTE.
int follow_pfn(Vma& vma, vaddr_t addr, unsigned long* pfn) {
    if (!(vma.flags & (VM_IO | VM_PFNMAP))) return -EINVAL;
    MmStruct& mm = *vma.mm;
    sync::SpinGuard g(mm.page_table_lock);
    PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
    if (!leaf.slot || leaf.level != PtLevel::Pte || !pte::is_leaf(leaf.entry)) return -EINVAL;
    *pfn = pte::pfn(leaf.entry);
    return 0;
}

// The follow_pfn() loop over consecutive VM_IO|VM_PFNMAP VMAs of the old
// versions, from `vma` (which contains start). Caller holds the mmap_lock.
// `restart_lookup`: the v5.12 form, which looks each VMA up afresh and walks
// on whatever VMA comes next (follow_pfn() refusing the wrong kind).
int follow_pfn_loop(MmStruct& mm, Vma* vma, vaddr_t start, unsigned nr, frame_vector* vec, int pin_err,
                    bool restart_lookup) {
    int ret = 0;
    while (vma) {
        while (static_cast<unsigned>(ret) < nr && start + PAGE_SIZE <= vma->end) {
            unsigned long pfn = 0;
            int err = follow_pfn(*vma, start, &pfn);
            if (err) {
                if (ret) return ret;
                // ~v5.16: follow_pfn()'s -EINVAL (not a PFN map) must not hide
                // why pin_user_pages_fast() failed.
                return (restart_lookup && err == -EINVAL && pin_err) ? pin_err : err;
            }
            vec->ptrs[ret] = reinterpret_cast<void*>(static_cast<uintptr_t>(pfn));
            start += PAGE_SIZE;
            ret++;
        }
        // Stop when done or when the VMA does not cover the last page fully.
        if (static_cast<unsigned>(ret) >= nr || start < vma->end) break;
        vma = mm.vma_lookup(start);
        if (!restart_lookup && vma && !(vma->flags & (VM_IO | VM_PFNMAP))) break;
    }
    return ret;
}

// mm/frame_vector.c before v5.12: one VMA check decides GUP or PFNs.
int get_frames_vma_checked(MmStruct& mm, vaddr_t start, unsigned nr, unsigned gup_flags, bool pin,
                           frame_vector* vec, VecState* st) PL_NO_TSA {
    int ret = 0;
    int locked = 1;
    mmap_read_lock(mm);
    Vma* vma = mm.vma_lookup(start);  // find_vma_intersection(mm, start, start + 1)
    if (!vma) {
        ret = -EFAULT;
    } else if (frame_vector_refuses_fsdax(mm.kernel.cfg.era) && vma->is_dax()) {
        // Long-term (user-controlled) pins of filesystem-DAX blocks: refused
        // as get_user_pages_longterm() refused them.
        ret = -EOPNOTSUPP;
    } else if (!(vma->flags & (VM_IO | VM_PFNMAP))) {
        vec->got_ref = true;
        vec->is_pfns = false;
        st->ref = pin ? FOLL_PIN : FOLL_GET;
        // get_user_pages_locked()/pin_user_pages_locked(): FOLL_TOUCH, and the
        // lock may be dropped (then *locked is 0 and it is gone).
        unsigned flags = gup_flags | FOLL_TOUCH | FOLL_UNLOCKABLE | (pin ? FOLL_PIN : 0);
        ret = static_cast<int>(
            __get_user_pages_locked(mm, start, nr, reinterpret_cast<Page**>(vec->ptrs), &locked, flags));
    } else {
        vec->got_ref = false;
        vec->is_pfns = true;
        ret = follow_pfn_loop(mm, vma, start, nr, vec, 0, false);
    }
    if (locked) mmap_read_unlock(mm);
    if (!ret) ret = -EFAULT;
    if (ret > 0) vec->nr_frames = static_cast<unsigned>(ret);
    return ret;
}

// v5.12 - v6.0: pin first; only a pin that took nothing falls back to PFNs.
int get_frames_pin_fast_fallback(MmStruct& mm, vaddr_t start, unsigned nr, unsigned gup_flags, frame_vector* vec,
                                 VecState* st) PL_NO_TSA {
    int ret = ::pin_user_pages_fast(start, static_cast<int>(nr), gup_flags, reinterpret_cast<page**>(vec->ptrs));
    if (ret > 0) {
        vec->got_ref = true;
        vec->is_pfns = false;
        st->ref = FOLL_PIN;
        vec->nr_frames = static_cast<unsigned>(ret);
        return ret;
    }
    const int pin_err = ret;
    mmap_read_lock(mm);
    vec->got_ref = false;
    vec->is_pfns = true;
    ret = follow_pfn_loop(mm, mm.vma_lookup(start), start, nr, vec, pin_err, true);
    mmap_read_unlock(mm);
    if (!ret) ret = -EFAULT;
    if (ret > 0) vec->nr_frames = static_cast<unsigned>(ret);
    return ret;
}

// v6.1 on: pin_user_pages_fast() is all there is.
int get_frames_pin_fast(Kernel& k, vaddr_t start, unsigned nr, unsigned gup_flags, frame_vector* vec,
                        VecState* st) {
    int ret = ::pin_user_pages_fast(start, static_cast<int>(nr), gup_flags, reinterpret_cast<page**>(vec->ptrs));
    vec->got_ref = true;
    vec->is_pfns = false;
    st->ref = FOLL_PIN;
    if (ret > 0) {
        vec->nr_frames = static_cast<unsigned>(ret);
        return ret;
    }
    if (frame_vector_warns_no_pfn_fallback(k.cfg.era))
        k.warn("get_vaddr_frames", "get_vaddr_frames() cannot follow VM_IO mapping (the racy follow_pfn() fallback "
                                   "for non-refcounted PFNs was removed in v6.1)");
    vec->nr_frames = 0;
    return ret ? ret : -EFAULT;
}

void release(frame_vector* vec, const VecState& st) {
    page** pages = reinterpret_cast<page**>(vec->ptrs);
    if (st.ref == FOLL_PIN) {
        ::unpin_user_pages(pages, vec->nr_frames);
    } else if (st.ref == FOLL_GET) {
        for (unsigned i = 0; i < vec->nr_frames; i++) ::put_page(pages[i]);
    }
}

}  // namespace

extern "C" {

frame_vector* frame_vector_create(unsigned int nr_frames) {
    // Both WARN_ON_ONCE upstream; the second keeps the size arithmetic sane.
    if (nr_frames == 0 || nr_frames > INT_MAX / sizeof(void*) / 2) {
        if (Kernel* k = current_kernel())
            k->warn("frame_vector_create", "nr_frames " + std::to_string(nr_frames) + " is 0 or absurdly large");
        kapi_set_error("frame_vector_create: invalid argument 'nr_frames'");
        return nullptr;
    }
    void* mem = std::calloc(1, sizeof(frame_vector) + sizeof(void*) * nr_frames);
    if (!mem) {
        kapi_set_error("frame_vector_create: ENOMEM");
        return nullptr;
    }
    auto* vec = static_cast<frame_vector*>(mem);
    vec->nr_allocated = nr_frames;
    vec->nr_frames = 0;
    {
        Registry& r = registry();
        sync::SpinGuard g(r.lock);
        r.live.emplace(vec, VecState{});
    }
    kapi_clear_error();
    return vec;
}

void frame_vector_destroy(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "frame_vector_destroy", &st)) return;
    if (vec->nr_frames > 0) {
        // VM_BUG_ON upstream (CONFIG_DEBUG_VM); without it the references leak.
        Kernel* k = st.kernel ? st.kernel : current_kernel();
        if (k)
            k->warn("frame_vector_destroy", "frame vector still holds " + std::to_string(vec->nr_frames) +
                                                " frames: put_vaddr_frames() was not called");
    }
    {
        Registry& r = registry();
        sync::SpinGuard g(r.lock);
        r.live.erase(vec);
    }
    std::free(vec);
}

int get_vaddr_frames(unsigned long start, unsigned int nr_frames, bool write, frame_vector* vec) {
    GupCallScope owner("get_vaddr_frames");  // the pin tracker's default owner
    VecState st;
    if (!vec || !lookup(vec, "get_vaddr_frames", &st)) return -EINVAL;
    if (nr_frames == 0) return 0;
    Task* t = current();
    MmStruct* mm = t ? t->mm : nullptr;
    if (!mm) {
        kapi_set_error("get_vaddr_frames: no current task with an mm (pl_set_current())");
        return -EFAULT;
    }
    Kernel& k = mm->kernel;
    if (nr_frames > vec->nr_allocated) {
        k.warn("get_vaddr_frames", "nr_frames " + std::to_string(nr_frames) + " > nr_allocated " +
                                       std::to_string(vec->nr_allocated) + ": clamped");
        nr_frames = vec->nr_allocated;
    }
    const Era era = k.cfg.era;
    const unsigned flags = frame_vector_gup_flags(era, write);
    st.kernel = &k;
    st.ref = 0;
    int ret = 0;
    switch (frame_vector_impl(era)) {
        case FrameVectorImpl::GupLocked:
            ret = get_frames_vma_checked(*mm, start, nr_frames, flags, false, vec, &st);
            break;
        case FrameVectorImpl::PinLocked:
            ret = get_frames_vma_checked(*mm, start, nr_frames, flags, true, vec, &st);
            break;
        case FrameVectorImpl::PinFastFallback:
            ret = get_frames_pin_fast_fallback(*mm, start, nr_frames, flags, vec, &st);
            break;
        case FrameVectorImpl::PinFast:
            ret = get_frames_pin_fast(k, start, nr_frames, flags, vec, &st);
            break;
    }
    set_state(vec, st);
    return ret;
}

void put_vaddr_frames(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "put_vaddr_frames", &st)) return;
    if (vec->got_ref) {
        // The entries may have been turned into PFNs meanwhile; turn them back.
        if (int err = to_pages(vec, st)) {
            if (st.kernel)
                st.kernel->warn("put_vaddr_frames", "cannot turn the PFNs back into pages (" +
                                                        std::to_string(err) + "): references leaked");
        } else {
            release(vec, st);
            vec->got_ref = false;
        }
    }
    vec->nr_frames = 0;
}

int frame_vector_to_pages(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "frame_vector_to_pages", &st)) return -EINVAL;
    return to_pages(vec, st);
}

void frame_vector_to_pfns(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "frame_vector_to_pfns", &st)) return;
    to_pfns(vec, st);
}

page** frame_vector_pages(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "frame_vector_pages", &st)) return ERR_PAGES(-EINVAL);
    if (int err = to_pages(vec, st)) return ERR_PAGES(err);
    return reinterpret_cast<page**>(vec->ptrs);
}

unsigned long* frame_vector_pfns(frame_vector* vec) {
    VecState st;
    if (!vec || !lookup(vec, "frame_vector_pfns", &st)) return nullptr;
    to_pfns(vec, st);
    return reinterpret_cast<unsigned long*>(vec->ptrs);
}

unsigned int frame_vector_count(frame_vector* vec) {
    if (!vec || !lookup(vec, "frame_vector_count", nullptr)) return 0;
    return vec->nr_frames;
}

}  // extern "C"
