// pinlab — FOLL_LONGTERM pins (upstream mm/gup.c: __gup_longterm_locked(),
// collect_longterm_unpinnable_folios(), migrate_longterm_unpinnable_folios()).
#include "gup/gup_longterm.h"

#include <cerrno>
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

// One unpinnable folio, held by an isolation reference while its pins go.
struct Collected {
    Folio* folio;
    bool device_coherent;
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
// found by the list check). The model has no per-CPU LRU batches to drain, so
// isolation is a reference. A folio that cannot be isolated (not on the LRU,
// not hugetlb, not device-coherent) stays where it is: since v6.14
// (1aaf8c122918) it is skipped and stays pinned; before, it was counted
// (*stuck), the pins were dropped and retaken, and __gup_longterm_locked()
// looped forever.
std::vector<Collected> collect(Kernel& k, const PagesOrFolios& pofs, bool* stuck) {
    std::vector<Collected> out;
    Folio* prev = nullptr;
    for (unsigned long i = 0; i < pofs.nr; ++i) {
        Folio* f = pofs.get(i);
        if (!f || f == prev) continue;
        prev = f;
        if (folio_is_longterm_pinnable(*k.mem, f)) continue;
        bool seen = false;
        for (const auto& c : out) seen |= c.folio == f;
        if (seen) continue;
        const bool coherent = is_device_coherent(*k.mem, f);
        if (!coherent && !f->is_hugetlb() && !on_lru(f)) {
            if (!k.cfg.era_at_least(Era::current)) *stuck = true;
            continue;
        }
        trace::decision("collect_longterm_unpinnable_folios", 0, f->head(), "not longterm-pinnable: isolated for migration");
        f->ref_add(1);  // folio_isolate_lru()/isolate_hugetlb(): a transient reference
        out.push_back({f, coherent});
    }
    return out;
}

// migrate_pages(MIGRATE_SYNC) retries a transient failure a few times.
Status migrate_with_retries(Kernel& k, Folio* f) {
    Status s;
    for (int attempt = 0; attempt < 10; ++attempt) {
        // GFP_USER: the target is born outside ZONE_MOVABLE and CMA.
        s = migrate_folio(k, f, GFP_USER | __GFP_NOWARN, MigrateReason::LongtermPin);
        if (s || s.error().errnum != EAGAIN) return s;
    }
    return s;
}

// migrate_longterm_unpinnable_folios(): -EAGAIN on success (re-pin), else an
// errno; every pin is gone either way.
long migrate_unpinnable(Kernel& k, const PagesOrFolios& pofs, std::vector<Collected>& list) {
    // Drop every pin first: migration refuses folios with unexpected references.
    pofs.unpin_all(k);
    long ret = -EAGAIN;
    for (auto& c : list) {
        if (ret != -EAGAIN) {
            k.mem->folio_put(c.folio);  // putback_movable_pages()
            continue;
        }
        trace::decision("migrate_longterm_unpinnable_folios", 0, c.folio->head(), "migrating (GFP_USER target: outside ZONE_MOVABLE and CMA)");
        Status s = migrate_with_retries(k, c.folio);  // consumes the reference on success
        trace::note(trace::Kind::Migrate, "migrate_longterm_unpinnable_folios", 0, s ? "migrated; every pin dropped, the range is pinned again" : "migration failed");
        if (!s) {
            k.mem->folio_put(c.folio);
            // migrate_device_coherent_folio() failing is -EBUSY; migrate_pages()
            // leaving folios behind is -ENOMEM.
            ret = c.device_coherent ? -EBUSY : -ENOMEM;
        }
    }
    return ret;
}

long check_and_migrate(Kernel& k, const PagesOrFolios& pofs) {
    bool stuck = false;
    std::vector<Collected> list = collect(k, pofs, &stuck);
    if (list.empty() && !stuck) return 0;
    return migrate_unpinnable(k, pofs, list);
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
