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

// Who took references, and how: shared by every folio one call grabbed.
struct Ident {
    Kernel* k = nullptr;
    const char* owner = nullptr;  // a PinOwnerScope's owner, or the GUP entry point
    const char* site = nullptr;   // the scope's call site (may be null)
    const char* entry = nullptr;  // the GUP entry point (may be null)
    unsigned flags = 0;
    uint64_t step = 0;
    int pid = 0;  // the task whose GUP call took them (0: none, or a driver's scope)

    bool operator==(const Ident&) const = default;
};

// PINs taken by one owner at one step with the same flags (spilled folios).
struct PinRec {
    Ident who;
    long pins;
    bool leaked;  // reported as a leak and quarantined
};

// ---- the folio's word (Page::lru.track.gup) ------------------------------------
//  bits  0..31  count: references taken under the record
//  bits 32..61  record id (0: none): a Desc slot and its generation
//  bit  62      the record is a GET's (else a PIN's)
//  bit  63      spilled: the side table (Shard::map) holds the folio's records
// A PIN record whose count fell to zero stays: the last release, so that a
// further unpin is told apart as a double unpin (a weak reference).
constexpr uint64_t kCountMask = 0xffffffffULL;
constexpr unsigned kIdShift = 32;
constexpr uint64_t kIdMask = 0x3fffffffULL;
constexpr uint64_t kGetBit = 1ULL << 62;
constexpr uint64_t kSpilled = 1ULL << 63;
constexpr unsigned kSlotBits = 20;  // up to 2^20 - 1 records referenced at once
constexpr uint32_t kSlotMask = (1u << kSlotBits) - 1;
constexpr uint32_t kGenMask = (1u << (30 - kSlotBits)) - 1;

uint64_t& word_of(const Folio* f) { return const_cast<Page*>(f->head())->lru.track.gup; }
uint32_t count_of(uint64_t w) { return static_cast<uint32_t>(w & kCountMask); }
uint32_t id_of(uint64_t w) { return static_cast<uint32_t>((w >> kIdShift) & kIdMask); }
bool is_get(uint64_t w) { return w & kGetBit; }
uint64_t make_word(uint32_t id, bool get, uint64_t count) {
    return (uint64_t{id} << kIdShift) | (get ? kGetBit : 0) | count;
}

// A record: one per GUP call (and owner scope and flags), shared by every
// folio word that call grabbed. Records cost nothing per pin: they are not
// refcounted but swept (a walk of the kernels' folio words) when the table
// has grown, keeping those still named by a word or held by a running call.
// Concurrent calls of one class (same owner, site, entry, flags, task and
// kernel; -j threads of gup_test) add to each other's record rather than
// spill: such a folio's report names the first call's step.
struct Desc {
    Ident who;                              // immutable while the slot is in use
    uint32_t gen = 0;                       // under DescTable::mu_: bumped at each reuse
    bool free = false;                      // under DescTable::mu_: on the free list
    sync::Atomic<uint32_t> holder{0};       // the id while a thread caches it (0: none)
    sync::Atomic<uint64_t> class_hash{0};   // who, step left out (for merging)
};

uint64_t class_hash_of(const Ident& w) {
    uint64_t h = 0xcbf29ce484222325ULL;
    auto mix = [&](uint64_t v) {
        h ^= v;
        h *= 0x100000001b3ULL;
        h ^= h >> 29;
    };
    mix(reinterpret_cast<uintptr_t>(w.k));
    mix(reinterpret_cast<uintptr_t>(w.owner));
    mix(reinterpret_cast<uintptr_t>(w.site));
    mix(reinterpret_cast<uintptr_t>(w.entry));
    mix(w.flags);
    mix(static_cast<uint64_t>(static_cast<uint32_t>(w.pid)));
    return h | 1;  // never 0: 0 is a free slot
}

class DescTable {
public:
    // The first chunk up front: a first GUP call allocates nothing.
    DescTable() { chunks_[0].store(new Desc[kChunk], sync::memory_order_release); }

