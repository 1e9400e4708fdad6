// pinlab — the invariant checker (see invariants.h for the list).
//
// Accounting conventions it relies on (the rest of the model's contract):
//  * every present PTE/PMD/PUD leaf whose page vm_normal_page{,_huge}()
//    returns holds one folio reference and one mapcount (PTE: the page's
//    _mapcount; PMD/PUD: the folio's _entire_mapcount), except devmap
//    entries made by vmf_insert_pfn*/vmf_insert_mixed() (pte_devmap: no
//    reference, no mapcount, as upstream before v6.15), which are skipped;
//  * the page cache holds folio_nr_pages() references per cached folio
//    (hugetlb folios too), an fsdax file one per block in dax_blocks;
//  * every other reference is in the kernel's reference ledger;
//  * non-present leaves are hwpoison entries or (only while a migration is
//    in flight, so never here) migration entries; neither holds a reference.
#include "debug/invariants.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <set>
#include <unordered_map>
#include <vector>

#include "fs/inode.h"
#include "mm/anon_vma.h"
#include "mm/internal.h"

namespace pl {

using namespace pte;

namespace {

constexpr size_t kMaxReports = 24;
constexpr vaddr_t kWalkEnd = vaddr_t{1} << 48;  // the whole 4-level address space

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

const char* level_name(PtLevel l) {
    switch (l) {
        case PtLevel::Pte: return "pte";
        case PtLevel::Pmd: return "pmd";
        case PtLevel::Pud: return "pud";
        default: return "pgd";
    }
}

// Where a folio was first seen, for messages.
struct Where {
    enum Kind : uint8_t { None, Map, Cache, Dax, Ledger } kind = None;
    uint64_t mm = 0;
    vaddr_t vstart = 0, vend = 0, addr = 0;
    uint64_t ino = 0;
    pgoff_t index = 0;
};

struct FolioInfo {
    long ptes = 0;              // PTE leaves mapping any page of the folio
    long entire = 0;            // PMD/PUD leaves mapping the folio
    std::vector<int> per_page;  // PTE leaves per page (large folios, sized on first use)
    long cache_refs = 0;
    long file_refs = 0;
    long ledger = 0;
    Where where;
};

class Checker {
public:
    explicit Checker(Kernel& k) : k_(k), mem_(*k.mem) {}

    Status run(std::string* why) {
        walk_page_tables();
        walk_page_caches();
        walk_ledger();
        check_folios();
        check_leaks();
        check_vmstat();
        if (reports_.empty()) return ok_status();
        if (why) {
            std::string s;
            for (size_t i = 0; i < reports_.size(); ++i) {
                if (i) s += "; ";
                s += reports_[i];
            }
            if (dropped_) s += fmt("; ... and %zu more", dropped_);
            *why = std::move(s);
        }
        return Error(EUCLEAN);
    }

private:
    void report(std::string s) {
        if (reports_.size() < kMaxReports) reports_.push_back(std::move(s));
        else ++dropped_;
    }

    pfn_t pfn_of(const Page* p) const { return mem_.page_to_pfn(p); }

    std::string describe(const Folio* f, const FolioInfo& fi) const {
        std::string s = fmt("folio pfn %#" PRIx64 " (order %u%s%s%s)", pfn_of(f->head()), f->order(),
                            f->is_anon() ? ", anon" : f->mapping() ? ", file" : "", f->is_hugetlb() ? ", hugetlb" : "",
                            f->is_zone_device() ? ", device" : "");
        const Where& w = fi.where;
        switch (w.kind) {
            case Where::Map:
                s += fmt(" mapped in mm %" PRIu64 " VMA [%#" PRIx64 ", %#" PRIx64 ") at %#" PRIx64, w.mm, w.vstart,
                         w.vend, w.addr);
                break;
            case Where::Cache: s += fmt(" cached by inode %" PRIu64 " at index %" PRIu64, w.ino, w.index); break;
            case Where::Dax: s += fmt(" fsdax block of inode %" PRIu64 " at index %" PRIu64, w.ino, w.index); break;
            case Where::Ledger: s += " held through the reference ledger"; break;
            case Where::None: break;
        }
        return s;
    }

