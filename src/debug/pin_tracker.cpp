// pinlab — the pin tracker (see the header).
#include "debug/pin_tracker.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gup/foll_flags.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/folio.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

namespace pl {

namespace {

thread_local const PinOwnerScope* t_scope = nullptr;
thread_local const char* t_entry = nullptr;  // the outermost GUP entry call
thread_local uint64_t t_step = 0;

// PINs taken by one owner at one step with the same flags.
struct PinRec {
    const char* owner;  // a PinOwnerScope's owner, or the GUP entry point
    const char* site;   // the scope's call site (may be null)
    const char* entry;  // the GUP entry point (may be null)
    unsigned flags;
    uint64_t step;
    long pins;
    bool leaked;  // reported as a leak and quarantined
    int pid;      // the task whose GUP call took them (0: none)
};

struct Entry {
    Kernel* k = nullptr;
    long pins = 0;  // all recs' pins
    long gets = 0;  // GUP GET references not yet put (best effort: put_page() cannot tell whose ref it drops)
    const char* get_owner = nullptr;
    uint64_t get_step = 0;
    std::vector<PinRec> recs;
};

// A folio whose last recorded pin went: a further unpin is a double unpin.
struct Recent {
    Kernel* k;
    const char* owner;
    uint64_t step;
    uint64_t seq = 0;  // which fifo entry owns this record
};

constexpr size_t kShards = 16;
constexpr size_t kMaxRecent = 1024;  // per shard: memory stays bounded

struct Shard {
    std::mutex mu;  // not a model lock
    std::unordered_map<const Folio*, Entry> map;
    std::unordered_map<const Folio*, Recent> recent;
    // (folio, seq): a folio re-pinned and released again has an older entry
    // still queued, which must not evict its newer record.
    std::deque<std::pair<const Folio*, uint64_t>> recent_fifo;
    uint64_t recent_seq = 0;
};

std::array<Shard, kShards>& shards() {
    static std::array<Shard, kShards> s;
    return s;
}

size_t shard_of(const Folio* f) { return (reinterpret_cast<uintptr_t>(f) >> 6) % kShards; }
Shard& shard(const Folio* f) { return shards()[shard_of(f)]; }

struct OwnerNow {
    const char* owner;
    const char* site;
    const char* entry;
    uint64_t step;
    // Pins taken by a task's own GUP calls are that task's to release (its
    // pid); a driver's (scoped) pins belong to the driver object (0).
    int pid;
};

std::string owner_text(const char* owner, const char* site, const char* entry) {
    std::string s = owner ? owner : "unknown";
    if (site) s += std::string(":") + site;
    if (entry && (!owner || std::strcmp(owner, entry) != 0)) s += std::string(" via ") + entry;
    return s;
}

std::string hex(unsigned long v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#lx", v);
    return buf;
}

unsigned long pfn_of(Kernel& k, const Folio* f, const Page* p) {
    return k.mem->page_to_pfn(p ? p : f->head());
}

void report(Kernel& k, const char* kind, const char* where, unsigned long pfn, std::string owner, unsigned flags,
            uint64_t step, std::string message) {
    KernelReport r;
    r.kind = kind;
    r.where = where;
    r.pfn = pfn;
    r.owner = std::move(owner);
    r.flags = flags;
    r.step = step;
    r.message = std::move(message);
    k.report(std::move(r));
}

// The records a release drops: the current owner's first, then the oldest.
void drop_recs(Entry& e, long refs, const char* owner) {
    for (int pass = 0; pass < 2 && refs > 0; pass++) {
        for (auto& r : e.recs) {
            if (refs == 0) break;
            if (pass == 0 && (!owner || !r.owner || std::strcmp(owner, r.owner) != 0)) continue;
            long n = r.pins < refs ? r.pins : refs;
            r.pins -= n;
            refs -= n;
        }
    }
    std::erase_if(e.recs, [](const PinRec& r) { return r.pins == 0; });
}

// Who takes references now (see PinOwnerScope and GupCallScope).
OwnerNow owner_now(Kernel& k) {
    if (t_entry && t_step == 0) t_step = k.next_gup_step();  // a remote call made with no current task
    if (t_scope) return {t_scope->owner(), t_scope->site(), t_entry, t_step, 0};
    const Task* t = current();
    return {t_entry ? t_entry : "unknown", nullptr, t_entry, t_step, t ? t->pid : 0};
}

}  // namespace

PinOwnerScope::PinOwnerScope(const char* owner, const char* site) : owner_(owner), site_(site), prev_(nullptr) {
    prev_ = const_cast<PinOwnerScope*>(t_scope);
    t_scope = this;
}

PinOwnerScope::~PinOwnerScope() { t_scope = prev_; }

GupCallScope::GupCallScope(const char* entry) : outer_(t_entry == nullptr) {
    if (!outer_) return;
    t_entry = entry;
    t_step = 0;
    if (Task* t = current()) t_step = t->kernel.next_gup_step();
}

GupCallScope::~GupCallScope() {
    if (!outer_) return;
    t_entry = nullptr;
    t_step = 0;
}

PinTrackLock::PinTrackLock(const Folio* f) : shard_(shard_of(f)) { shards()[shard_].mu.lock(); }
PinTrackLock::~PinTrackLock() { shards()[shard_].mu.unlock(); }

void pin_track_grab_locked(Kernel& k, const Folio* f, int refs, unsigned flags) {
    Shard& sh = shard(f);
    OwnerNow o = owner_now(k);
    auto [it, inserted] = sh.map.try_emplace(f);
    Entry& e = it->second;
    e.k = &k;
    if (flags & FOLL_PIN) {
        if (inserted || e.pins == 0) sh.recent.erase(f);  // the fifo entry ages out by itself
        e.pins += refs;
        for (auto& r : e.recs) {
            if (!r.leaked && r.owner == o.owner && r.site == o.site && r.step == o.step && r.flags == flags &&
                r.pid == o.pid) {
                r.pins += refs;
                return;
            }
        }
        e.recs.push_back(PinRec{o.owner, o.site, o.entry, flags, o.step, refs, false, o.pid});
    } else {
        e.gets += refs;
        e.get_owner = o.owner;
        e.get_step = o.step;
    }
}

bool pin_track_release_locked(Kernel* k, const Folio* f, const Page* page, int refs, unsigned flags) {
    Shard& sh = shard(f);
    auto it = sh.map.find(f);
    if (!(flags & FOLL_PIN)) {
        if (it != sh.map.end() && it->second.gets > 0) {
            it->second.gets -= it->second.gets < refs ? it->second.gets : refs;
            if (it->second.gets == 0 && it->second.pins == 0) sh.map.erase(it);
        }
        return true;
    }
    const long have = it == sh.map.end() ? 0 : it->second.pins;
    if (have >= refs) {
        Entry& e = it->second;
        const PinRec last = e.recs.empty() ? PinRec{nullptr, nullptr, nullptr, 0, 0, 0, false, 0} : e.recs.back();
        e.pins -= refs;
        drop_recs(e, refs, t_scope ? t_scope->owner() : t_entry);
        if (e.pins == 0) {
            const uint64_t seq = ++sh.recent_seq;
            sh.recent[f] = Recent{e.k, last.owner, last.step, seq};
            sh.recent_fifo.emplace_back(f, seq);
            while (sh.recent_fifo.size() > kMaxRecent) {
                const auto [old, old_seq] = sh.recent_fifo.front();
                if (auto r = sh.recent.find(old); r != sh.recent.end() && r->second.seq == old_seq) sh.recent.erase(r);
                sh.recent_fifo.pop_front();
            }
            if (e.gets == 0) sh.map.erase(it);
        }
        return true;
    }
    // Releasing PINs the tracker does not hold: upstream would underflow the
    // refcount (or _pincount) and WARN later, far from the culprit.
    auto rc = sh.recent.find(f);
    if (!k && it != sh.map.end()) k = it->second.k;
    if (!k && rc != sh.recent.end()) k = rc->second.k;
    if (!k) return false;
    const unsigned long pfn = pfn_of(*k, f, page);
    const std::string who = owner_text(t_scope ? t_scope->owner() : t_entry, t_scope ? t_scope->site() : nullptr, t_entry);
    if (have > 0) {
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, 0,
               "unpin of " + std::to_string(refs) + " pins of folio at pfn " + hex(pfn) + " which holds only " +
                   std::to_string(have) + "; nothing released");
    } else if (it != sh.map.end() && it->second.gets > 0) {
        report(*k, "unpin_not_pinned", "unpin_user_page", pfn, who, flags, it->second.get_step,
               "unpin of page pfn " + hex(pfn) + " that was taken with FOLL_GET by " +
                   owner_text(it->second.get_owner, nullptr, nullptr) +
                   " (release FOLL_GET references with put_page()); nothing released");
    } else if (rc != sh.recent.end()) {
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, rc->second.step,
               "unpin of page pfn " + hex(pfn) + " whose pins were all released already; nothing released");
    } else {
        report(*k, "unpin_not_pinned", "unpin_user_page", pfn, who, flags, 0,
               "unpin of page pfn " + hex(pfn) + " that is not pinned; nothing released");
    }
    return false;
}