    // A new record, held by the calling thread's cache; 0 when the table is full.
    uint32_t alloc(const Ident& who, Desc** out) {
        std::lock_guard g(mu_);
        if (free_.empty() && next_ > kSweepAt && next_ >= swept_at_ + kSweepAt) sweep_locked();
        uint32_t slot;
        if (!free_.empty()) {
            slot = free_.front();
            free_.pop_front();
        } else {
            if (next_ > kSlotMask) return 0;
            slot = next_++;
            if (!chunks_[slot / kChunk].load(sync::memory_order_relaxed))
                chunks_[slot / kChunk].store(new Desc[kChunk], sync::memory_order_release);
        }
        Desc* d = at(slot);
        d->gen = (d->gen + 1) & kGenMask;
        d->free = false;
        d->who = who;
        const uint32_t id = slot | (d->gen << kSlotBits);
        d->holder.store(id, sync::memory_order_relaxed);
        d->class_hash.store(class_hash_of(who), sync::memory_order_release);
        *out = d;
        return id;
    }
    Desc* at(uint32_t id) const {
        const uint32_t slot = id & kSlotMask;
        return chunks_[slot / kChunk].load(sync::memory_order_acquire) + slot % kChunk;
    }
    // The class of a record a word names (0 if gone): read without a lock.
    uint64_t class_of(uint32_t id) const {
        const uint32_t slot = id & kSlotMask;
        if (!slot || slot > kSlotMask || !chunks_[slot / kChunk].load(sync::memory_order_acquire)) return 0;
        return at(id)->class_hash.load(sync::memory_order_acquire);
    }
    // Who a record named; false once its slot was swept and reused.
    bool lookup(uint32_t id, Ident* out) {
        std::lock_guard g(mu_);
        return lookup_locked(id, out);
    }
    // Runs fn(lookup) with the table locked, for many lookups at once.
    template <typename Fn>
    void locked(Fn&& fn) {
        std::lock_guard g(mu_);
        fn([this](uint32_t id, Ident* out) { return lookup_locked(id, out); });
    }
    // Whether any record in use satisfies pred(who).
    template <typename Pred>
    bool any(Pred&& pred) {
        std::lock_guard g(mu_);
        for (uint32_t slot = 1; slot < next_; ++slot) {
            const Desc* d = at(slot);
            if (!d->free && d->who.k && pred(d->who)) return true;
        }
        return false;
    }
    // Drops every record of `k` (the kernel is going away).
    void forget(Kernel& k) {
        std::lock_guard g(mu_);
        for (uint32_t slot = 1; slot < next_; ++slot) {
            Desc* d = at(slot);
            if (d->who.k == &k && !d->free) release_locked(slot);
        }
    }

private:
    bool lookup_locked(uint32_t id, Ident* out) const {
        const uint32_t slot = id & kSlotMask;
        if (!slot || slot >= next_) return false;
        const Desc* d = at(slot);
        if (d->free || d->gen != (id >> kSlotBits) || !d->who.k) return false;
        *out = d->who;
        return true;
    }
    void release_locked(uint32_t slot) {
        Desc* d = at(slot);
        d->class_hash.store(0, sync::memory_order_release);
        d->who = Ident{};
        d->holder.store(0, sync::memory_order_relaxed);
        d->free = true;
        free_.push_back(slot);
    }
    // Keeps the records held by running calls and those a folio word of a
    // live kernel names (counting or, for a double unpin, released); the
    // table lock keeps new records from appearing meanwhile.
    void sweep_locked() {
        swept_at_ = next_;
        std::vector<bool> keep(next_, false);
        std::vector<Kernel*> kernels;
        for (uint32_t slot = 1; slot < next_; ++slot) {
            const Desc* d = at(slot);
            if (d->free || !d->who.k) continue;
            if (d->holder.load(sync::memory_order_acquire)) keep[slot] = true;
            if (std::find(kernels.begin(), kernels.end(), d->who.k) == kernels.end()) kernels.push_back(d->who.k);
        }
        for (Kernel* k : kernels) {
            for (const Folio* f : k->mem->folios_with_track()) {
                const uint64_t w = sync::load(const_cast<Page*>(f->head())->lru.track.gup, sync::memory_order_acquire);
                if (w & (1ULL << 63)) continue;
                const uint32_t id = static_cast<uint32_t>((w >> 32) & 0x3fffffffULL);
                const uint32_t slot = id & kSlotMask;
                if (slot && slot < next_ && at(slot)->gen == (id >> kSlotBits)) keep[slot] = true;
            }
        }
        for (uint32_t slot = 1; slot < next_; ++slot)
            if (!keep[slot] && !at(slot)->free) release_locked(slot);
    }
    static constexpr uint32_t kChunk = 4096;
    static constexpr uint32_t kSweepAt = 1u << 16;
    std::array<sync::Atomic<Desc*>, (kSlotMask + 1) / kChunk> chunks_{};
    // A sync:: lock, not a std::mutex: sync::Atomic stores happen under it,
    // and the explorer (src/explore) must see who waits for it.
    sync::Spinlock mu_;
    std::deque<uint32_t> free_;
    uint32_t next_ = 1;  // slot 0 is "no record"
    uint32_t swept_at_ = 0;
};

