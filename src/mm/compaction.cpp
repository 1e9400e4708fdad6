// pinlab — memory compaction (upstream mm/compaction.c, much reduced).
//
// Upstream runs two scanners over a zone: the migration scanner isolates
// movable folios from the bottom, the free scanner collects free pages from
// the top to migrate them to, until the scanners meet. The model works per
// aligned range instead:
//  * compact_zone_order() (direct compaction, PhysMem's hook when an
//    allocation of `order` fails): among the 2^order-aligned ranges of the
//    zone whose allocated folios are all movable (anonymous or page-cache,
//    not hugetlb, reserved, ZONE_DEVICE, secretmem, locked, under writeback
//    or possibly pinned), it empties the ones with the fewest pages in use
//    first, until a free block of `order` exists;
//  * compact_memory() (/proc/sys/vm/compact_memory): per zone, it picks the
//    partially used, all-movable pageblocks with the fewest pages in use
//    while the holes in the other partially used pageblocks can take their
//    folios, and empties them.
// Migration targets come from PhysMem::alloc_folio_in() in the same zone.
// physmem has no MIGRATE_ISOLATE support for a range, so a target that the
// buddy allocator happens to place inside a range being emptied (or, for
// compact_memory(), inside a pageblock that was entirely free) is held aside
// and freed when the pass ends: the range's free pages are taken out of play
// for the duration of the pass, which is what isolation achieves upstream.
// Free pages are known from PhysMem::free_blocks(); a folio occupying a pfn
// from its struct page (compound_head, order). Order-0 requests never
// compact (upstream compacts only for costly orders and order > 0).
#include <algorithm>
#include <vector>

#include "mm/internal.h"

namespace pl {

namespace {

constexpr size_t kMaxDirectAttempts = 4;         // ranges tried per compact_zone_order()
constexpr size_t kMaxTargetAttempts = 1u << 12;  // allocations per target before giving up

struct ZoneSpan {
    pfn_t start = 0;
    pfn_t end = 0;
};

ZoneSpan zone_span(const PhysMem& mem, ZoneId zone) {
    const pfn_t movable = mem.zone_stats(ZoneId::Movable).present_pages;
    const pfn_t normal_end = mem.ram_pages() - movable;
    if (zone == ZoneId::Normal) return {0, normal_end};
    if (zone == ZoneId::Movable) return {normal_end, mem.ram_pages()};
    return {};
}

// The zone's free blocks as sorted [start, end) intervals.
class FreeMap {
public:
    FreeMap(const PhysMem& mem, ZoneId zone) {
        for (auto [pfn, order] : mem.free_blocks(zone)) iv_.emplace_back(pfn, pfn + (pfn_t{1} << order));
        // free_blocks() is sorted by pfn.
    }
    // One past the free interval containing pfn, or 0 when pfn is not free.
    pfn_t free_end(pfn_t pfn) const {
        auto it = std::upper_bound(iv_.begin(), iv_.end(), pfn,
                                   [](pfn_t v, const std::pair<pfn_t, pfn_t>& i) { return v < i.first; });
        if (it == iv_.begin()) return 0;
        --it;
        return pfn < it->second ? it->second : 0;
    }
    bool has_block_of(unsigned order) const {
        for (auto& [s, e] : iv_)
            if (e - s >= (pfn_t{1} << order)) return true;
        return false;
    }
    uint64_t free_pages() const {
        uint64_t n = 0;
        for (auto& [s, e] : iv_) n += e - s;
        return n;
    }

private:
    std::vector<std::pair<pfn_t, pfn_t>> iv_;
};

// Can compaction move this folio? (isolate_migratepages_block()'s checks.)
bool folio_movable(const PhysMem& mem, const Folio* f) {
    if (f->ref_count() <= 0) return false;  // free, frozen or a withheld (poisoned) frame
    if (f->test(PG_buddy) || f->is_hugetlb() || f->is_reserved() || f->is_zone_device()) return false;
    if (mem.is_any_zero_folio(f)) return false;
    if (f->test(PG_secretmem) || f->is_writeback() || f->is_locked() || PageHWPoison(f->head())) return false;
    if (!f->is_anon() && !f->mapping()) return false;  // kernel/driver pages: not on the LRU
    if (f->maybe_dma_pinned()) return false;
    return true;
}

struct Range {
    pfn_t start = 0;
    pfn_t end = 0;
    unsigned long used = 0;      // pages of allocated folios
    std::vector<pfn_t> heads;    // those folios' head pfns
};

// Scans [r.start, r.end): false when something unmovable is in the way.
bool scan_range(const PhysMem& mem, const FreeMap& fm, Range& r) {
    pfn_t pfn = r.start;
    while (pfn < r.end) {
        if (pfn_t fe = fm.free_end(pfn)) {
            pfn = fe;
            continue;
        }
        Page* p = mem.pfn_to_page(pfn);
        Page* h = compound_head(p);
        const pfn_t hp = mem.page_to_pfn(h);
        if (hp != pfn) return false;  // a folio reaching in from below (or a changing one)
        const Folio* f = Folio::of(h);
        const unsigned long n = f->nr_pages();
        if (hp + n > r.end) return false;
        if (!folio_movable(mem, f)) return false;
        r.used += n;
        r.heads.push_back(hp);
        pfn = hp + n;
    }
    return true;
}

// Migrates folios out of ranges, with targets allocated where `avoid` says
// they may go.
class Evacuator {
public:
    Evacuator(Kernel& k, ZoneId zone) : k_(k), mem_(*k.mem), zone_(zone) {}
    ~Evacuator() {
        for (Folio* f : held_) mem_.folio_put(f);
    }
    Evacuator(const Evacuator&) = delete;
    Evacuator& operator=(const Evacuator&) = delete;