Kernel* pin_track_kernel(const Folio* f) {
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    auto it = sh.map.find(f);
    return it == sh.map.end() || it->second.pins == 0 ? nullptr : it->second.k;
}

long pin_track_pins(const Folio* f) {
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    auto it = sh.map.find(f);
    return it == sh.map.end() ? 0 : it->second.pins;
}

void pin_track_put_page_locked(Kernel& k, const Folio* f, const Page* page) {
    Shard& sh = shard(f);
    auto it = sh.map.find(f);
    if (it == sh.map.end()) return;
    Entry& e = it->second;
    if (e.pins > 0) {
        // Under PinTrackLock every PIN's ledger share is settled: the
        // ledger's surplus over the PINs is what GET and other references
        // (get_page(), a driver's own) account for. With none left, this
        // put can only be eating a pin.
        const long share = k.mem->is_zero_folio(f) ? 0 : f->is_large() ? e.pins : e.pins * GUP_PIN_COUNTING_BIAS;
        const long others = k.ref_ledger(f) - share;
        const PinRec* r = e.recs.empty() ? nullptr : &e.recs.front();
        const std::string who = r ? owner_text(r->owner, r->site, r->entry) : std::string("?");
        const unsigned long pfn = pfn_of(k, f, page);
        if (others < 1) {
            report(k, "put_page_on_pinned", "put_page", pfn, who, r ? r->flags : 0, r ? r->step : 0,
                   "put_page() on page pfn " + hex(pfn) + " pinned by " + who + " (step " +
                       std::to_string(r ? r->step : 0) + ", " + std::to_string(e.pins) +
                       " pins outstanding) with no GET or other reference to drop: release pins with "
                       "unpin_user_page()");
        }
        if (f->ref_count() <= 1) {
            report(k, "pinned_page_moved", "put_page", pfn, who, r ? r->flags : 0, r ? r->step : 0,
                   "folio at pfn " + hex(pfn) + " freed while " + std::to_string(e.pins) + " pins are outstanding");
            sh.map.erase(it);  // the pins went with the frame: a later unpin is reported as not pinned
            return;
        }
    }
    if (e.gets > 0) e.gets--;  // best effort: probably the GET being released
    if (e.gets == 0 && e.pins == 0) sh.map.erase(it);
}

