/*
 * pinlab — frame vectors: the user-memory pinning helper of videobuf2
 * (include/media/frame_vector.h; mm/frame_vector.c until v5.12 moved it to
 * drivers/media/common/videobuf2/frame_vector.c).
 *
 * kapi.h includes this header; it may also be included on its own. A
 * frame_vector holds, for a range of user addresses, either page pointers
 * (with a reference get_vaddr_frames() took: got_ref) or raw page frame
 * numbers (is_pfns). What get_vaddr_frames() does depends on the kernel's era
 * (config key era=; docs/FIDELITY.md, "Frame vectors"):
 *
 *   v4.8 - v5.5   (mm/frame_vector.c): the first VMA decides. A normal VMA:
 *                 get_user_pages_locked() — FOLL_GET references (fsdax VMAs
 *                 refused with -EOPNOTSUPP since v4.15). A VM_IO|VM_PFNMAP
 *                 VMA: follow_pfn() page by page, raw PFNs, no reference at
 *                 all (is_pfns = true, got_ref = false) — racy: the device
 *                 may free and reuse those frames while the vector holds them.
 *   v5.8 - v5.11  the same with pin_user_pages_locked(): FOLL_PIN pins.
 *   v5.16, v6.0   (seed 000, "mm/frame-vector: Use FOLL_LONGTERM", v5.12):
 *                 pin_user_pages_fast(FOLL_FORCE|FOLL_WRITE|FOLL_LONGTERM);
 *                 only when that takes nothing, the follow_pfn() fallback.
 *   v6.4 and on   no PFN fallback (v6.1): pin_user_pages_fast(FOLL_LONGTERM,
 *                 plus FOLL_WRITE when `write`), -EFAULT (or GUP's error)
 *                 when nothing could be pinned; v6.4 and v6.5 also WARN
 *                 "get_vaddr_frames() cannot follow VM_IO mapping" then.
 *
 * get_vaddr_frames() has the current signature (bool write, since v6.2);
 * eras that took gup_flags get FOLL_FORCE, plus FOLL_WRITE when `write`.
 * All functions accept only vectors made by frame_vector_create(): any other
 * pointer gives -EINVAL (or ERR_PTR(-EINVAL), or nothing), with
 * pl_last_error() saying so.
 */
#ifndef PINLAB_FRAME_VECTOR_H
#define PINLAB_FRAME_VECTOR_H

#include "pinlab/kapi.h"

#ifndef __cplusplus
#include <stdbool.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct page;

/* ptrs[] is a flexible array member, as upstream: standard C, an extension in
 * C++ (quietened for -pedantic builds of C++ users). */
#if defined(__cplusplus) && defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wc99-extensions"
#endif
struct frame_vector {
    unsigned int nr_allocated; /* room in ptrs[] */
    unsigned int nr_frames;    /* entries of ptrs[] in use */
    bool got_ref;              /* get_vaddr_frames() holds a reference (GET or PIN) on each page */
    bool is_pfns;              /* ptrs[] holds unsigned long PFNs rather than struct page pointers */
#ifdef __cplusplus
    __extension__
#endif
    void *ptrs[];              /* read through frame_vector_pages()/frame_vector_pfns() */
};
#if defined(__cplusplus) && defined(__clang__)
#pragma clang diagnostic pop
#endif

/* A vector with room for nr_frames entries; NULL (WARN) for 0 or an absurd
 * count. Free it with frame_vector_destroy() after put_vaddr_frames(). */
struct frame_vector *frame_vector_create(unsigned int nr_frames);
/* Frees the vector. Frames still held (put_vaddr_frames() not called) are a
 * WARN, and their references leak, as upstream. */
void frame_vector_destroy(struct frame_vector *vec);
/* Fill vec with the frames of [start, start + nr_frames pages) of
 * pl_current()'s mm (nr_frames is clamped to nr_allocated, with a WARN).
 * Returns how many frames were taken (possibly fewer), 0 for nr_frames == 0,
 * or a negative errno when none were (-EFAULT by default). Takes and drops
 * the mmap_lock itself. */
int get_vaddr_frames(unsigned long start, unsigned int nr_frames, bool write, struct frame_vector *vec);
/* Release what get_vaddr_frames() took (put_page() for GET references,
 * unpin_user_pages() for pins; nothing for raw PFNs); nr_frames becomes 0. */
void put_vaddr_frames(struct frame_vector *vec);
/* Turn PFNs into page pointers (no reference is taken): 0, or -EINVAL when a
 * PFN has no struct page (I/O memory; pfn_valid() fails). */
int frame_vector_to_pages(struct frame_vector *vec);
/* Turn page pointers into PFNs. */
void frame_vector_to_pfns(struct frame_vector *vec);
/* The entries as pages (converting PFNs first; ERR_PTR(-EINVAL) if that
 * fails — test with IS_ERR()), or as PFNs (converting pages first). */
struct page **frame_vector_pages(struct frame_vector *vec);
unsigned long *frame_vector_pfns(struct frame_vector *vec);
/* nr_frames. */
unsigned int frame_vector_count(struct frame_vector *vec);

#ifdef __cplusplus
}
#endif

#endif /* PINLAB_FRAME_VECTOR_H */
