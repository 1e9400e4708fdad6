// pinlab — GUP reference accounting and the unpin_* API (spec §5).
#include "gup/pin_accounting.h"

#include <string>

#include "debug/pin_tracker.h"
#include "debug/trace.h"
#include "gup/foll_flags.h"
#include "kapi/kapi_internal.h"
#include "mm/internal.h"
#include "mm/mm_struct.h"
#include "pinlab/kapi.h"

namespace pl {

// struct page does not record its kernel: the frame's address does
// (kapi_kernel_of_page(): a lookup without a lock).
Kernel* gup_pinned_kernel(const Folio* folio) { return kapi_kernel_of_page(folio->head()); }

void mm_set_has_pinned_flag(MmStruct& mm) {
    if (!mm.test_flag(MMF_HAS_PINNED)) mm.set_flag(MMF_HAS_PINNED);
}

Status try_grab_folio(Kernel& k, Folio* folio, int refs, unsigned flags) {
    if (refs <= 0) return {};
    if (folio->ref_count() <= 0) return Error{ENOMEM};  // WARN_ON_ONCE upstream
    if (!(flags & (FOLL_GET | FOLL_PIN))) return {};
    trace::RefScope traced("try_grab_folio", folio);  // `pinlab explain`: counts before/after
    if (flags & FOLL_GET) {
        folio->ref_add(refs);
        pin_track_grab(k, folio, refs, flags);
        return {};
    }
    // The 4 KiB zero page is never pinned: no reference, no statistics. The
    // huge zero folio is (is_zero_folio() is the small one only): _pincount,
    // references and NR_FOLL_PIN_ACQUIRED as for any large folio.
    if (!k.mem->is_zero_folio(folio)) {
        if (folio->is_large()) {
            folio->ref_add(refs);
            folio->pincount_add(refs);
        } else {
            folio->ref_add(refs * GUP_PIN_COUNTING_BIAS);
        }
        k.vmstat.add(Vmstat::nr_foll_pin_acquired, refs);
    }
    pin_track_grab(k, folio, refs, flags);
    return {};
}

void gup_put_folio(Kernel& k, Folio* folio, int refs, unsigned flags) {
    if (refs <= 0) return;
    trace::RefScope traced("gup_put_folio", folio);  // `pinlab explain`: counts before/after
    // A PIN the tracker does not hold is reported there and not released.
    const PinTrackRelease r = pin_track_release(&k, folio, nullptr, refs, flags);
    if (!r.ok) return;
    if (flags & FOLL_PIN) {
        if (k.mem->is_zero_folio(folio)) return;  // the 4 KiB one only, as when grabbed
        k.vmstat.add(Vmstat::nr_foll_pin_released, refs);
        if (folio->is_large()) folio->pincount_add(-refs);
        else refs *= GUP_PIN_COUNTING_BIAS;
    } else if (r.untracked) {
        k.ref_note(folio, -r.untracked);  // GETs the tracker lost count of: the ledger's
    }
    k.mem->folio_put_refs(folio, refs);
}

}  // namespace pl

using namespace pl;

namespace {

Page* P(page* p) { return reinterpret_cast<Page*>(p); }

// Drops `refs` pins of a folio. Unpinning what is not pinned is reported by
// the pin tracker ("unpin_not_pinned", "double_unpin") and releases nothing.
// Over an array, the kernel found for one folio serves the next ones while
// they are in its memory map.
class Unpinner {
public:
    void operator()(Folio* f, int refs) {
        if (!k_ || !k_->mem->owns(f->head())) k_ = gup_pinned_kernel(f);
        if (k_) gup_put_folio(*k_, f, refs, FOLL_PIN);
    }

private:
    Kernel* k_ = nullptr;
};

void unpin_refs(Folio* f, int refs) { Unpinner{}(f, refs); }

// Length of the run of entries [i, n) belonging to the same folio.
unsigned long run_of(page** pages, unsigned long i, unsigned long n, Folio* f) {
    unsigned long j = i + 1;
    while (j < n && pages[j] && page_folio(P(pages[j])) == f) j++;
    return j - i;
}

}  // namespace