bool pin_track_moved(Kernel& k, const Folio* f, const Page* page, const char* where, const char* how) {
    unsigned long pfn = 0;
    std::string who;
    unsigned flags = 0;
    uint64_t step = 0;
    long pins = 0;
    {
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        auto it = sh.map.find(f);
        if (it == sh.map.end() || it->second.pins == 0 || it->second.k != &k) return false;
        const Entry& e = it->second;
        const PinRec* r = e.recs.empty() ? nullptr : &e.recs.front();
        pfn = pfn_of(k, f, page);
        who = r ? owner_text(r->owner, r->site, r->entry) : std::string("?");
        flags = r ? r->flags : 0;
        step = r ? r->step : 0;
        pins = e.pins;
    }
    report(k, "pinned_page_moved", where, pfn, who, flags, step,
           "page pfn " + hex(pfn) + " " + how + " while " + std::to_string(pins) + " pins taken by " + who +
               " (step " + std::to_string(step) + ") are outstanding: the pin holder keeps the old frame");
    return true;
}

void pin_track_pfnmap_gup(Kernel& k, const Folio* f, const Page* page, const char* where, const std::string& what) {
    const OwnerNow o = owner_now(k);
    const unsigned long pfn = pfn_of(k, f, page);
    report(k, "pfnmap_gup", where, pfn, owner_text(o.owner, o.site, o.entry), 0, o.step,
           "GUP reached page pfn " + hex(pfn) + " through a PFN mapping: " + what);
}