    // Ranges no target may be placed in (disjoint).
    void avoid(pfn_t start, pfn_t end) {
        avoid_.emplace_back(start, end);
        sorted_ = false;
    }
    bool exhausted() const { return exhausted_; }

    // Empties r; returns how many folios moved, *complete when nothing of
    // what the scan found is left behind.
    long evacuate(const Range& r, bool* complete) {
        long moved = 0;
        *complete = true;
        for (pfn_t hp : r.heads) {
            Page* p = mem_.pfn_to_page(hp);
            Folio* f = Folio::of(p);
            if (!f->ref_try_add(1)) continue;  // freed (or frozen by a migration) meanwhile
            if (PageTail(p) || page_folio(p) != f || !folio_movable(mem_, f)) {
                mem_.folio_put(f);
                *complete = false;
                break;
            }
            Status s = migrate_folio_to(
                k_, f, [this](Folio* src) { return target(src); }, MigrateReason::Compaction);
            if (!s) {
                mem_.folio_put(f);
                *complete = false;
                break;
            }
            ++moved;
        }
        return moved;
    }

private:
    bool avoided(pfn_t pfn, unsigned long n) {
        if (!sorted_) {
            std::sort(avoid_.begin(), avoid_.end());
            sorted_ = true;
        }
        // The first range ending above pfn is the only one that can overlap.
        auto it = std::upper_bound(avoid_.begin(), avoid_.end(), pfn,
                                   [](pfn_t v, const std::pair<pfn_t, pfn_t>& r) { return v < r.second; });
        return it != avoid_.end() && it->first < pfn + n;
    }

    // compaction_alloc(): a free folio of src's order outside the avoided ranges.
    Result<Folio*> target(Folio* src) {
        if (exhausted_) return Error(ENOMEM);
        const unsigned order = src->order();
        gfp_t gfp = GFP_HIGHUSER_MOVABLE | __GFP_NORETRY | __GFP_NOWARN | (order ? __GFP_COMP : 0);
        for (size_t i = 0; i < kMaxTargetAttempts; ++i) {
            auto r = mem_.alloc_folio_in(zone_, order, gfp);
            if (!r) break;
            if (!avoided(mem_.page_to_pfn((*r)->head()), (*r)->nr_pages())) return r;
            held_.push_back(*r);  // a free page of a range being emptied: keep it out of play
        }
        exhausted_ = true;
        return Error(ENOMEM);
    }

