// pinlab — a per-thread recorder of what the GUP engine and the fault path
// decided, for `pinlab explain` (src/scenario/explain.cpp).
//
// Off unless a Recorder is installed on this thread: every hook is an inline
// function that tests one thread_local pointer and does nothing else, so the
// model pays one load and a branch per hook when nobody explains. When on,
// the out-of-line half (trace.cpp) appends structured Events: what kind of
// decision, the upstream function that made it, a one-line message, and the
// address / pfn / before-after values it concerns, so that a text or an HTML
// view can be generated from the same data.
//
// The hooks are called from src/gup/* and src/mm/memory.cpp, one line each,
// at the places upstream makes the decision (check_vma_flags(),
// follow_page_mask(), gup_fast(), handle_mm_fault(), do_wp_page(), ...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/units.h"

namespace pl {

class MmStruct;
class Vma;
class Folio;
struct Page;

namespace trace {

enum class Kind : uint8_t {
    Call,       // a GUP entry point: function, flags (message), addr, nr (before)
    Return,     // its return value (after)
    FastPath,   // gup_fast(): how many pages the lockless walk took (before: asked, after: took)
    FastStop,   // why the lockless walk stopped at addr (the rule that failed)
    Check,      // one check_vma_flags() rule evaluated (after: 1 if it fired)
    CheckResult,// check_vma_flags()'s verdict (after: errno, 0 allowed)
    Follow,     // follow_page_mask(): page found (pfn) or err (after)
    Fault,      // handle_mm_fault() entered (message: FAULT_FLAG_* names)
    FaultDone,  // handle_mm_fault() returned (message: VM_FAULT_* names)
    Decision,   // do_wp_page() and friends: reuse / copy / unshare / shared
    Lock,       // mmap_lock taken, dropped, retaken
    Longterm,   // FOLL_LONGTERM: a round of pin + check_and_migrate_movable_pages
    Migrate,    // one folio migrated away for a long-term pin
    Ref,        // a folio's refcount/pincount changed: before/after, pin_before/pin_after
    Pte,        // a page-table entry (text), before or after (message says which)
    Fork,       // copy_page_range() decisions
    Note,       // anything else worth a line
};

std::string_view kind_name(Kind k);

struct Event {
    Kind kind = Kind::Note;
    int depth = 0;               // nesting: GUP call > fault
    const char* function = "";   // the upstream function modelled (static string)
    std::string message;
    vaddr_t addr = 0;
    uint64_t pfn = 0;
    bool has_pfn = false;
    int64_t before = 0, after = 0;          // Ref: refcount; Call: nr_pages; Return: -, ret
    int64_t pin_before = 0, pin_after = 0;  // Ref: pincount (folio_maybe_dma_pinned()'s count)
};

// The state of one address space at a moment, for pictures of a step
// (explain --html): each VMA with its present leaf entries and their pages.
struct PteSnap {
    vaddr_t addr = 0;
    std::string level;       // "pte", "pmd", "pud"
    std::string bits;        // pte::describe()
    uint64_t pfn = 0;
    bool has_page = false;   // a struct page backs the pfn
    int refcount = 0, pincount = 0, mapcount = 0;
    std::string zone;        // "Normal", "Movable", "Device" (+ ", CMA")
    bool anon = false, anon_exclusive = false, zero = false;
};
struct VmaSnap {
    vaddr_t start = 0, end = 0;
    std::string flags;        // VM_* names
    std::vector<PteSnap> ptes;  // present leaves, in address order
    bool truncated = false;     // more leaves than max_leaves
};
// Takes the mmap_lock for read and the page-table lock; call with neither held.
std::vector<VmaSnap> snapshot_mm(MmStruct& mm, size_t max_leaves_per_vma);

// Records the events of one thread while installed (RecorderInstall).
class Recorder {
public:
    Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    const std::vector<Event>& events() const { return events_; }
    std::vector<Event> take();  // the events so far; the recorder is emptied
    void add(Event e);
    int depth = 0;