namespace {

struct Leak {
    unsigned long pfn;
    std::string owner;
    unsigned flags;
    uint64_t step;
    long pins;
    int pid;
};

// Under the shard lock: marks (once) the records of f that `match` selects
// as leaked, i.e. quarantined (the reference stays, the frame is never
// reused), and notes them for the report.
template <typename Match>
void collect_leaks(Kernel& k, const Folio* f, Entry& e, Match& match, std::vector<Leak>& leaks) {
    if (e.k != &k) return;
    for (auto& r : e.recs) {
        if (r.leaked || r.pins == 0 || !match(r)) continue;
        r.leaked = true;
        leaks.push_back({pfn_of(k, f, nullptr), owner_text(r.owner, r.site, r.entry), r.flags, r.step, r.pins, r.pid});
    }
}

void report_leaks(Kernel& k, const char* when, const std::vector<Leak>& leaks) {
    for (auto& l : leaks) {
        const std::string by = l.pid ? " in pid " + std::to_string(l.pid) : std::string();
        report(k, "leak", when, l.pfn, l.owner, l.flags, l.step,
               std::to_string(l.pins) + " pins of folio at pfn " + hex(l.pfn) + " taken by " + l.owner + by +
                   " (step " + std::to_string(l.step) + ") still held at " + when +
                   "; the frame is quarantined (never freed while a device may still write it)");
    }
}

// Reports (once) and quarantines every pin of `k` that `match` selects.
template <typename Match>
void leak_scan_if(Kernel& k, const char* when, Match&& match) {
    std::vector<Leak> leaks;
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        for (auto& [f, e] : sh.map) collect_leaks(k, f, e, match, leaks);
    }
    report_leaks(k, when, leaks);
}

}  // namespace

void pin_track_leak_scan(Kernel& k, const char* when) {
    leak_scan_if(k, when, [](const PinRec&) { return true; });
}

void pin_track_task_exit(Kernel& k, int pid) {
    if (pid == 0) return;
    leak_scan_if(k, "exit", [&](const PinRec& r) { return r.pid == pid; });
}

void pin_track_munmap(Kernel& k, int pid, const std::vector<const Folio*>& unmapped) {
    if (pid == 0 || unmapped.empty()) return;
    // One lookup per unmapped folio: a munmap of a large pinned range stays
    // linear in its size, whatever else is pinned.
    auto mine = [&](const PinRec& r) { return r.pid == pid; };
    std::vector<Leak> leaks;
    for (const Folio* f : unmapped) {
        if (f->mapped()) continue;
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        if (auto it = sh.map.find(f); it != sh.map.end()) collect_leaks(k, f, it->second, mine, leaks);
    }
    report_leaks(k, "munmap", leaks);
}

unsigned long pin_track_quarantined_pages(Kernel& k) {
    unsigned long n = 0;
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        for (auto& [f, e] : sh.map) {
            if (e.k != &k || k.mem->is_any_zero_folio(f)) continue;
            for (auto& r : e.recs) {
                if (r.leaked && r.pins > 0) {
                    n += f->nr_pages();
                    break;
                }
            }
        }
    }
    return n;
}

long pin_track_balance(Kernel& k, const char* owner) {
    long n = 0;
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        for (auto& [f, e] : sh.map) {
            if (e.k != &k) continue;
            for (auto& r : e.recs)
                if (!owner || (r.owner && std::strcmp(r.owner, owner) == 0)) n += r.pins;
        }
    }
    return n;
}

void pin_track_forget_kernel(Kernel& k) {
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        std::erase_if(sh.map, [&](const auto& kv) { return kv.second.k == &k; });
        std::erase_if(sh.recent, [&](const auto& kv) { return kv.second.k == &k; });
    }
}

}  // namespace pl