DescTable& descs() {
    static DescTable* t = new DescTable;  // never destroyed: threads may still release at exit
    return *t;
}

// The record the calling thread grabs under, held (kept from the sweep)
// until the outermost GupCallScope ends or, for grabs outside any GUP call
// (step 0), until the thread grabs under another.
thread_local uint32_t t_desc_id = 0;
thread_local Desc* t_desc = nullptr;

void drop_cached_desc() {
    // Only while still ours: a kernel's teardown may have taken the record.
    uint32_t mine = t_desc_id;
    if (mine) (void)t_desc->holder.compare_exchange(mine, 0, sync::memory_order_acq_rel);
    t_desc_id = 0;
    t_desc = nullptr;
}

// A thread the explorer reuses must not carry a record cached by its last
// model thread into the next (sync::ThreadReuseHooks).
[[maybe_unused]] const bool kReuseHooks = sync::register_thread_reuse_hooks({nullptr, &drop_cached_desc});

// ---- spilled folios: the side table -----------------------------------------------

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
    sync::Spinlock mu;  // a sync:: lock: held across interleaving points (see DescTable)
    std::unordered_map<const Folio*, Entry> map;
    std::unordered_map<const Folio*, Recent> recent;
    // (folio, seq): a folio re-pinned and released again has an older entry
    // still queued, which must not evict its newer record.
    std::deque<std::pair<const Folio*, uint64_t>> recent_fifo;
    uint64_t recent_seq = 0;
};

// Frames freed after all their pins were released, newest last: a bounded
// ring written without a lock (every migrated source frame of a longterm pin
// lands here), so that an unpin of a freed frame is still a double unpin.
class FreedRing {
public:
    void note(const Folio* f, Kernel* k, uint32_t id) {
        Slot& s = slots_[next_.fetch_add(1, sync::memory_order_relaxed) % kSize];
        s.f.store(nullptr, sync::memory_order_relaxed);
        s.k.store(k, sync::memory_order_relaxed);
        s.id.store(id, sync::memory_order_relaxed);
        s.f.store(f, sync::memory_order_release);
    }
    // The newest entry for f: its kernel and the record id of its pins.
    bool find(const Folio* f, Kernel** k, uint32_t* id) const {
        const uint64_t end = next_.load(sync::memory_order_acquire);
        for (uint64_t i = 0; i < kSize && i < end; ++i) {
            const Slot& s = slots_[(end - 1 - i) % kSize];
            if (s.f.load(sync::memory_order_acquire) != f) continue;
            *k = s.k.load(sync::memory_order_relaxed);
            *id = s.id.load(sync::memory_order_relaxed);
            return *k != nullptr;
        }
        return false;
    }
    void forget(Kernel& k) {
        for (Slot& s : slots_)
            if (s.k.load(sync::memory_order_relaxed) == &k) s.f.store(nullptr, sync::memory_order_release);
    }

private:
    static constexpr size_t kSize = 4096;
    struct Slot {
        sync::Atomic<const Folio*> f{nullptr};
        sync::Atomic<Kernel*> k{nullptr};
        sync::Atomic<uint32_t> id{0};
    };
    std::array<Slot, kSize> slots_{};
    sync::Atomic<uint64_t> next_{0};
};

FreedRing& freed_ring() {
    static FreedRing* r = new FreedRing;  // never destroyed, like the record table
    return *r;
}

std::array<Shard, kShards>& shards() {
    static std::array<Shard, kShards> s;
    return s;
}

size_t shard_of(const Folio* f) { return (reinterpret_cast<uintptr_t>(f) >> 6) % kShards; }
Shard& shard(const Folio* f) { return shards()[shard_of(f)]; }

