// pinlab — FOLL_LONGTERM pins (upstream mm/gup.c: __gup_longterm_locked(),
// collect_longterm_unpinnable_folios(), migrate_longterm_unpinnable_folios()).
#include "gup/gup_longterm.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "debug/trace.h"
#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "gup/longterm_pinnable.h"
#include "gup/pin_accounting.h"
#include "mm/gfp.h"
#include "mm/internal.h"

namespace pl {

namespace {

// upstream's struct pages_or_folios: one pin per entry, either way.
struct PagesOrFolios {
    Page** pages = nullptr;
    Folio** folios = nullptr;
    unsigned long nr = 0;

    Folio* get(unsigned long i) const {
        if (folios) return folios[i];
        return pages[i] ? page_folio(pages[i]) : nullptr;
    }
    void clear(unsigned long i) const {
        if (folios)
            folios[i] = nullptr;
        else
            pages[i] = nullptr;
    }
    // pofs_unpin(): drop the pins of the entries not cleared yet.
    void unpin_all(Kernel& k) const {
        for (unsigned long i = 0; i < nr; ++i) {
            if (Folio* f = get(i)) gup_put_folio(k, f, 1, FOLL_PIN);
            clear(i);
        }
    }
};

// What collect() found: the folios that may not stay pinned, each held by an
// isolation reference while the pins go.
struct Collection {
    std::vector<Folio*> movable;   // LRU and hugetlb folios: upstream's movable_folio_list
    std::vector<Folio*> coherent;  // device-coherent folios, migrated one by one
    bool stuck = false;            // before v6.14: an unpinnable folio that could not be isolated
    bool empty() const { return movable.empty() && coherent.empty(); }
};

// Which of collect()'s candidates are repeats (upstream: folio_isolate_lru()
// fails on a folio that is off the LRU already). A bitmap over the candidates'
// head pfns when they lie close together, as a pinned range's folios do; open
// addressing over the folio pointers when they are scattered. Either is sized
// once per call: no allocation per folio.
class SeenFolios {
public:
    SeenFolios(const PhysMem& mem, const std::vector<Folio*>& candidates) : mem_(mem) {
        pfn_t lo = ~pfn_t{0}, hi = 0;
        for (const Folio* f : candidates) {
            const pfn_t pfn = mem.page_to_pfn(f->head());
            lo = std::min(lo, pfn);
            hi = std::max(hi, pfn);
        }
        base_ = lo;
        const uint64_t span = hi - lo + 1;
        if (span <= 64 * candidates.size() + 4096) {
            bits_.assign(static_cast<size_t>(span / 64 + 1), 0);
            return;
        }
        size_t n = 64;
        while (n < 2 * candidates.size()) n <<= 1;
        slots_.assign(n, nullptr);
        mask_ = n - 1;
    }
    // true the first time f is offered.
    bool first(const Folio* f) {
        if (!bits_.empty()) {
            const uint64_t bit = mem_.page_to_pfn(f->head()) - base_;
            uint64_t& word = bits_[static_cast<size_t>(bit / 64)];
            const uint64_t m = uint64_t{1} << (bit % 64);
            if (word & m) return false;
            word |= m;
            return true;
        }
        // struct pages are 64 bytes apart: mix the bits above those.
        size_t i = static_cast<size_t>((reinterpret_cast<uintptr_t>(f) >> 6) * 0x9E3779B97F4A7C15ULL >> 17) & mask_;
        while (slots_[i]) {
            if (slots_[i] == f) return false;
            i = (i + 1) & mask_;
        }
        slots_[i] = f;
        return true;
    }

private:
    const PhysMem& mem_;
    pfn_t base_ = 0;
    std::vector<uint64_t> bits_;
    std::vector<const Folio*> slots_;
    size_t mask_ = 0;
};

bool is_device_coherent(const PhysMem& mem, const Folio* f) {
    if (!f->is_zone_device()) return false;
    const DevPagemap* pg = mem.page_pgmap(f->head());
    return pg && pg->type == PgmapType::DeviceCoherent;
}

// On the LRU, for the model: anonymous and page-cache folios. A driver's
// own pages (a dma-buf heap's, vm_insert_page()'s) never are.
bool on_lru(const Folio* f) { return f->is_anon() || f->mapping() != nullptr; }

// collect_longterm_unpinnable_folios(): each folio once (equal neighbours are
// skipped, as upstream does; a folio that reappears later in the array is
// found by SeenFolios). The model has no per-CPU LRU batches to drain, so
// isolation is a reference. A folio that cannot be isolated (not on the LRU,
// not hugetlb, not device-coherent) stays where it is: since v6.14
// (1aaf8c122918) it is skipped and stays pinned; before, it was counted
// (stuck), the pins were dropped and retaken, and __gup_longterm_locked()
// looped forever.
Collection collect(Kernel& k, const PagesOrFolios& pofs) {
    Collection c;
    // The unpinnable folios, equal neighbours skipped; a pinnable range
    // stops here having allocated nothing.
    std::vector<Folio*> candidates;
    Folio* prev = nullptr;
    for (unsigned long i = 0; i < pofs.nr; ++i) {
        Folio* f = pofs.get(i);
        if (!f || f == prev) continue;
        prev = f;
        if (folio_is_longterm_pinnable(*k.mem, f)) continue;
        if (candidates.empty()) candidates.reserve(pofs.nr - i);
        candidates.push_back(f);
    }
    if (candidates.empty()) return c;
    SeenFolios seen(*k.mem, candidates);
    c.movable.reserve(candidates.size());
    for (Folio* f : candidates) {
        if (!seen.first(f)) continue;
        const bool coherent = is_device_coherent(*k.mem, f);
        if (!coherent && !f->is_hugetlb() && !on_lru(f)) {
            if (!k.cfg.era_at_least(Era::current)) c.stuck = true;
            continue;
        }
        trace::decision("collect_longterm_unpinnable_folios", 0, f->head(), "not longterm-pinnable: isolated for migration");
        f->ref_add(1);  // folio_isolate_lru()/isolate_hugetlb(): a transient reference
        (coherent ? c.coherent : c.movable).push_back(f);
    }
    return c;
}

// migrate_device_coherent_folio(): one folio back to RAM, retrying a
// transient failure as migrate_pages() would.
Status migrate_coherent(Kernel& k, Folio* f) {
    Status s;
    for (int attempt = 0; attempt < 10; ++attempt) {
        s = migrate_folio(k, f, GFP_USER | __GFP_NOWARN, MigrateReason::LongtermPin);
        if (s || s.error().errnum != EAGAIN) return s;
    }
    return s;
}

// migrate_longterm_unpinnable_folios(): -EAGAIN on success (re-pin), else an
// errno; every pin is gone either way.
long migrate_unpinnable(Kernel& k, const PagesOrFolios& pofs, Collection& c) {
    // Drop every pin first: migration refuses folios with unexpected references.
    pofs.unpin_all(k);
    long ret = -EAGAIN;
    // Device-coherent folios first, as upstream's loop over the entries does.
    for (Folio* f : c.coherent) {
        if (ret == -EAGAIN) {
            trace::decision("migrate_longterm_unpinnable_folios", 0, f->head(), "migrating a device-coherent folio back to RAM");
            if (migrate_coherent(k, f)) continue;  // consumed the reference
            ret = -EBUSY;                           // migrate_device_coherent_folio() failed
        }
        k.mem->folio_put(f);
    }
    if (ret == -EAGAIN && !c.movable.empty()) {
        if (trace::on())
            for (Folio* f : c.movable)
                trace::decision("migrate_longterm_unpinnable_folios", 0, f->head(),
                                "migrating (GFP_USER target: outside ZONE_MOVABLE and CMA)");
        // migrate_pages() leaving folios behind is -ENOMEM.
        const unsigned long failed = migrate_pages(k, c.movable, GFP_USER | __GFP_NOWARN, MigrateReason::LongtermPin);
        trace::note(trace::Kind::Migrate, "migrate_longterm_unpinnable_folios", 0,
                    failed ? "migration failed" : "migrated; every pin dropped, the range is pinned again");
        if (failed) ret = -ENOMEM;
    }
    for (Folio* f : c.movable) k.mem->folio_put(f);  // putback_movable_pages(): what did not move
    return ret;
}

long check_and_migrate(Kernel& k, const PagesOrFolios& pofs) {
    Collection c = collect(k, pofs);
    if (c.empty() && !c.stuck) return 0;
    return migrate_unpinnable(k, pofs, c);
}

}  // namespace

long check_and_migrate_movable_pages(Kernel& k, Page** pages, unsigned long nr) {
    return check_and_migrate(k, PagesOrFolios{pages, nullptr, nr});
}

long check_and_migrate_movable_folios(Kernel& k, Folio** folios, unsigned long nr) {
    return check_and_migrate(k, PagesOrFolios{nullptr, folios, nr});
}

long gup_longterm_locked(MmStruct& mm, vaddr_t start, unsigned long nr_pages, Page** pages, int* locked,
                         unsigned gup_flags) {
    if (!(gup_flags & FOLL_LONGTERM)) return __get_user_pages_locked(mm, start, nr_pages, pages, locked, gup_flags);
    MemallocPinScope pin_scope;  // memalloc_pin_save()
    // Upstream loops while migration "succeeds". A folio that comes back
    // unpinnable after every round (before v6.14: one that cannot be
    // isolated, see collect()) spins forever there; the model gives up with
    // a warning.
    constexpr int kMaxRounds = 64;
    for (int round = 0; round < kMaxRounds; ++round) {
        // The caller's lock state for the first round; ours afterwards.
        long nr_pinned = __get_user_pages_locked(mm, start, nr_pages, pages, locked, gup_flags);
        if (nr_pinned <= 0) return nr_pinned;
        long rc = check_and_migrate_movable_pages(mm.kernel, pages, static_cast<unsigned long>(nr_pinned));
        trace::longterm_round(round, start, nr_pinned, rc);
        if (rc == 0) return nr_pinned;
        if (rc != -EAGAIN) return rc;
    }
    mm.kernel.warn("__gup_longterm_locked",
                   "range at " + std::to_string(start) + " still not longterm-pinnable after " +
                       std::to_string(kMaxRounds) + " migration rounds");
    return -ENOMEM;
}

}  // namespace pl
