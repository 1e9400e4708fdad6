// pinlab — records of the VMAs handed out through GUP's vmas[] (see the header).
#include "gup/gup_vmas_tracker.h"

#include <cstdio>
#include <deque>
#include <map>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/config.h"
#include "base/sync/atomic.h"
#include "base/sync/spinlock.h"
#include "kernel/kernel.h"
#include "mm/mm_struct.h"
#include "mm/vma.h"

namespace pl {

namespace {

struct Record {
    Kernel* kernel;
    const MmStruct* mm;
    std::thread::id owner;
    vaddr_t start, end;  // a snapshot taken under the lock, for the warning only
    const char* api;
    bool stale;
    uint64_t gen;  // tells a record from a later one for the same address
};

using HolderKey = std::pair<const MmStruct*, std::thread::id>;

// Stale records are kept for this many hand-outs after they went stale, so a
// late use is still recognised; older ones are dropped (memory stays bounded
// in programs that call GUP with vmas in a loop).
constexpr size_t kMaxStale = 4096;

// Bookkeeping of the model, not a lock of the modelled kernel.
struct Tracker {
    sync::Spinlock lock;
    std::unordered_map<const void*, Record> records PL_GUARDED_BY(lock);
    std::map<HolderKey, std::vector<const void*>> fresh PL_GUARDED_BY(lock);
    std::deque<std::pair<const void*, uint64_t>> stale_fifo PL_GUARDED_BY(lock);
    uint64_t next_gen PL_GUARDED_BY(lock) = 0;
    // Read without the lock: the zero-cost test of the hooks and accessors.
    sync::Atomic<long> nr_records{0};
    sync::Atomic<long> nr_fresh{0};
};

Tracker& tracker() {
    static Tracker t;
    return t;
}

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

void erase_record(Tracker& t, std::unordered_map<const void*, Record>::iterator it) PL_REQUIRES(t.lock) {
    if (!it->second.stale) t.nr_fresh.fetch_sub(1);
    t.records.erase(it);
    t.nr_records.fetch_sub(1);
}

}  // namespace

void vmas_track(MmStruct& mm, Vma* const* vmas, long n, const char* api) {
    if (!vmas || n <= 0) return;
    Tracker& t = tracker();
    const HolderKey key{&mm, std::this_thread::get_id()};
    sync::SpinGuard g(t.lock);
    std::vector<const void*>& mine = t.fresh[key];
    const Vma* last = nullptr;
    for (long i = 0; i < n; i++) {
        const Vma* v = vmas[i];
        if (!v || v == last) continue;  // runs of one VMA: one record
        last = v;
        Record r{&mm.kernel, &mm, key.second, v->start, v->end, api, false, ++t.next_gen};
        auto [it, inserted] = t.records.try_emplace(v, r);
        if (inserted) {
            t.nr_records.fetch_add(1);
            t.nr_fresh.fetch_add(1);
        } else {
            if (it->second.stale) t.nr_fresh.fetch_add(1);
            it->second = r;  // the latest hand-out of an address decides
        }
        mine.push_back(v);
    }
}

void vmas_lock_released(const MmStruct& mm) {
    Tracker& t = tracker();
    if (t.nr_fresh.load(sync::memory_order_relaxed) == 0) return;
    const HolderKey key{&mm, std::this_thread::get_id()};
    sync::SpinGuard g(t.lock);
    auto f = t.fresh.find(key);
    if (f == t.fresh.end()) return;
    for (const void* v : f->second) {
        auto it = t.records.find(v);
        if (it == t.records.end()) continue;
        Record& r = it->second;
        if (r.stale || r.mm != key.first || r.owner != key.second) continue;  // handed out again since
        r.stale = true;
        t.nr_fresh.fetch_sub(1);
        t.stale_fifo.emplace_back(v, r.gen);
    }
    t.fresh.erase(f);
    while (t.stale_fifo.size() > kMaxStale) {
        auto [v, gen] = t.stale_fifo.front();
        t.stale_fifo.pop_front();
        auto it = t.records.find(v);
        if (it != t.records.end() && it->second.stale && it->second.gen == gen) erase_record(t, it);
    }
}

bool vmas_use_ok(const void* vma, const char* fn, std::string* why) {
    Tracker& t = tracker();
    if (!vma || t.nr_records.load(sync::memory_order_relaxed) == 0) return true;
    Kernel* k = nullptr;
    std::string what;
    {
        sync::SpinGuard g(t.lock);
        auto it = t.records.find(vma);
        if (it == t.records.end() || !it->second.stale) return true;
        const Record& r = it->second;
        k = r.kernel;
        what = "dangling VMA " + hex(reinterpret_cast<uintptr_t>(vma)) + " [" + hex(r.start) + ", " + hex(r.end) +
               ") returned by " + r.api + "() in vmas[] used after mmap_lock was dropped (vmas[] entries are valid only "
               "while the caller holds the mmap_lock; the VMA may since have been unmapped and freed; the vmas "
               "parameter was removed in v6.5)";
    }
    KernelReport rep;  // the pin tracker's "dangling_vma" (same dmesg line as a WARN)
    rep.kind = "dangling_vma";
    rep.where = fn;
    rep.message = what;
    k->report(std::move(rep));
    if (why) *why = what;
    return false;
}

void vmas_forget(const void* vma) {
    Tracker& t = tracker();
    if (!vma || t.nr_records.load(sync::memory_order_relaxed) == 0) return;
    sync::SpinGuard g(t.lock);
    auto it = t.records.find(vma);
    if (it != t.records.end() && it->second.stale) erase_record(t, it);
}

void vmas_forget_kernel(const Kernel& k) {
    Tracker& t = tracker();
    if (t.nr_records.load(sync::memory_order_relaxed) == 0) return;
    sync::SpinGuard g(t.lock);
    for (auto it = t.records.begin(); it != t.records.end();) {
        auto next = std::next(it);
        if (it->second.kernel == &k) erase_record(t, it);
        it = next;
    }
    // Holder lists of the kernel's mms lose their now unknown addresses.
    for (auto f = t.fresh.begin(); f != t.fresh.end();) {
        std::vector<const void*> keep;
        for (const void* v : f->second)
            if (t.records.count(v)) keep.push_back(v);
        f->second.swap(keep);
        f = f->second.empty() ? t.fresh.erase(f) : std::next(f);
    }
}

long vmas_tracked() { return tracker().nr_records.load(); }

}  // namespace pl