extern "C" {

void unpin_user_page(page* p) {
    if (!p) return;
    unpin_refs(page_folio(P(p)), 1);
}

void unpin_folio(folio* f) {
    if (!f) return;
    unpin_refs(reinterpret_cast<Folio*>(f), 1);
}

void unpin_user_folio(folio* f, unsigned long npages) {
    if (!f || !npages) return;
    unpin_refs(reinterpret_cast<Folio*>(f), static_cast<int>(npages));
}

void unpin_user_pages(page** pages, unsigned long npages) {
    // An -errno passed as a count: WARN and do nothing.
    if (!pages || static_cast<long>(npages) < 0) return;
    Unpinner unpin;
    for (unsigned long i = 0; i < npages;) {
        if (!pages[i]) {
            i++;
            continue;
        }
        Folio* f = page_folio(P(pages[i]));
        unsigned long n = run_of(pages, i, npages, f);
        unpin(f, static_cast<int>(n));
        i += n;
    }
}

void unpin_user_pages_dirty_lock(page** pages, unsigned long npages, bool make_dirty) {
    if (!make_dirty) {
        unpin_user_pages(pages, npages);
        return;
    }
    if (!pages || static_cast<long>(npages) < 0) return;
    Unpinner unpin;
    for (unsigned long i = 0; i < npages;) {
        if (!pages[i]) {
            i++;
            continue;
        }
        Folio* f = page_folio(P(pages[i]));
        unsigned long n = run_of(pages, i, npages, f);
        if (!f->is_dirty()) {
            FolioLockGuard g(f);
            folio_mark_dirty(f);
        }
        unpin(f, static_cast<int>(n));
        i += n;
    }
}

void unpin_user_page_range_dirty_lock(page* p, unsigned long npages, bool make_dirty) {
    if (!p) return;
    Page* pg = P(p);
    // The range must lie in the memory map: upstream would walk off its end
    // (and crash) for a bogus npages; the model refuses with a WARN instead.
    Kernel* k = kapi_kernel_of_page(pg);
    if (!k) {
        kapi_set_error("unpin_user_page_range_dirty_lock: invalid argument 'page'");
        return;
    }
    const unsigned long pfn = k->mem->page_to_pfn(pg);
    unsigned long last = 0;
    if (npages && (__builtin_add_overflow(pfn, npages - 1, &last) || !k->mem->pfn_valid(last))) {
        k->warn("unpin_user_page_range_dirty_lock",
                "npages " + std::to_string(npages) + " from pfn " + std::to_string(pfn) +
                    " runs past the end of the memory map; nothing released");
        return;
    }
    for (unsigned long i = 0; i < npages;) {
        Folio* f = page_folio(pg + i);
        // The rest of this folio from pg + i, bounded by npages.
        unsigned long left = f->nr_pages() - f->page_index(pg + i);
        unsigned long n = left < npages - i ? left : npages - i;
        if (make_dirty && !f->is_dirty()) {
            FolioLockGuard g(f);
            folio_mark_dirty(f);
        }
        unpin_refs(f, static_cast<int>(n));
        i += n;
    }
}

void unpin_folios(folio** folios, unsigned long nfolios) {
    if (!folios) return;
    for (unsigned long i = 0; i < nfolios;) {
        folio* f = folios[i];
        unsigned long j = i + 1;
        while (j < nfolios && folios[j] == f) j++;
        if (f) unpin_refs(reinterpret_cast<Folio*>(f), static_cast<int>(j - i));
        i = j;
    }
}

int folio_maybe_dma_pinned(folio* f) { return f && reinterpret_cast<Folio*>(f)->maybe_dma_pinned(); }

}  // extern "C"