std::string owner_text(const char* owner, const char* site, const char* entry) {
    std::string s = owner ? owner : "unknown";
    if (site) s += std::string(":") + site;
    if (entry && (!owner || std::strcmp(owner, entry) != 0)) s += std::string(" via ") + entry;
    return s;
}
std::string owner_text(const Ident& w) { return owner_text(w.owner, w.site, w.entry); }

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

// Under the shard lock: remembers that f's last pins were released.
void note_recent_locked(Shard& sh, const Folio* f, Kernel* k, const char* owner, uint64_t step) {
    const uint64_t seq = ++sh.recent_seq;
    sh.recent[f] = Recent{k, owner, step, seq};
    sh.recent_fifo.emplace_back(f, seq);
    while (sh.recent_fifo.size() > kMaxRecent) {
        const auto [old, old_seq] = sh.recent_fifo.front();
        if (auto r = sh.recent.find(old); r != sh.recent.end() && r->second.seq == old_seq) sh.recent.erase(r);
        sh.recent_fifo.pop_front();
    }
}

// The records a release drops: the current owner's first, then the oldest.
void drop_recs(Entry& e, long refs, const char* owner) {
    for (int pass = 0; pass < 2 && refs > 0; pass++) {
        for (auto& r : e.recs) {
            if (refs == 0) break;
            if (pass == 0 && (!owner || !r.who.owner || std::strcmp(owner, r.who.owner) != 0)) continue;
            long n = r.pins < refs ? r.pins : refs;
            r.pins -= n;
            refs -= n;
        }
    }
    std::erase_if(e.recs, [](const PinRec& r) { return r.pins == 0; });
}

// Who takes references now (see PinOwnerScope and GupCallScope).
Ident ident_now(Kernel& k, unsigned flags) {
    if (t_entry && t_step == 0) t_step = k.next_gup_step();  // a remote call made with no current task
    if (t_scope) return {&k, t_scope->owner(), t_scope->site(), t_entry, flags, t_step, 0};
    const Task* t = current();
    // Pins taken by a task's own GUP calls are that task's to release (its
    // pid); a driver's (scoped) pins belong to the driver object (0).
    return {&k, t_entry ? t_entry : "unknown", nullptr, t_entry, flags, t_step, t ? t->pid : 0};
}

// The record for references taken now; 0 when the table is full (the
// caller spills).
uint32_t desc_for(Kernel& k, unsigned flags, Desc** out) {
    const Ident who = ident_now(k, flags);
    if (!t_desc_id || t_desc->holder.load(sync::memory_order_acquire) != t_desc_id || !(t_desc->who == who)) {
        drop_cached_desc();
        Desc* d = nullptr;
        const uint32_t id = descs().alloc(who, &d);
        if (!id) return 0;
        t_desc_id = id;
        t_desc = d;
    }
    *out = t_desc;
    return t_desc_id;
}

// Under the shard lock: moves the folio's word into the side table (if it is
// not there already) and returns its entry.
Entry& spill_locked(Shard& sh, Kernel& k, const Folio* f) {
    uint64_t& wd = word_of(f);
    uint64_t w = sync::load(wd, sync::memory_order_acquire);
    while (!(w & kSpilled)) {
        const uint32_t id = id_of(w), n = count_of(w);
        Ident who;
        const bool named = descs().lookup(id, &who);
        if (sync::compare_exchange(wd, w, kSpilled)) {
            Entry& e = sh.map[f];
            e.k = &k;
            if (n > 0) {
                if (is_get(w)) {
                    e.gets += n;
                    e.get_owner = named ? who.owner : nullptr;
                    e.get_step = named ? who.step : 0;
                } else {
                    e.pins += n;
                    e.recs.push_back(PinRec{named ? who : Ident{&k}, n, false});
                }
            } else if (named && !is_get(w)) {
                note_recent_locked(sh, f, &k, who.owner, who.step);
            }
            return e;
        }
    }
    Entry& e = sh.map[f];
    if (!e.k) e.k = &k;
    return e;
}

// Under the shard lock: an emptied entry leaves the side table.
void maybe_unspill_locked(Shard& sh, const Folio* f, std::unordered_map<const Folio*, Entry>::iterator it) {
    if (it->second.pins != 0 || it->second.gets != 0) return;
    sh.map.erase(it);
    sync::store(word_of(f), uint64_t{0}, sync::memory_order_release);
}

