// pinlab — GUP entry points with kernel names and C linkage (spec §1).
//
// get_user_pages_fast()/pin_user_pages_fast() validate their arguments as
// upstream's gup_fast_fallback() does, take what the lockless walk
// (src/gup/gup_fast.cpp) can, and hand the rest to the slow path
// (FOLL_TOUCH|FOLL_UNLOCKABLE, the lock taken inside). FOLL_LONGTERM pins
// go through gup_longterm_locked() (src/gup/gup_longterm.cpp).
// get_user_pages_fast_only() stops after the lockless walk;
// get_user_page_vma_remote() is upstream's inline helper of
// include/linux/mm.h.
#include <cerrno>
#include <cstdio>

#include "debug/pin_tracker.h"
#include "debug/trace.h"
#include "gup/foll_flags.h"
#include "gup/gup_fast.h"
#include "gup/gup_longterm.h"
#include "gup/gup_slow.h"
#include "gup/pin_accounting.h"
#include "kernel/task.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

Page** PP(page** p) { return reinterpret_cast<Page**>(p); }

MmStruct* current_mm() {
    Task* t = current();
    return t ? t->mm : nullptr;
}

// gup_fast_fallback(): the lockless walk takes a prefix, the slow path the rest.
int gup_fast_fallback(unsigned long start, unsigned long nr_pages, unsigned gup_flags, Page** pages) {
    constexpr unsigned kFastFlags = FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE | FOLL_PIN | FOLL_GET | FOLL_FAST_ONLY |
                                    FOLL_NOFAULT | FOLL_PCI_P2PDMA | FOLL_HONOR_NUMA_FAULT;
    if (gup_flags & ~kFastFlags) {  // WARN_ON_ONCE upstream
        char why[96];
        snprintf(why, sizeof why, "flags %#x outside the GUP-fast set (e.g. NOWAIT, ANON, DUMP)", gup_flags & ~kFastFlags);
        gup_warn_current("gup_fast_fallback", why);
        return -EINVAL;
    }
    MmStruct* mm = current_mm();
    if (!mm) return -EFAULT;
    if (gup_flags & FOLL_PIN) mm_set_has_pinned_flag(*mm);
    start &= ~(PAGE_SIZE - 1);
    unsigned long len = nr_pages << PAGE_SHIFT;
    unsigned long end = 0;
    if ((len >> PAGE_SHIFT) != nr_pages || __builtin_add_overflow(start, len, &end)) return -EOVERFLOW;
    if (end > TASK_SIZE) return -EFAULT;
    const long nr_pinned = static_cast<long>(gup_fast(*mm, start, nr_pages, gup_flags, pages));
    if (static_cast<unsigned long>(nr_pinned) == nr_pages || (gup_flags & FOLL_FAST_ONLY))
        return static_cast<int>(nr_pinned);
    int locked = 0;
    long ret = gup_longterm_locked(*mm, start + (static_cast<unsigned long>(nr_pinned) << PAGE_SHIFT),
                                   nr_pages - static_cast<unsigned long>(nr_pinned), pages + nr_pinned, &locked,
                                   gup_flags | FOLL_TOUCH | FOLL_UNLOCKABLE);
    if (ret < 0) return nr_pinned ? static_cast<int>(nr_pinned) : static_cast<int>(ret);
    return static_cast<int>(ret + nr_pinned);
}

// One exported slow-path entry point: what it ORs into the flags, what it
// returns on invalid arguments (-EINVAL, or 0 for the pin_user_pages*
// quirk), and whether the caller holds the mmap_lock.
struct EntryPoint {
    const char* name;
    unsigned to_set;
    long invalid_ret;
};
enum class LockState { CallerHolds, TakenInside };

// `mm` null: current->mm. `locked`: the caller's int *locked (remote only).
long gup_entry(const EntryPoint& ep, MmStruct* mm, unsigned long start, unsigned long nr_pages, unsigned gup_flags,
               page** pages, LockState lock, int* locked) {
    GupCallScope owner(ep.name);  // the pin tracker's default owner
    trace::CallScope traced(ep.name, mm, start, nr_pages, gup_flags);  // `pinlab explain`
    int local_locked = lock == LockState::CallerHolds ? 1 : 0;
    if (!is_valid_gup_args(PP(pages), locked, &gup_flags, ep.to_set)) return ep.invalid_ret;
    if (!mm) mm = current_mm();
    if (!mm) return -EFAULT;
    return traced.ret(gup_longterm_locked(*mm, start, nr_pages, PP(pages), locked ? locked : &local_locked, gup_flags));
}

}  // namespace

extern "C" {


int get_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, page** pages) {
    GupCallScope owner("get_user_pages_fast");  // the pin tracker's default owner
    trace::CallScope traced("get_user_pages_fast", nullptr, start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags);
    if (!is_valid_gup_args(PP(pages), nullptr, &gup_flags, FOLL_GET)) return -EINVAL;
    // A negative count sign-extends into an overflowing length (-EOVERFLOW).
    return traced.ret(gup_fast_fallback(start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags, PP(pages)));
}