    // The description of a folio, formatted only when a report needs it.
    struct Who {
        const Checker* c;
        const Folio* f;
        const FolioInfo* fi;
        std::string operator()() const { return c->describe(f, *fi); }
    };

    FolioInfo& info(Folio* f, const Where& w) {
        auto [it, fresh] = folios_.try_emplace(f);
        if (fresh) it->second.where = w;
        return it->second;
    }

    // A frame that is free: on the buddy lists, or with no reference at all
    // (free ZONE_DEVICE page, free hugetlb pool folio, withheld frame).
    bool freed(const Folio* f) const { return f->test(PG_buddy) || f->ref_count() <= 0; }

    // --- page tables ----------------------------------------------------------------------
    void walk_page_tables() {
        for (MmStruct* mm : k_.mms()) {
            sync::ReadGuard ml(mm->mmap_lock);
            std::set<std::pair<Vma*, AnonVma*>> anon_links;
            {
                sync::SpinGuard ptl(mm->page_table_lock);
                mm->pgtable.for_each_leaf(0, kWalkEnd, [&](vaddr_t a, PtLevel level, entry_t* slot) {
                    check_leaf(*mm, a, level, sync::load(*slot), anon_links);
                });
            }
            // anon_vma locks rank above the page_table_lock: checked now.
            for (auto [vma, av] : anon_links) {
                sync::ReadGuard g(av->lock);
                if (std::find(av->vmas.begin(), av->vmas.end(), vma) == av->vmas.end())
                    report(fmt("anon_vma: mm %" PRIu64 " VMA [%#" PRIx64 ", %#" PRIx64
                               ") maps anonymous folios of anon_vma %p but is not on its list",
                               mm->id, vma->start, vma->end, static_cast<void*>(av)));
            }
        }
    }

    void check_leaf(MmStruct& mm, vaddr_t a, PtLevel level, entry_t e,
                    std::set<std::pair<Vma*, AnonVma*>>& anon_links) {
        const uint64_t span = uint64_t{1} << level_shift(level);
        auto at = [&] {
            return fmt("mm %" PRIu64 " %s at %#" PRIx64 " (%s)", mm.id, level_name(level), a, pte::describe(e).c_str());
        };
        if (level == PtLevel::Pgd) {
            report("page table: a leaf at PGD level: " + at());
            return;
        }
        Vma* vma = mm.vma_lookup(a);
        if (!vma || a + span > vma->end)
            report("page table: entry outside any VMA: " + at() +
                   (vma ? fmt(" overruns VMA [%#" PRIx64 ", %#" PRIx64 ")", vma->start, vma->end) : std::string()));
        if (!present(e)) {
            if (is_swap(e) && swp_type(e) == SwpType::Hwpoison) {
                Page* p = mem_.pfn_to_page(pte::pfn(e));
                if (!p || !PageHWPoison(p)) report("page table: hwpoison entry for a frame not marked PG_hwpoison: " + at());
            } else if (is_migration(e)) {
                report("page table: migration entry left behind (no migration is in flight): " + at());
            } else {
                report("page table: non-present entry that is not a valid swap-style entry: " + at());
            }
            return;
        }
        if (level != PtLevel::Pte && !huge(e)) report("page table: PMD/PUD leaf without pte::HUGE: " + at());
        if (level == PtLevel::Pte && (e & TABLE)) report("page table: PTE with the TABLE bit: " + at());
        if (!vma) return;
        Page* page = level == PtLevel::Pte ? vm_normal_page(*vma, a, e) : vm_normal_page_huge(*vma, a, e, level);
        if (!page || !mem_.owns(page) || devmap(e)) return;
        Folio* folio = page_folio(page);
        if (mem_.is_any_zero_folio(folio)) return;
        if (freed(folio)) {
            report(fmt("page table: entry points at a freed frame (pfn %#" PRIx64 ": refcount %d%s%s): ",
                       pfn_of(page), folio->ref_count(), folio->test(PG_buddy) ? ", PG_buddy" : "",
                       folio->is_hugetlb() ? ", hugetlb free pool" : "") +
                   at());
            return;
        }
        if (level != PtLevel::Pte &&
            (page != folio->head() || folio->order() != level_shift(level) - PAGE_SHIFT)) {
            report(fmt("page table: huge leaf maps pfn %#" PRIx64 " of a folio of order %u at pfn %#" PRIx64 ": ",
                       pfn_of(page), folio->order(), pfn_of(folio->head())) +
                   at());
            return;
        }
        FolioInfo& fi = info(folio, Where{Where::Map, mm.id, vma->start, vma->end, a, 0, 0});
        if (level == PtLevel::Pte) {
            ++fi.ptes;
            if (folio->is_large()) {
                if (fi.per_page.empty()) fi.per_page.assign(folio->nr_pages(), 0);
                ++fi.per_page[folio->page_index(page)];
            }
        } else {
            ++fi.entire;
        }
        if (folio->is_anon()) {
            AnonVma* av = folio->anon_vma();
            if (!av) report("anon_vma: anonymous folio without an anon_vma: " + at());
            else anon_links.emplace(vma, av);
            Page* flag_page = level == PtLevel::Pte ? page : folio->head();
            if (write(e) && !PageAnonExclusive(flag_page))
                report(fmt("PageAnonExclusive: writable mapping of anonymous pfn %#" PRIx64
                           " without PageAnonExclusive: ",
                           pfn_of(flag_page)) +
                       at());
        }
    }

