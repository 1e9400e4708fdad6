// pinlab — the GUP entry points as they were before v6.5, with the
// `struct vm_area_struct **vmas` output array (seed 002; upstream v6.4
// mm/gup.c). C has no overloading, so they are pl_v6_4_*(); kapi.h maps the
// kernel names onto them for code that defines PINLAB_KERNEL_API_V6_4.
//
// v6.4 semantics: the same checks as today's is_valid_gup_args() plus one
// more (vmas cannot be combined with `locked`: a lock GUP may drop would
// invalidate the array), get_* through __get_user_pages_locked(), pin_*
// through __gup_longterm_locked(), vmas[i] filled per page by the slow path.
// Every pointer handed out is recorded (src/gup/gup_vmas_tracker.h) so that a
// use after the caller's mmap_lock hold ends is caught.
//
// In a kernel of era v6.5 or later the parameter no longer exists: WARN, and
// fail as the APIs fail on invalid arguments (get_*: -EINVAL; pin_*: 0).
#include <cerrno>
#include <string>

#include "gup/foll_flags.h"
#include "gup/gup_longterm.h"
#include "gup/gup_slow.h"
#include "gup/gup_vmas_tracker.h"
#include "kernel/task.h"
#include "mm/gfp.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

Page** PP(page** p) { return reinterpret_cast<Page**>(p); }
Vma** VV(vm_area_struct** v) { return reinterpret_cast<Vma**>(v); }
MmStruct* MM(mm_struct* m) { return reinterpret_cast<MmStruct*>(m); }

MmStruct* current_mm() {
    Task* t = current();
    return t ? t->mm : nullptr;
}

// The parameter left in v6.5 (Lorenzo Stoakes, "remove the vmas parameter
// from GUP APIs", v4 merged for v6.5).
bool era_has_vmas(Kernel& k, const char* fn) {
    if (!k.cfg.era_at_least(Era::v6_5)) return true;
    k.warn(fn, std::string("vmas parameter removed in v6.5 (era ") + std::string(era_name(k.cfg.era)) +
                   "): call " + fn + "() without it and look VMAs up with vma_lookup() under the mmap_lock");
    return false;
}

// is_valid_gup_args() of v6.4: today's checks, then vmas with FOLL_UNLOCKABLE
// (set by `locked`) is refused with a WARN.
bool is_valid_gup_args_v6_4(Kernel& k, Page** pages, Vma** vmas, const int* locked, unsigned* gup_flags,
                            unsigned to_set) {
    if (!is_valid_gup_args(pages, locked, gup_flags, to_set)) return false;
    if (vmas && (*gup_flags & FOLL_UNLOCKABLE)) {
        k.warn("is_valid_gup_args", "vmas together with locked: GUP may drop the mmap_lock, which invalidates vmas[]");
        return false;
    }
    return true;
}

// __gup_longterm_locked() of v6.4, which passed vmas down. Without vmas the
// shared implementation serves; with them, the same pin-check-migrate loop
// around the vmas-filling slow path.
long gup_longterm_locked_vmas(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, Vma** vmas,
                              int* locked, unsigned gup_flags) {
    if (!vmas) return gup_longterm_locked(mm, start, nr_pages, pages, locked, gup_flags);
    if (!(gup_flags & FOLL_LONGTERM))
        return __get_user_pages_locked(mm, start, nr_pages, pages, locked, gup_flags, vmas);
    MemallocPinScope pin_scope;  // memalloc_pin_save()
    constexpr int kMaxRounds = 64;  // as gup_longterm_locked(): give up rather than spin
    for (int round = 0; round < kMaxRounds; ++round) {
        long nr_pinned = __get_user_pages_locked(mm, start, nr_pages, pages, locked, gup_flags, vmas);
        if (nr_pinned <= 0) return nr_pinned;
        long rc = check_and_migrate_movable_pages(mm.kernel, pages, static_cast<unsigned long>(nr_pinned));
        if (rc == 0) return nr_pinned;
        if (rc != -EAGAIN) return rc;
    }
    mm.kernel.warn("__gup_longterm_locked", "range still not longterm-pinnable after " +
                                                std::to_string(kMaxRounds) + " migration rounds");
    return -ENOMEM;
}

// The common tail: run GUP, then record what vmas[] now holds.
long gup_with_vmas(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, Vma** vmas, int* locked,
                   unsigned gup_flags, const char* fn) {
    long ret = gup_longterm_locked_vmas(mm, start, nr_pages, pages, vmas, locked, gup_flags);
    if (ret > 0) vmas_track(mm, vmas, ret, fn);
    return ret;
}

}  // namespace

extern "C" {

long pl_v6_4_get_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, page** pages,
                            vm_area_struct** vmas) {
    MmStruct* mm = current_mm();
    if (!mm) return -EFAULT;
    if (!era_has_vmas(mm->kernel, "get_user_pages")) return -EINVAL;
    int locked = 1;
    if (!is_valid_gup_args_v6_4(mm->kernel, PP(pages), VV(vmas), nullptr, &gup_flags, FOLL_TOUCH)) return -EINVAL;
    return gup_with_vmas(*mm, start, nr_pages, PP(pages), VV(vmas), &locked, gup_flags, "get_user_pages");
}

long pl_v6_4_pin_user_pages(unsigned long start, unsigned long nr_pages, unsigned int gup_flags, page** pages,
                            vm_area_struct** vmas) {
    MmStruct* mm = current_mm();
    if (!mm) return -EFAULT;
    // pin_user_pages*() answer invalid arguments with 0, not -EINVAL.
    if (!era_has_vmas(mm->kernel, "pin_user_pages")) return 0;
    int locked = 1;
    if (!is_valid_gup_args_v6_4(mm->kernel, PP(pages), VV(vmas), nullptr, &gup_flags, FOLL_PIN)) return 0;
    return gup_with_vmas(*mm, start, nr_pages, PP(pages), VV(vmas), &locked, gup_flags, "pin_user_pages");
}

long pl_v6_4_get_user_pages_remote(mm_struct* cmm, unsigned long start, unsigned long nr_pages,
                                   unsigned int gup_flags, page** pages, vm_area_struct** vmas, int* locked) {
    if (!cmm) return -EINVAL;
    MmStruct& mm = *MM(cmm);
    if (!era_has_vmas(mm.kernel, "get_user_pages_remote")) return -EINVAL;
    int local_locked = 1;
    if (!is_valid_gup_args_v6_4(mm.kernel, PP(pages), VV(vmas), locked, &gup_flags, FOLL_TOUCH | FOLL_REMOTE))
        return -EINVAL;
    return gup_with_vmas(mm, start, nr_pages, PP(pages), VV(vmas), locked ? locked : &local_locked, gup_flags,
                         "get_user_pages_remote");
}

long pl_v6_4_pin_user_pages_remote(mm_struct* cmm, unsigned long start, unsigned long nr_pages,
                                   unsigned int gup_flags, page** pages, vm_area_struct** vmas, int* locked) {
    if (!cmm) return 0;
    MmStruct& mm = *MM(cmm);
    if (!era_has_vmas(mm.kernel, "pin_user_pages_remote")) return 0;
    int local_locked = 1;
    if (!is_valid_gup_args_v6_4(mm.kernel, PP(pages), VV(vmas), locked, &gup_flags,
                                FOLL_PIN | FOLL_TOUCH | FOLL_REMOTE))
        return 0;
    return gup_with_vmas(mm, start, nr_pages, PP(pages), VV(vmas), locked ? locked : &local_locked, gup_flags,
                         "pin_user_pages_remote");
}

}  // extern "C"