void grab_spilled(Kernel& k, const Folio* f, int refs, unsigned flags) {
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    Entry& e = spill_locked(sh, k, f);
    const Ident who = ident_now(k, flags);
    if (flags & FOLL_PIN) {
        if (e.pins == 0) sh.recent.erase(f);  // the fifo entry ages out by itself
        e.pins += refs;
        for (auto& r : e.recs) {
            if (!r.leaked && r.who == who) {
                r.pins += refs;
                return;
            }
        }
        e.recs.push_back(PinRec{who, refs, false});
    } else {
        e.gets += refs;
        e.get_owner = who.owner;
        e.get_step = who.step;
    }
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
    drop_cached_desc();
    t_entry = nullptr;
    t_step = 0;
}

void pin_track_grab(Kernel& k, const Folio* f, int refs, unsigned flags) {
    if (refs <= 0) return;
    const bool get = !(flags & FOLL_PIN);
    Desc* d = nullptr;
    const uint32_t id = desc_for(k, flags, &d);
    if (id) {
        // The common cases: nothing held, only this record's references (or
        // those of a concurrent call of its class), or a record whose
        // references were all released.
        uint64_t& wd = word_of(f);
        uint64_t w = sync::load(wd, sync::memory_order_relaxed);
        while (!(w & kSpilled)) {
            const uint32_t n = count_of(w);
            if (uint64_t{n} + static_cast<uint64_t>(refs) > kCountMask) break;
            uint32_t to = id;
            if (n != 0 && (id_of(w) != id || is_get(w) != get)) {
                if (is_get(w) != get || descs().class_of(id_of(w)) != d->class_hash.load(sync::memory_order_relaxed))
                    break;
                to = id_of(w);
            }
            if (sync::compare_exchange(wd, w, make_word(to, get, uint64_t{n} + static_cast<uint64_t>(refs)),
                                       sync::memory_order_acq_rel))
                return;
        }
    }
    grab_spilled(k, f, refs, flags);
}