    // --- page caches and fsdax blocks ---------------------------------------------------------
    void walk_page_caches() {
        for (Inode* inode : k_.inodes()) {
            AddressSpace& m = inode->mapping;
            {
                sync::SpinGuard g(m.i_pages_lock);
                for (auto& [idx, f] : m.i_pages) {
                    auto at = [&, idx = idx, f = f] {
                        return fmt("inode %" PRIu64 " index %" PRIu64 " pfn %#" PRIx64, inode->ino, idx,
                                   pfn_of(f->head()));
                    };
                    if (f->mapping() != &m)
                        report("page cache: folio's mapping is not its file's (" + at() +
                               fmt(", mapping %#" PRIxPTR ")", f->raw_mapping()));
                    if (f->index() != idx)
                        report("page cache: folio's index disagrees with its slot (" + at() +
                               fmt(", index %" PRIu64 ")", f->index()));
                    if (freed(f)) {
                        report("page cache: cached folio is a freed frame (" + at() +
                               fmt(", refcount %d)", f->ref_count()));
                        continue;
                    }
                    for (unsigned long i = 0; i < f->nr_pages(); ++i)
                        if (PageAnonExclusive(f->page(i)))
                            report("PageAnonExclusive: set on a page-cache page (" + at() + fmt(", page %lu)", i));
                    FolioInfo& fi = info(f, Where{Where::Cache, 0, 0, 0, 0, inode->ino, idx});
                    fi.cache_refs += static_cast<long>(f->nr_pages());
                }
            }
            if (inode->traits().dax) {
                sync::SpinGuard g(inode->dax_lock);
                for (auto& [idx, pfn] : inode->dax_blocks) {
                    Page* p = mem_.pfn_to_page(pfn);
                    auto at = [&, idx = idx, pfn = pfn] {
                        return fmt("inode %" PRIu64 " index %" PRIu64 " pfn %#" PRIx64, inode->ino, idx, pfn);
                    };
                    if (!p) {
                        report("fsdax: block without a struct page (" + at() + ")");
                        continue;
                    }
                    Folio* f = page_folio(p);
                    if (freed(f)) {
                        report("fsdax: block is a freed frame (" + at() + ")");
                        continue;
                    }
                    if (f->mapping() != &m || f->index() != idx)
                        report("fsdax: block's mapping/index disagree with the file (" + at() + ")");
                    FolioInfo& fi = info(f, Where{Where::Dax, 0, 0, 0, 0, inode->ino, idx});
                    fi.file_refs += 1;
                }
            }
        }
    }