    Kernel& k_;
    PhysMem& mem_;
    const ZoneId zone_;
    std::vector<std::pair<pfn_t, pfn_t>> avoid_;
    std::vector<Folio*> held_;
    bool sorted_ = true;
    bool exhausted_ = false;
};

// The candidate ranges of size 2^order: all-movable, partly used.
std::vector<Range> candidates(const PhysMem& mem, const FreeMap& fm, ZoneSpan zs, unsigned order,
                              std::vector<Range>* empty = nullptr) {
    std::vector<Range> out;
    const pfn_t size = pfn_t{1} << order;
    for (pfn_t s = (zs.start + size - 1) & ~(size - 1); s + size <= zs.end; s += size) {
        // A range inside one free block needs no scan.
        if (pfn_t fe = fm.free_end(s); fe >= s + size) {
            if (empty) empty->push_back(Range{s, s + size, 0, {}});
            continue;
        }
        Range r{s, s + size, 0, {}};
        if (!scan_range(mem, fm, r)) continue;
        if (r.used == 0) {
            if (empty) empty->push_back(std::move(r));
            continue;
        }
        out.push_back(std::move(r));
    }
    std::stable_sort(out.begin(), out.end(), [](const Range& a, const Range& b) { return a.used < b.used; });
    return out;
}

}  // namespace

bool compact_zone_order(void* ctx, ZoneId zone, unsigned order) {
    auto& k = *static_cast<Kernel*>(ctx);
    PhysMem& mem = *k.mem;
    if (order == 0 || order > MAX_ORDER || zone == ZoneId::Device) return false;
    const ZoneSpan zs = zone_span(mem, zone);
    if (zs.end - zs.start < (pfn_t{1} << order)) return false;
    FreeMap fm(mem, zone);
    if (fm.has_block_of(order)) return true;  // freed meanwhile: retry the allocation
    // compaction_suitable(): the zone must hold enough free pages at all.
    if (fm.free_pages() < (pfn_t{1} << order)) {
        k.vmstat.add(Vmstat::compact_fail);
        return false;
    }
    std::vector<Range> cands = candidates(mem, fm, zs, order);
    bool ok = false;
    for (size_t i = 0; i < cands.size() && i < kMaxDirectAttempts && !ok; ++i) {
        bool complete = false, exhausted = false;
        {
            Evacuator ev(k, zone);
            ev.avoid(cands[i].start, cands[i].end);
            (void)ev.evacuate(cands[i], &complete);
            exhausted = ev.exhausted();
        }  // the free pages held inside the range go back here and merge
        if (complete) ok = FreeMap(mem, zone).has_block_of(order);
        else if (exhausted) break;
    }
    k.vmstat.add(ok ? Vmstat::compact_success : Vmstat::compact_fail);
    return ok;
}

void compaction_init(Kernel& k) { k.mem->set_compactor(&compact_zone_order, &k); }

long compact_memory(Kernel& k) {
    PhysMem& mem = *k.mem;
    long moved = 0;
    for (ZoneId zone : {ZoneId::Normal, ZoneId::Movable}) {
        const ZoneSpan zs = zone_span(mem, zone);
        if (zs.end - zs.start < pageblock_nr_pages) continue;
        FreeMap fm(mem, zone);
        std::vector<Range> empty;
        std::vector<Range> cands = candidates(mem, fm, zs, pageblock_order, &empty);
        if (cands.size() < 2) continue;  // nothing to consolidate into
        // Choose the pageblocks to empty: the least used first, while the
        // holes of the partly used pageblocks left can take their folios.
        uint64_t holes = 0;
        for (const Range& r : cands) holes += pageblock_nr_pages - r.used;
        size_t nsrc = 0;
        uint64_t need = 0;
        while (nsrc < cands.size()) {
            const Range& r = cands[nsrc];
            uint64_t holes_left = holes - (pageblock_nr_pages - r.used);  // r's own holes do not count
            if (need + r.used > holes_left) break;
            need += r.used;
            holes = holes_left;
            ++nsrc;
        }
        if (nsrc == 0) {
            k.vmstat.add(Vmstat::compact_fail);
            continue;
        }
        Evacuator ev(k, zone);
        for (size_t i = 0; i < nsrc; ++i) ev.avoid(cands[i].start, cands[i].end);
        for (const Range& r : empty) ev.avoid(r.start, r.end);  // do not break up free pageblocks
        long zone_moved = 0;
        size_t emptied = 0;
        for (size_t i = 0; i < nsrc && !ev.exhausted(); ++i) {
            bool complete = false;
            zone_moved += ev.evacuate(cands[i], &complete);
            if (complete) ++emptied;
        }
        moved += zone_moved;
        k.vmstat.add(emptied ? Vmstat::compact_success : Vmstat::compact_fail);
    }
    return moved;
}

}  // namespace pl