PinTrackRelease pin_track_release(Kernel* k, const Folio* f, const Page* page, int refs, unsigned flags) {
    if (refs <= 0) return {};
    const bool pin = flags & FOLL_PIN;
    uint64_t& wd = word_of(f);
    uint64_t w = sync::load(wd, sync::memory_order_acquire);
    while (!(w & kSpilled)) {
        const uint32_t n = count_of(w), id = id_of(w);
        const bool get = is_get(w);
        if (pin) {
            if (get || n < static_cast<uint32_t>(refs)) break;  // misuse: reported below
            if (sync::compare_exchange(wd, w, make_word(id, false, n - static_cast<uint32_t>(refs)),
                                       sync::memory_order_acq_rel))
                return {};
        } else {
            const uint32_t take = get ? std::min(n, static_cast<uint32_t>(refs)) : 0;
            if (take == 0) return {true, refs};  // not a tracked GET: the ledger's
            const uint64_t nw = n == take ? 0 : make_word(id, true, n - take);
            if (sync::compare_exchange(wd, w, nw, sync::memory_order_acq_rel))
                return {true, refs - static_cast<int>(take)};
        }
    }
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    w = sync::load(wd, sync::memory_order_acquire);
    auto it = sh.map.find(f);
    if (!(w & kSpilled)) it = sh.map.end();
    if (!pin) {
        if (it == sh.map.end()) return {true, refs};
        const long take = std::min<long>(it->second.gets, refs);
        it->second.gets -= take;
        maybe_unspill_locked(sh, f, it);
        return {true, refs - static_cast<int>(take)};
    }
    const long have = it == sh.map.end() ? 0 : it->second.pins;
    if (have >= refs) {
        Entry& e = it->second;
        const Ident last = e.recs.empty() ? Ident{} : e.recs.back().who;
        e.pins -= refs;
        drop_recs(e, refs, t_scope ? t_scope->owner() : t_entry);
        if (e.pins == 0) {
            note_recent_locked(sh, f, e.k, last.owner, last.step);
            maybe_unspill_locked(sh, f, it);
        }
        return {};
    }
    // Releasing PINs the tracker does not hold: upstream would underflow the
    // refcount (or _pincount) and WARN later, far from the culprit.
    Ident was;  // the embedded record: GETs, or the pins last released
    const bool named = !(w & kSpilled) && descs().lookup(id_of(w), &was);
    auto rc = sh.recent.find(f);
    Kernel* freed_kernel = nullptr;
    uint32_t freed_id = 0;
    if (!freed_ring().find(f, &freed_kernel, &freed_id)) freed_kernel = nullptr;
    if (!k && it != sh.map.end()) k = it->second.k;
    if (!k && named) k = was.k;
    if (!k && rc != sh.recent.end()) k = rc->second.k;
    if (!k) return {false, 0};
    const unsigned long pfn = pfn_of(*k, f, page);
    const std::string who = owner_text(t_scope ? t_scope->owner() : t_entry, t_scope ? t_scope->site() : nullptr, t_entry);
    const bool embedded_gets = !(w & kSpilled) && is_get(w) && count_of(w) > 0;
    const bool embedded_pins = !(w & kSpilled) && !is_get(w) && count_of(w) > 0;
    if (have > 0 || embedded_pins) {
        const long held = have > 0 ? have : count_of(w);
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, 0,
               "unpin of " + std::to_string(refs) + " pins of folio at pfn " + hex(pfn) + " which holds only " +
                   std::to_string(held) + "; nothing released");
    } else if ((it != sh.map.end() && it->second.gets > 0) || embedded_gets) {
        const char* gowner = embedded_gets ? (named ? was.owner : nullptr) : it->second.get_owner;
        const uint64_t gstep = embedded_gets ? (named ? was.step : 0) : it->second.get_step;
        report(*k, "unpin_not_pinned", "unpin_user_page", pfn, who, flags, gstep,
               "unpin of page pfn " + hex(pfn) + " that was taken with FOLL_GET by " +
                   owner_text(gowner, nullptr, nullptr) +
                   " (release FOLL_GET references with put_page()); nothing released");
    } else if (!(w & kSpilled) && !is_get(w) && id_of(w) != 0) {
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, named ? was.step : 0,
               "unpin of page pfn " + hex(pfn) + " whose pins were all released already; nothing released");
    } else if (rc != sh.recent.end()) {
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, rc->second.step,
               "unpin of page pfn " + hex(pfn) + " whose pins were all released already; nothing released");
    } else if (freed_kernel == k && k) {
        Ident last;
        const uint64_t step = descs().lookup(freed_id, &last) ? last.step : 0;
        report(*k, "double_unpin", "unpin_user_page", pfn, who, flags, step,
               "unpin of page pfn " + hex(pfn) + " whose pins were all released already (the frame was freed "
               "since); nothing released");
    } else {
        report(*k, "unpin_not_pinned", "unpin_user_page", pfn, who, flags, 0,
               "unpin of page pfn " + hex(pfn) + " that is not pinned; nothing released");
    }
    return {false, 0};
}

long pin_track_pins(const Folio* f) {
    const uint64_t w = sync::load(word_of(f), sync::memory_order_acquire);
    if (!(w & kSpilled)) return is_get(w) ? 0 : count_of(w);
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    auto it = sh.map.find(f);
    return it == sh.map.end() ? 0 : it->second.pins;
}

long pin_track_refcount_share(Kernel& k, const Folio* f) {
    long pins = 0, gets = 0;
    const uint64_t w = sync::load(word_of(f), sync::memory_order_acquire);
    if (!(w & kSpilled)) {
        (is_get(w) ? gets : pins) = count_of(w);
    } else {
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        if (auto it = sh.map.find(f); it != sh.map.end()) {
            pins = it->second.pins;
            gets = it->second.gets;
        }
    }
    const long per_pin = k.mem->is_zero_folio(f) ? 0 : f->is_large() ? 1 : GUP_PIN_COUNTING_BIAS;
    return pins * per_pin + gets;
}

void pin_track_folio_freed(Kernel& k, const Folio* f) {
    uint64_t& wd = word_of(f);
    const uint64_t w = sync::load(wd, sync::memory_order_acquire);
    if (w == 0) return;
    if (w & kSpilled) {
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        sh.map.erase(f);  // what was left is best-effort GET bookkeeping
    } else if (!is_get(w) && count_of(w) == 0) {
        freed_ring().note(f, &k, id_of(w));
    }
    sync::store(wd, uint64_t{0}, sync::memory_order_release);
}