    void walk_ledger() {
        for (const std::string& a : k_.ledger_anomalies()) report(a);
        for (auto& [cf, n] : k_.ref_ledger_snapshot()) {
            Folio* f = const_cast<Folio*>(cf);
            if (!mem_.owns(f->head())) {
                report(fmt("ledger: entry for %p, which is no struct page", static_cast<const void*>(cf)));
                continue;
            }
            if (PageTail(f->head())) {
                report(fmt("ledger: %ld references noted on pfn %#" PRIx64 ", a tail page", n, pfn_of(f->head())));
                continue;
            }
            if (n < 0) report(fmt("ledger: negative count %ld for pfn %#" PRIx64, n, pfn_of(f->head())));
            FolioInfo& fi = info(f, Where{Where::Ledger, 0, 0, 0, 0, 0, 0});
            fi.ledger += n;
        }
    }

    // --- per folio -------------------------------------------------------------------------------
    void check_folios() {
        for (auto& [f, fi] : folios_) {
            if (mem_.is_huge_zero_folio(f)) {
                // Its mappings hold no reference (vm_normal_page_pmd() skips
                // it); GUP's pins and GETs on it do, noted in the ledger.
                if (f->ref_count() != 1 + fi.ledger)
                    report(fmt("refcount: huge zero folio at %d but 1 + %ld ledger expected", f->ref_count(),
                               fi.ledger));
                continue;
            }
            if (mem_.is_zero_folio(f)) continue;
            const Who who{this, f, &fi};
            if (freed(f)) {
                if (fi.where.kind == Where::Ledger)
                    report(fmt("refcount: %ld ledger references on a freed frame: ", fi.ledger) + who());
                continue;  // mapped/cached freed frames were reported where found
            }
            check_mapcounts(f, fi, who);
            const long expected = fi.ptes + fi.entire + fi.cache_refs + fi.file_refs + fi.ledger;
            if (f->ref_count() != expected)
                report(fmt("refcount: %d but %ld expected (%ld PTE + %ld PMD/PUD mappings, %ld page-cache, %ld fsdax, "
                           "%ld ledger): ",
                           f->ref_count(), expected, fi.ptes, fi.entire, fi.cache_refs, fi.file_refs, fi.ledger) +
                       who());
            check_anon_exclusive(f, fi, who);
            if (mem_.page_to_pfn(f->head()) < mem_.ram_pages() && !f->is_hugetlb())
                reached_pages_ += f->nr_pages();
        }
    }

    void check_mapcounts(Folio* f, const FolioInfo& fi, const Who& who) {
        if (!f->is_large()) {
            int mc = sync::load(f->head()->mapcount);
            if (mc != fi.ptes) report(fmt("mapcount: %d but %ld PTEs map the page: ", mc, fi.ptes) + who());
            return;
        }
        const unsigned long n = f->nr_pages();
        long with_pte = 0;
        size_t bad_pages = 0;
        for (unsigned long i = 0; i < n; ++i) {
            int want = fi.per_page.empty() ? 0 : fi.per_page[i];
            int mc = sync::load(f->page(i)->mapcount);
            if (want) ++with_pte;
            if (mc != want && bad_pages++ < 3)
                report(fmt("mapcount: page %lu (pfn %#" PRIx64 ") has %d but %d PTEs map it: ", i,
                           pfn_of(f->page(i)), mc, want) +
                       who());
        }
        if (bad_pages > 3) report(fmt("mapcount: %zu pages wrong in all: ", bad_pages) + who());
        if (f->entire_mapcount() != fi.entire)
            report(fmt("entire_mapcount: %d but %ld PMD/PUD leaves map the folio: ", f->entire_mapcount(), fi.entire) +
                   who());
        if (f->large_mapcount() != fi.ptes + fi.entire)
            report(fmt("large_mapcount: %d but %ld mappings (%ld PTE + %ld PMD/PUD): ", f->large_mapcount(),
                       fi.ptes + fi.entire, fi.ptes, fi.entire) +
                   who());
        if (f->nr_pages_mapped() != with_pte)
            report(fmt("nr_pages_mapped: %d but %ld pages are PTE-mapped: ", f->nr_pages_mapped(), with_pte) + who());
    }

