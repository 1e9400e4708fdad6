// pinlab — the pin tracker: who holds each GUP reference, and reports when one
// is released by the wrong call (seed 004, issue 4).
//
// Upstream has only the global balance nr_foll_pin_acquired ==
// nr_foll_pin_released and, in John Hubbard's never-merged
// CONFIG_DEBUG_GET_USER_PAGES_REFERENCES, a page_ext pin counter that made
// __put_page() WARN on a pinned page. The model goes further, always on:
// every GET and PIN that try_grab_folio() takes is recorded per folio with
// its owner (the innermost PinOwnerScope of the calling thread, else the C
// GUP entry point), flags and step, and misuse is reported through
// Kernel::report() with a short stable kind (see include/pinlab/kapi.h).
//
// Bookkeeping of the model, not of the modelled kernel, and off the pin
// path's critical cost: the common case (every GUP reference on a folio
// taken by one call) lives in one word on the folio's head page
// (Page::lru.track.gup: a count and the id of a shared record naming the
// owner, flags and step), updated with one compare-and-swap, no lock and no
// allocation. A folio whose references come from several records spills to
// a side table under a mutex. Reports made while references change
// concurrently on the same folio are best effort.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pl {

class Kernel;
class Folio;
struct Page;

// The owner of the references a thread takes while it is alive: a driver
// and its call site ("io_uring", "io_pin_pages"), or a test or scenario
// line. Strings must outlive every record made under the scope (literals).
// Scopes nest; the innermost one names the owner.
class PinOwnerScope {
public:
    PinOwnerScope(const char* owner, const char* site);
    ~PinOwnerScope();
    PinOwnerScope(const PinOwnerScope&) = delete;
    PinOwnerScope& operator=(const PinOwnerScope&) = delete;

    const char* owner() const { return owner_; }
    const char* site() const { return site_; }

private:
    const char* owner_;
    const char* site_;
    PinOwnerScope* prev_;
};

// Set by each C GUP entry point (pin_user_pages_fast() ...): the default owner
// when no PinOwnerScope is active, and the call's step (the kernel's count of
// GUP entry calls, starting at 1). The outermost entry call decides.
class GupCallScope {
public:
    explicit GupCallScope(const char* entry);
    ~GupCallScope();
    GupCallScope(const GupCallScope&) = delete;
    GupCallScope& operator=(const GupCallScope&) = delete;

private:
    bool outer_;
};

// --- hooks (src/gup/pin_accounting.cpp, src/kapi/kapi.cpp) --------------------

// try_grab_folio() took a GET (flags & FOLL_GET) or PIN of `refs`.
void pin_track_grab(Kernel& k, const Folio* f, int refs, unsigned flags);
// What pin_track_release() found.
struct PinTrackRelease {
    bool ok = true;        // false: PINs released that are not held (reported); release nothing
    int untracked = 0;     // of a GET release: references the tracker did not hold as GETs
};
// `refs` GET/PIN references released through GUP's own release
// (gup_put_folio()). Releasing PINs the tracker does not hold is reported
// ("unpin_not_pinned"/"double_unpin") and gives ok = false.
[[nodiscard]] PinTrackRelease pin_track_release(Kernel* k, const Folio* f, const Page* page, int refs,
                                                unsigned flags);
// Outstanding PINs on `f` recorded by the tracker.
long pin_track_pins(const Folio* f);
// The references GUP's GETs and PINs hold on `f`, in _refcount units (a PIN
// of a small folio is GUP_PIN_COUNTING_BIAS; the 4 KiB zero page none).
long pin_track_refcount_share(Kernel& k, const Folio* f);
// `f` is being freed: its word goes back to the buddy allocator. A record of
// released pins is kept aside, so that a late unpin is still a double unpin.
void pin_track_folio_freed(Kernel& k, const Folio* f);

// C put_page() of `page` in kernel `k` drops one reference. Reports
// "put_page_on_pinned" when the folio has outstanding PINs and no GET or
// other reference besides the PINs' own (so the put can only be eating a
// pin), and "pinned_page_moved" when the put would free a folio that still
// has PINs. Settles the reference ledger (a GUP GET's reference or
// Kernel::ref_note's) for the put; the caller then drops the reference.
void pin_track_put_page(Kernel& k, const Folio* f, const Page* page);

// A folio that may still be pinned is being moved away from its users:
// migrated, truncated out of its file, or moved/evicted/freed by a driver
// (TTM, dma-buf). Reports "pinned_page_moved" when `f` has outstanding PINs
// in `k`: a device holding the pin goes on using the old frame. `where`
// names the kernel function ("truncate_inode_pages_range", "ttm_bo_move"),
// `how` the event in words ("truncated", "moved to VRAM"). Returns whether
// it reported.
bool pin_track_moved(Kernel& k, const Folio* f, const Page* page, const char* where, const char* how);

// GUP took a reference on a page that the kernel mapped with a PFN entry
// (VM_PFNMAP, or a huge PFN mapping without pmd_special/devmap): the page is
// the driver's, not refcounted for GUP (seed 003). Reports "pfnmap_gup".
void pin_track_pfnmap_gup(Kernel& k, const Folio* f, const Page* page, const char* where, const std::string& what);

// Leaked pins: every PIN still recorded for `k` is reported ("leak", naming
// its owner) once and quarantined: its reference is kept, so the frame is
// never reused. `when` says which event found it ("exit", "pl_kernel_free").
void pin_track_leak_scan(Kernel& k, const char* when);
// Task `pid` exited (after exit_files()): the pins its own GUP calls took
// (outside any driver's PinOwnerScope) and never released leaked; reported
// and quarantined as above.
void pin_track_task_exit(Kernel& k, int pid);
// munmap() by task `pid` left the folios of `unmapped` with no mapping at
// all: pins its own GUP calls still hold on them can no longer be reached
// through any address, so they are reported as leaked at "munmap".
void pin_track_munmap(Kernel& k, int pid, const std::vector<const Folio*>& unmapped);
// Frames held by quarantined (leaked) pins of `k`.
unsigned long pin_track_quarantined_pages(Kernel& k);
// Outstanding PINs of `k` recorded for `owner` (an owner scope's owner or a
// GUP entry point's name); owner == nullptr: all of them.
long pin_track_balance(Kernel& k, const char* owner);
// Drops every record of `k` (the kernel is going away).
void pin_track_forget_kernel(Kernel& k);

}  // namespace pl