    // How many Recorders this thread ever created: a test's proof that a
    // plain run allocates none.
    static unsigned long created_on_this_thread();

private:
    std::vector<Event> events_;
};

extern thread_local Recorder* tl_recorder;

inline bool on() { return tl_recorder != nullptr; }

// Installs `r` on this thread for its lifetime (nullptr: tracing off).
class RecorderInstall {
public:
    explicit RecorderInstall(Recorder* r) : prev_(tl_recorder) { tl_recorder = r; }
    ~RecorderInstall() { tl_recorder = prev_; }
    RecorderInstall(const RecorderInstall&) = delete;
    RecorderInstall& operator=(const RecorderInstall&) = delete;

private:
    Recorder* prev_;
};

// ---- out-of-line halves (trace.cpp); call only through the hooks below ----
void rec_call_begin(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, unsigned flags);
void rec_call_end(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, long ret, bool has_ret);
void rec_fast(vaddr_t start, unsigned long asked, unsigned long took);
void rec_fast_stop(vaddr_t addr, uint64_t entry, unsigned flags, const char* why);
void rec_check(const char* rule, bool fired);
void rec_check_result(const Vma& vma, vaddr_t addr, int err);
void rec_follow(vaddr_t addr, const Page* page, int err);
void rec_fault_begin(const Vma& vma, vaddr_t addr, unsigned fault_flags);
void rec_fault_end(const Vma& vma, vaddr_t addr, unsigned ret);
void rec_decision(const char* fn, vaddr_t addr, const Page* page, const char* what);
void rec_note(Kind kind, const char* fn, vaddr_t addr, const std::string& what);
void rec_ref(const char* fn, const Folio* folio, int ref_before, int pin_before);
int folio_pins(const Folio* folio);

// ---- hooks: one line at each call site; free when no recorder is installed ----

// A GUP entry point: records the call and the PTEs of its range on entry,
// and the PTEs and the return value on exit (`return scope.ret(...)`).
class CallScope {
public:
    CallScope(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, unsigned flags)
        : fn_(fn), mm_(mm), start_(start), nr_(nr) {
        if (tl_recorder) {
            rec_call_begin(fn, mm, start, nr, flags);
            open_ = true;
        }
    }
    template <class T>
    T ret(T r) {
        if (tl_recorder && open_) rec_call_end(fn_, mm_, start_, nr_, static_cast<long>(r), true);
        open_ = false;
        return r;
    }
    // Returned before ret() (arguments refused): close the call anyway.
    ~CallScope() {
        if (tl_recorder && open_) rec_call_end(fn_, mm_, start_, nr_, 0, false);
    }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

private:
    const char* fn_;
    MmStruct* mm_;
    vaddr_t start_;
    unsigned long nr_;
    bool open_ = false;
};

// try_grab_folio()/gup_put_folio(): the folio's counts before (at
// construction) and after (at destruction).
class RefScope {
public:
    RefScope(const char* fn, const Folio* folio) : fn_(fn), folio_(folio) {
        if (tl_recorder) snapshot();
    }
    ~RefScope() {
        if (tl_recorder && armed_) rec_ref(fn_, folio_, ref_, pin_);
    }
    RefScope(const RefScope&) = delete;
    RefScope& operator=(const RefScope&) = delete;

private:
    void snapshot();
    const char* fn_;
    const Folio* folio_;
    int ref_ = 0, pin_ = 0;
    bool armed_ = false;
};

inline unsigned long fast(vaddr_t start, unsigned long asked, unsigned long took) {
    if (tl_recorder) rec_fast(start, asked, took);
    return took;
}
// gup_fast(): the walk gives up at `addr` for `why`; returns false for `return`.
inline bool fast_stop(vaddr_t addr, uint64_t entry, unsigned flags, const char* why) {
    if (tl_recorder) rec_fast_stop(addr, entry, flags, why);
    return false;
}
// One rule of check_vma_flags(): returns `fired` unchanged.
inline bool check(bool fired, const char* rule) {
    if (tl_recorder) rec_check(rule, fired);
    return fired;
}
inline void check_result(const Vma& vma, vaddr_t addr, int err) {
    if (tl_recorder) rec_check_result(vma, addr, err);
}
inline void follow(vaddr_t addr, const Page* page, int err) {
    if (tl_recorder) rec_follow(addr, page, err);
}
inline void fault_begin(const Vma& vma, vaddr_t addr, unsigned fault_flags) {
    if (tl_recorder) rec_fault_begin(vma, addr, fault_flags);
}
inline unsigned fault_end(unsigned ret, const Vma& vma, vaddr_t addr) {
    if (tl_recorder) rec_fault_end(vma, addr, ret);
    return ret;
}
inline void decision(const char* fn, vaddr_t addr, const Page* page, const char* what) {
    if (tl_recorder) rec_decision(fn, addr, page, what);
}
void rec_longterm_round(int round, vaddr_t start, long nr_pinned, long rc);
// __gup_longterm_locked(): one round of pin + check_and_migrate_movable_pages().
inline void longterm_round(int round, vaddr_t start, long nr_pinned, long rc) {
    if (tl_recorder) rec_longterm_round(round, start, nr_pinned, rc);
}
inline void note(Kind kind, const char* fn, vaddr_t addr, const char* what) {
    if (tl_recorder) rec_note(kind, fn, addr, what);
}

}  // namespace trace
}  // namespace pl