    void check_anon_exclusive(Folio* f, const FolioInfo& fi, const Who& who) {
        if (fi.ptes == 0 && fi.entire == 0) return;  // only mapped pages carry a meaningful flag
        const bool anon = f->is_anon();
        if (fi.entire > 0 && PageAnonExclusive(f->head())) {
            if (!anon) report("PageAnonExclusive: set on a page that is not anonymous: " + who());
            else if (fi.entire != 1 || fi.ptes != 0)
                report(fmt("PageAnonExclusive: on the head of a folio with %ld PMD/PUD and %ld PTE mappings: ",
                           fi.entire, fi.ptes) +
                       who());
        }
        if (fi.ptes == 0) return;
        const unsigned long n = f->nr_pages();
        for (unsigned long i = 0; i < n; ++i) {
            int maps = f->is_large() ? fi.per_page[i] : static_cast<int>(fi.ptes);
            if (maps == 0 || !PageAnonExclusive(f->page(i))) continue;
            if (!anon) {
                report(fmt("PageAnonExclusive: set on mapped page %lu that is not anonymous: ", i) + who());
                break;
            }
            if (maps != 1 || fi.entire != 0) {
                report(fmt("PageAnonExclusive: page %lu (pfn %#" PRIx64 ") has it but %d PTE and %ld PMD/PUD "
                           "mappings: ",
                           i, pfn_of(f->page(i)), maps, fi.entire) +
                       who());
                break;
            }
        }
    }

    // --- leaks -----------------------------------------------------------------------------------
    void check_leaks() {
        uint64_t pool = 0;
        for (HugeSize s : {HugeSize::Size2M, HugeSize::Size1G})
            pool += mem_.hugetlb_stats(s).nr << huge_order(s);
        uint64_t zero = mem_.zero_folio() ? mem_.zero_folio()->nr_pages() : 0;
        if (mem_.huge_zero_folio()) zero += mem_.huge_zero_folio()->nr_pages();
        // Poisoned frames that were freed: physmem keeps them off the buddy lists.
        uint64_t withheld = 0;
        for (pfn_t pfn : hwpoisoned_pfns(k_)) {
            if (pfn >= mem_.ram_pages()) continue;
            Page* p = mem_.pfn_to_page(pfn);
            if (PageHWPoison(p) && !PageTail(p) && !test_bit(p, PG_buddy) && sync::load(p->refcount) == 0 &&
                !test_bit(p, PG_hugetlb))
                ++withheld;
        }
        const uint64_t accounted = reached_pages_ + pool + zero + withheld;
        const uint64_t allocated = mem_.nr_allocated_pages();
        if (allocated != accounted)
            report(fmt("leak: %" PRIu64 " RAM pages allocated but %" PRIu64 " accounted for (%" PRIu64
                       " in mapped/cached/ledger folios, %" PRIu64 " hugetlb pool, %" PRIu64 " zero pages, %" PRIu64
                       " poisoned): %s %" PRId64 " pages",
                       allocated, accounted, reached_pages_, pool, zero, withheld,
                       allocated > accounted ? "leaked" : "over-counted",
                       static_cast<int64_t>(allocated > accounted ? allocated - accounted : accounted - allocated)));
    }

    void check_vmstat() {
        int64_t acq = k_.vmstat.get(Vmstat::nr_foll_pin_acquired);
        int64_t rel = k_.vmstat.get(Vmstat::nr_foll_pin_released);
        if (acq < rel)
            report(fmt("vmstat: nr_foll_pin_released %" PRId64 " exceeds nr_foll_pin_acquired %" PRId64, rel, acq));
    }

    Kernel& k_;
    PhysMem& mem_;
    std::unordered_map<Folio*, FolioInfo> folios_;
    uint64_t reached_pages_ = 0;
    std::vector<std::string> reports_;
    size_t dropped_ = 0;
};

}  // namespace

Status check_invariants(Kernel& k, std::string* why) { return Checker(k).run(why); }

}  // namespace pl