void pin_track_put_page(Kernel& k, const Folio* f, const Page* page) {
    uint64_t& wd = word_of(f);
    // The common cases without a lock: a GUP GET is being released, or a
    // reference nobody tracks (the ledger's) on a folio without pins.
    uint64_t w = sync::load(wd, sync::memory_order_acquire);
    while (!(w & kSpilled) && (count_of(w) == 0 || is_get(w))) {
        if (count_of(w) == 0) {
            k.ref_note(f, -1);
            return;
        }
        const uint32_t id = id_of(w), n = count_of(w);
        if (sync::compare_exchange(wd, w, n == 1 ? 0 : make_word(id, true, n - 1), sync::memory_order_acq_rel))
            return;
    }
    Shard& sh = shard(f);
    std::lock_guard g(sh.mu);
    Entry& e = spill_locked(sh, k, f);
    auto it = sh.map.find(f);
    if (e.pins > 0) {
        // The ledger's references and the GETs are what this put may drop;
        // with none left, it can only be eating a pin.
        const long others = k.ref_ledger_others(f) + e.gets;
        const PinRec* r = e.recs.empty() ? nullptr : &e.recs.front();
        const std::string who = r ? owner_text(r->who) : std::string("?");
        const unsigned long pfn = pfn_of(k, f, page);
        const unsigned rflags = r ? r->who.flags : 0;
        const uint64_t rstep = r ? r->who.step : 0;
        if (others < 1) {
            report(k, "put_page_on_pinned", "put_page", pfn, who, rflags, rstep,
                   "put_page() on page pfn " + hex(pfn) + " pinned by " + who + " (step " + std::to_string(rstep) +
                       ", " + std::to_string(e.pins) +
                       " pins outstanding) with no GET or other reference to drop: release pins with "
                       "unpin_user_page()");
        }
        if (f->ref_count() <= 1) {
            report(k, "pinned_page_moved", "put_page", pfn, who, rflags, rstep,
                   "folio at pfn " + hex(pfn) + " freed while " + std::to_string(e.pins) + " pins are outstanding");
            // The pins went with the frame: a later unpin is reported as not
            // pinned. Their share of the ledger goes to the put.
            const long share = k.mem->is_zero_folio(f) ? 0 : f->is_large() ? e.pins : e.pins * GUP_PIN_COUNTING_BIAS;
            k.ref_note(f, share - 1 + e.gets);
            sh.map.erase(it);
            sync::store(wd, uint64_t{0}, sync::memory_order_release);
            return;
        }
    }
    if (e.gets > 0) {
        e.gets--;  // best effort: probably the GET being released
    } else {
        k.ref_note(f, -1);
    }
    maybe_unspill_locked(sh, f, it);
}

bool pin_track_moved(Kernel& k, const Folio* f, const Page* page, const char* where, const char* how) {
    Ident who;
    long pins = 0;
    const uint64_t w = sync::load(word_of(f), sync::memory_order_acquire);
    if (!(w & kSpilled)) {
        if (is_get(w) || count_of(w) == 0 || !descs().lookup(id_of(w), &who) || who.k != &k) return false;
        pins = count_of(w);
    } else {
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        auto it = sh.map.find(f);
        if (it == sh.map.end() || it->second.pins == 0 || it->second.k != &k) return false;
        const Entry& e = it->second;
        if (!e.recs.empty()) who = e.recs.front().who;
        pins = e.pins;
    }
    const unsigned long pfn = pfn_of(k, f, page);
    const std::string owner = who.owner ? owner_text(who) : std::string("?");
    report(k, "pinned_page_moved", where, pfn, owner, who.flags, who.step,
           "page pfn " + hex(pfn) + " " + how + " while " + std::to_string(pins) + " pins taken by " + owner +
               " (step " + std::to_string(who.step) + ") are outstanding: the pin holder keeps the old frame");
    return true;
}