int pin_user_pages_fast(unsigned long start, int nr_pages, unsigned int gup_flags, page** pages) {
    GupCallScope owner("pin_user_pages_fast");  // the pin tracker's default owner
    trace::CallScope traced("pin_user_pages_fast", nullptr, start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags);
    if (!is_valid_gup_args(PP(pages), nullptr, &gup_flags, FOLL_PIN)) return -EINVAL;
    // A negative count sign-extends into an overflowing length (-EOVERFLOW).
    return traced.ret(gup_fast_fallback(start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags, PP(pages)));
}

int get_user_pages_fast_only(unsigned long start, int nr_pages, unsigned int gup_flags, page** pages) {
    GupCallScope owner("get_user_pages_fast_only");  // the pin tracker's default owner
    trace::CallScope traced("get_user_pages_fast_only", nullptr, start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags);
    // FOLL_GET: GUP-fast always takes references. FOLL_FAST_ONLY: no slow
    // path, hence no mmap_lock and no fault, whatever the walk stops at.
    if (!is_valid_gup_args(PP(pages), nullptr, &gup_flags, FOLL_GET | FOLL_FAST_ONLY)) return -EINVAL;
    return traced.ret(gup_fast_fallback(start, static_cast<unsigned long>(static_cast<long>(nr_pages)), gup_flags, PP(pages)));
}

page* get_user_page_vma_remote(mm_struct* cmm, unsigned long addr, int gup_flags, vm_area_struct** vmap) {
    GupCallScope owner("get_user_page_vma_remote");  // the pin tracker's default owner
    if (!cmm || !vmap) return static_cast<page*>(ERR_PTR(-EINVAL));
    MmStruct& mm = *reinterpret_cast<MmStruct*>(cmm);
    // get_user_pages_remote() may return 0 only with FOLL_NOWAIT.
    if (gup_flags & static_cast<int>(FOLL_NOWAIT)) {
        mm.kernel.warn("get_user_page_vma_remote", "FOLL_NOWAIT is not supported");
        return static_cast<page*>(ERR_PTR(-EINVAL));
    }
    page* p = nullptr;
    long got = get_user_pages_remote(cmm, addr, 1, static_cast<unsigned>(gup_flags), &p, nullptr);
    if (got < 0) return static_cast<page*>(ERR_PTR(got));
    if (got == 0) {
        mm.kernel.warn("get_user_page_vma_remote", "get_user_pages_remote() returned 0");
        return static_cast<page*>(ERR_PTR(-EFAULT));
    }
    // The C API's vma_lookup(): a fresh VMA pointer for the caller.
    vm_area_struct* vma = ::vma_lookup(cmm, addr);
    if (!vma) {
        // The lock is held throughout: the VMA GUP used cannot have gone.
        mm.kernel.warn("get_user_page_vma_remote", "no VMA after a successful GUP");
        gup_put_folio(mm.kernel, page_folio(reinterpret_cast<Page*>(p)), 1, FOLL_GET);
        return static_cast<page*>(ERR_PTR(-EINVAL));
    }
    *vmap = vma;
    return p;
}


long get_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, page** pages) {
    return gup_entry({"get_user_pages", FOLL_TOUCH, -EINVAL}, nullptr, start, nr_pages, gup_flags, pages,
                     LockState::CallerHolds, nullptr);
}

long get_user_pages_remote(mm_struct* mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                           page** pages, int* locked) {
    if (!mm) return -EINVAL;
    return gup_entry({"get_user_pages_remote", FOLL_TOUCH | FOLL_REMOTE, -EINVAL}, reinterpret_cast<MmStruct*>(mm),
                     start, nr_pages, gup_flags, pages, LockState::CallerHolds, locked);
}

long get_user_pages_unlocked(unsigned long start, unsigned long nr_pages, page** pages, unsigned int gup_flags) {
    return gup_entry({"get_user_pages_unlocked", FOLL_TOUCH | FOLL_UNLOCKABLE, -EINVAL}, nullptr, start, nr_pages,
                     gup_flags, pages, LockState::TakenInside, nullptr);
}

// Upstream quirk: the pin_user_pages* variants below give 0, not -EINVAL, on
// invalid arguments.
long pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, page** pages) {
    return gup_entry({"pin_user_pages", FOLL_PIN, 0}, nullptr, start, nr_pages, gup_flags, pages,
                     LockState::CallerHolds, nullptr);
}

long pin_user_pages_remote(mm_struct* mm, unsigned long start, unsigned long nr_pages, unsigned int gup_flags,
                           page** pages, int* locked) {
    if (!mm) return 0;
    return gup_entry({"pin_user_pages_remote", FOLL_PIN | FOLL_TOUCH | FOLL_REMOTE, 0},
                     reinterpret_cast<MmStruct*>(mm), start, nr_pages, gup_flags, pages, LockState::CallerHolds,
                     locked);
}

long pin_user_pages_unlocked(unsigned long start, unsigned long nr_pages, page** pages, unsigned int gup_flags) {
    return gup_entry({"pin_user_pages_unlocked", FOLL_PIN | FOLL_TOUCH | FOLL_UNLOCKABLE, 0}, nullptr, start,
                     nr_pages, gup_flags, pages, LockState::TakenInside, nullptr);
}

}  // extern "C"