void pin_track_pfnmap_gup(Kernel& k, const Folio* f, const Page* page, const char* where, const std::string& what) {
    const Ident o = ident_now(k, 0);
    const unsigned long pfn = pfn_of(k, f, page);
    report(k, "pfnmap_gup", where, pfn, owner_text(o), 0, o.step,
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
// reused), and notes them for the report. A folio whose word holds
// matching pins is spilled first: leaked records live in the side table.
template <typename Match>
void collect_leaks_locked(Shard& sh, Kernel& k, const Folio* f, Match& match, std::vector<Leak>& leaks) {
    const uint64_t w = sync::load(word_of(f), sync::memory_order_acquire);
    if (!(w & kSpilled)) {
        Ident who;
        if (is_get(w) || count_of(w) == 0 || !descs().lookup(id_of(w), &who) || who.k != &k ||
            !match(PinRec{who, count_of(w), false}))
            return;
        (void)spill_locked(sh, k, f);
    }
    auto it = sh.map.find(f);
    if (it == sh.map.end() || it->second.k != &k) return;
    for (auto& r : it->second.recs) {
        if (r.leaked || r.pins == 0 || !match(r)) continue;
        r.leaked = true;
        leaks.push_back({pfn_of(k, f, nullptr), owner_text(r.who), r.who.flags, r.who.step, r.pins, r.who.pid});
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
    // Pins counted in folio words: only when a live record matches is
    // memory walked to find them (task exits are frequent, leaks rare).
    if (descs().any([&](const Ident& who) { return who.k == &k && (who.flags & FOLL_PIN) && match(PinRec{who, 1, false}); })) {
        for (const Folio* f : k.mem->folios_with_track()) {
            Shard& sh = shard(f);
            std::lock_guard g(sh.mu);
            collect_leaks_locked(sh, k, f, match, leaks);
        }
    }
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        std::vector<const Folio*> fs;
        for (auto& [f, e] : sh.map)
            if (e.k == &k) fs.push_back(f);
        for (const Folio* f : fs) collect_leaks_locked(sh, k, f, match, leaks);
    }
    std::sort(leaks.begin(), leaks.end(), [](const Leak& a, const Leak& b) { return a.pfn < b.pfn; });
    report_leaks(k, when, leaks);
}

}  // namespace

void pin_track_leak_scan(Kernel& k, const char* when) {
    leak_scan_if(k, when, [](const PinRec&) { return true; });
}

void pin_track_task_exit(Kernel& k, int pid) {
    if (pid == 0) return;
    leak_scan_if(k, "exit", [&](const PinRec& r) { return r.who.pid == pid; });
}

void pin_track_munmap(Kernel& k, int pid, const std::vector<const Folio*>& unmapped) {
    if (pid == 0 || unmapped.empty()) return;
    // One lookup per unmapped folio: a munmap of a large pinned range stays
    // linear in its size, whatever else is pinned.
    auto mine = [&](const PinRec& r) { return r.who.pid == pid; };
    std::vector<Leak> leaks;
    for (const Folio* f : unmapped) {
        if (f->mapped()) continue;
        if (sync::load(word_of(f), sync::memory_order_acquire) == 0) continue;
        Shard& sh = shard(f);
        std::lock_guard g(sh.mu);
        collect_leaks_locked(sh, k, f, mine, leaks);
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
    auto named = [&](const char* o) { return !owner || (o && std::strcmp(o, owner) == 0); };
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        for (auto& [f, e] : sh.map) {
            if (e.k != &k) continue;
            for (auto& r : e.recs)
                if (named(r.who.owner)) n += r.pins;
        }
    }
    // Pins counted in folio words: a walk of the kernel's folios.
    const std::vector<Folio*> fs = k.mem->folios_with_track();
    descs().locked([&](auto lookup) {
        for (const Folio* f : fs) {
            const uint64_t w = sync::load(word_of(f), sync::memory_order_acquire);
            Ident who;
            if ((w & kSpilled) || is_get(w) || count_of(w) == 0 || !lookup(id_of(w), &who)) continue;
            if (who.k == &k && named(who.owner)) n += count_of(w);
        }
    });
    return n;
}

void pin_track_forget_kernel(Kernel& k) {
    descs().forget(k);
    drop_cached_desc();
    freed_ring().forget(k);
    for (auto& sh : shards()) {
        std::lock_guard g(sh.mu);
        std::erase_if(sh.map, [&](const auto& kv) { return kv.second.k == &k; });
        std::erase_if(sh.recent, [&](const auto& kv) { return kv.second.k == &k; });
    }
}

}  // namespace pl
