// pinlab — the out-of-line half of the explain recorder (trace.h). Runs only
// while a Recorder is installed on the calling thread.
#include "debug/trace.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "gup/foll_flags.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/folio.h"
#include "mm/mm_struct.h"
#include "mm/page_table.h"
#include "mm/physmem.h"
#include "mm/pte.h"
#include "mm/vm_flags.h"
#include "mm/vma.h"

namespace pl::trace {

thread_local Recorder* tl_recorder = nullptr;

namespace {

thread_local unsigned long tl_created = 0;

// Explaining a huge range would drown the story: the PTEs of at most this
// many pages per call are shown.
constexpr unsigned long kMaxPtesPerCall = 8;

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string errno_name(long err) {
    switch (-err) {
        case EFAULT: return "-EFAULT";
        case EOPNOTSUPP: return "-EOPNOTSUPP";
        case ENOMEM: return "-ENOMEM";
        case EINVAL: return "-EINVAL";
        case EAGAIN: return "-EAGAIN";
        case EBUSY: return "-EBUSY";
        case EEXIST: return "-EEXIST";
        case EMLINK: return "-EMLINK (unshare needed)";
        case EINTR: return "-EINTR";
        case EHWPOISON: return "-EHWPOISON";
        case EOVERFLOW: return "-EOVERFLOW";
        default: return std::to_string(err);
    }
}

template <class T>
std::string flag_names(unsigned v, const std::initializer_list<std::pair<T, const char*>>& names) {
    std::string out;
    for (const auto& [bit, name] : names) {
        if (v & bit) {
            out += (out.empty() ? "" : "|");
            out += name;
            v &= ~bit;
        }
    }
    if (v) out += (out.empty() ? "" : "|") + hex(v);
    return out.empty() ? "0" : out;
}

std::string foll_names(unsigned f) {
    return flag_names<unsigned>(
        f, {{FOLL_WRITE, "FOLL_WRITE"},         {FOLL_GET, "FOLL_GET"},
            {FOLL_PIN, "FOLL_PIN"},             {FOLL_LONGTERM, "FOLL_LONGTERM"},
            {FOLL_FORCE, "FOLL_FORCE"},         {FOLL_DUMP, "FOLL_DUMP"},
            {FOLL_NOWAIT, "FOLL_NOWAIT"},       {FOLL_NOFAULT, "FOLL_NOFAULT"},
            {FOLL_HWPOISON, "FOLL_HWPOISON"},   {FOLL_ANON, "FOLL_ANON"},
            {FOLL_SPLIT_PMD, "FOLL_SPLIT_PMD"}, {FOLL_PCI_P2PDMA, "FOLL_PCI_P2PDMA"},
            {FOLL_INTERRUPTIBLE, "FOLL_INTERRUPTIBLE"}, {FOLL_HONOR_NUMA_FAULT, "FOLL_HONOR_NUMA_FAULT"},
            {FOLL_TOUCH, "FOLL_TOUCH"},         {FOLL_TRIED, "FOLL_TRIED"},
            {FOLL_REMOTE, "FOLL_REMOTE"},       {FOLL_FAST_ONLY, "FOLL_FAST_ONLY"},
            {FOLL_UNLOCKABLE, "FOLL_UNLOCKABLE"}, {FOLL_MADV_POPULATE, "FOLL_MADV_POPULATE"},
            {FOLL_SAME_FILE, "FOLL_SAME_FILE"}});
}

std::string fault_flag_names(unsigned f) {
    return flag_names<unsigned>(f, {{FAULT_FLAG_WRITE, "WRITE"},
                                    {FAULT_FLAG_UNSHARE, "UNSHARE"},
                                    {FAULT_FLAG_MKWRITE, "MKWRITE"},
                                    {FAULT_FLAG_ALLOW_RETRY, "ALLOW_RETRY"},
                                    {FAULT_FLAG_RETRY_NOWAIT, "RETRY_NOWAIT"},
                                    {FAULT_FLAG_KILLABLE, "KILLABLE"},
                                    {FAULT_FLAG_TRIED, "TRIED"},
                                    {FAULT_FLAG_USER, "USER"},
                                    {FAULT_FLAG_REMOTE, "REMOTE"},
                                    {FAULT_FLAG_INSTRUCTION, "INSTRUCTION"},
                                    {FAULT_FLAG_INTERRUPTIBLE, "INTERRUPTIBLE"},
                                    {FAULT_FLAG_ORIG_PTE_VALID, "ORIG_PTE_VALID"}});
}

std::string vm_fault_names(unsigned r) {
    if (!r) return "0 (handled)";
    return flag_names<unsigned>(r, {{VM_FAULT_OOM, "OOM"},
                                    {VM_FAULT_SIGBUS, "SIGBUS"},
                                    {VM_FAULT_MAJOR, "MAJOR"},
                                    {VM_FAULT_WRITE, "WRITE"},
                                    {VM_FAULT_HWPOISON, "HWPOISON"},
                                    {VM_FAULT_HWPOISON_LARGE, "HWPOISON_LARGE"},
                                    {VM_FAULT_SIGSEGV, "SIGSEGV"},
                                    {VM_FAULT_NOPAGE, "NOPAGE"},
                                    {VM_FAULT_LOCKED, "LOCKED"},
                                    {VM_FAULT_RETRY, "RETRY"},
                                    {VM_FAULT_FALLBACK, "FALLBACK"},
                                    {VM_FAULT_DONE_COW, "DONE_COW"},
                                    {VM_FAULT_COMPLETED, "COMPLETED"}});
}

const char* zone_name(ZoneId z) {
    switch (z) {
        case ZoneId::Normal: return "Normal";
        case ZoneId::Movable: return "Movable";
        case ZoneId::Device: return "Device";
    }
    return "?";
}

// "pfn 0x123 (Movable) refcount 2 pincount 0 mapcount 1" for the folio of `page`.
std::string page_state(const PhysMem& mem, const Page* page) {
    if (!page) return "no struct page";
    const Folio* f = page_folio(page);
    std::string s = "pfn " + hex(mem.page_to_pfn(page)) + " (" + zone_name(f->zone()) +
                    (mem.is_cma_page(page) ? ", CMA" : "") + ") refcount " + std::to_string(f->ref_count()) +
                    " pincount " + std::to_string(folio_pins(f)) + " mapcount " + std::to_string(f->mapcount());
    if (mem.is_any_zero_folio(f)) s += " zero-page";
    return s;
}

// The leaf entry mapping `addr` with the state of its page. Takes the
// page-table lock: call only where the caller does not hold it.
std::string pte_text(MmStruct& mm, vaddr_t addr) {
    sync::SpinGuard g(mm.page_table_lock);
    PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
    if (!leaf.slot || pte::none(leaf.entry)) return "none";
    const char* lvl = leaf.level == PtLevel::Pte ? "pte" : leaf.level == PtLevel::Pmd ? "pmd" : "pud";
    std::string s = std::string(lvl) + " " + pte::describe(leaf.entry);
    if (pte::present(leaf.entry) && !(leaf.entry & pte::TABLE)) {
        const uint64_t span = 1ULL << level_shift(leaf.level);
        const pfn_t pfn = pte::pfn(leaf.entry) + ((addr & (span - 1)) >> PAGE_SHIFT);
        if (const Page* p = mm.kernel.mem->pfn_to_page(pfn)) s += "  [" + page_state(*mm.kernel.mem, p) + "]";
    }
    return s;
}

void add(Kind kind, const char* fn, vaddr_t addr, std::string msg) {
    Event e;
    e.kind = kind;
    e.function = fn;
    e.addr = addr;
    e.message = std::move(msg);
    tl_recorder->add(std::move(e));
}

void ptes(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, const char* when) {
    if (!mm) return;
    start &= ~(PAGE_SIZE - 1);
    const unsigned long n = nr < kMaxPtesPerCall ? nr : kMaxPtesPerCall;
    for (unsigned long i = 0; i < n; ++i) {
        const vaddr_t a = start + i * PAGE_SIZE;
        if (a < start) break;
        add(Kind::Pte, fn, a, std::string(when) + " " + hex(a) + ": " + pte_text(*mm, a));
    }
    if (nr > n) add(Kind::Pte, fn, start + n * PAGE_SIZE, "(" + std::to_string(nr - n) + " more pages not shown)");
}

MmStruct* current_mm() {
    Task* t = current();
    return t ? t->mm : nullptr;
}

const PhysMem* current_mem() {
    MmStruct* mm = current_mm();
    return mm ? mm->kernel.mem.get() : nullptr;
}

}  // namespace

std::string_view kind_name(Kind k) {
    switch (k) {
        case Kind::Call: return "call";
        case Kind::Return: return "return";
        case Kind::FastPath: return "fast";
        case Kind::FastStop: return "fast-stop";
        case Kind::Check: return "check";
        case Kind::CheckResult: return "check-result";
        case Kind::Follow: return "follow";
        case Kind::Fault: return "fault";
        case Kind::FaultDone: return "fault-done";
        case Kind::Decision: return "decision";
        case Kind::Lock: return "lock";
        case Kind::Longterm: return "longterm";
        case Kind::Migrate: return "migrate";
        case Kind::Ref: return "ref";
        case Kind::Pte: return "pte";
        case Kind::Fork: return "fork";
        case Kind::Note: return "note";
    }
    return "?";
}

Recorder::Recorder() { ++tl_created; }

unsigned long Recorder::created_on_this_thread() { return tl_created; }

void Recorder::add(Event e) {
    e.depth = depth;
    events_.push_back(std::move(e));
}

std::vector<Event> Recorder::take() {
    std::vector<Event> out;
    out.swap(events_);
    depth = 0;
    return out;
}

int folio_pins(const Folio* folio) {
    // folio_maybe_dma_pinned()'s reading: _pincount for large folios,
    // _refcount in units of GUP_PIN_COUNTING_BIAS for small ones.
    return folio->is_large() ? folio->pincount() : folio->ref_count() / GUP_PIN_COUNTING_BIAS;
}

void rec_call_begin(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, unsigned flags) {
    if (!mm) mm = current_mm();
    Event e;
    e.kind = Kind::Call;
    e.function = fn;
    e.addr = start;
    e.before = static_cast<int64_t>(nr);
    e.message = std::string(fn) + "(" + hex(start) + ", " + std::to_string(nr) + ", " + foll_names(flags) + ")";
    tl_recorder->add(std::move(e));
    ++tl_recorder->depth;
    ptes(fn, mm, start, nr, "before");
}

void rec_call_end(const char* fn, MmStruct* mm, vaddr_t start, unsigned long nr, long ret, bool has_ret) {
    if (!mm) mm = current_mm();
    if (!has_ret) {
        if (tl_recorder->depth > 0) --tl_recorder->depth;
        add(Kind::Return, fn, start, std::string(fn) + " refused its arguments (is_valid_gup_args)");
        return;
    }
    ptes(fn, mm, start, nr, "after ");
    if (tl_recorder->depth > 0) --tl_recorder->depth;
    Event e;
    e.kind = Kind::Return;
    e.function = fn;
    e.addr = start;
    e.after = ret;
    e.message = std::string(fn) + " returned " + (ret < 0 ? errno_name(ret) : std::to_string(ret));
    tl_recorder->add(std::move(e));
}

void rec_fast(vaddr_t start, unsigned long asked, unsigned long took) {
    Event e;
    e.kind = Kind::FastPath;
    e.function = "gup_fast";
    e.addr = start;
    e.before = static_cast<int64_t>(asked);
    e.after = static_cast<int64_t>(took);
    e.message = took == asked ? "fast path took all " + std::to_string(took) + " page(s), lockless"
                : took == 0   ? "fast path took nothing: slow path for all " + std::to_string(asked) + " page(s)"
                              : "fast path took " + std::to_string(took) + " of " + std::to_string(asked) +
                                  " page(s): slow path for the rest";
    tl_recorder->add(std::move(e));
}

void rec_fast_stop(vaddr_t addr, uint64_t entry, unsigned flags, const char* why) {
    std::string msg = (addr ? "fast path stops at " + hex(addr) + ": " : std::string("fast path stops: ")) + why;
    if (entry) msg += " (entry " + pte::describe(entry) + ")";
    (void)flags;
    add(Kind::FastStop, "gup_fast", addr, std::move(msg));
}

void rec_check(const char* rule, bool fired) {
    Event e;
    e.kind = Kind::Check;
    e.function = "check_vma_flags";
    e.after = fired;
    e.message = rule;  // the verdict is `after`
    tl_recorder->add(std::move(e));
}

void rec_check_result(const Vma& vma, vaddr_t addr, int err) {
    Event e;
    e.kind = Kind::CheckResult;
    e.function = "check_vma_flags";
    e.addr = addr;
    e.after = err;
    // The deciding rule: the last one that fired among the checks just evaluated.
    std::string rule;
    const std::vector<Event>& ev = tl_recorder->events();
    for (auto it = ev.rbegin(); it != ev.rend() && it->kind == Kind::Check; ++it) {
        if (it->after) {
            rule = it->message;
            break;
        }
    }
    e.message = (err ? (rule.empty() ? std::string("refused") : rule) + " → " + errno_name(err) : "every rule passes → allowed") +
                "  (vma " + hex(vma.start) + "-" + hex(vma.end) + ")";
    tl_recorder->add(std::move(e));
}

void rec_follow(vaddr_t addr, const Page* page, int err) {
    Event e;
    e.kind = Kind::Follow;
    e.function = "follow_page_mask";
    e.addr = addr;
    e.after = err;
    if (page) {
        const PhysMem* mem = current_mem();
        e.has_pfn = mem != nullptr;
        if (mem) e.pfn = mem->page_to_pfn(page);
        e.message = hex(addr) + ": page found" + (mem ? ", pfn " + hex(e.pfn) : std::string());
    } else if (err == 0) {
        e.message = hex(addr) + ": no usable entry → fault it in";
    } else {
        e.message = hex(addr) + ": " + errno_name(err);
    }
    tl_recorder->add(std::move(e));
}

void rec_fault_begin(const Vma& vma, vaddr_t addr, unsigned fault_flags) {
    add(Kind::Fault, "handle_mm_fault", addr, hex(addr) + " flags " + fault_flag_names(fault_flags));
    ++tl_recorder->depth;
    add(Kind::Pte, "handle_mm_fault", addr & ~(PAGE_SIZE - 1), "before " + hex(addr & ~(PAGE_SIZE - 1)) + ": " + pte_text(*vma.mm, addr));
}

void rec_fault_end(const Vma& vma, vaddr_t addr, unsigned ret) {
    add(Kind::Pte, "handle_mm_fault", addr & ~(PAGE_SIZE - 1), "after  " + hex(addr & ~(PAGE_SIZE - 1)) + ": " + pte_text(*vma.mm, addr));
    if (tl_recorder->depth > 0) --tl_recorder->depth;
    add(Kind::FaultDone, "handle_mm_fault", addr, "→ " + vm_fault_names(ret));
}

void rec_decision(const char* fn, vaddr_t addr, const Page* page, const char* what) {
    Event e;
    e.kind = Kind::Decision;
    e.function = fn;
    e.addr = addr;
    e.message = what;
    if (page) {
        const Folio* f = page_folio(page);
        if (const PhysMem* mem = current_mem()) {
            e.has_pfn = true;
            e.pfn = mem->page_to_pfn(page);
            e.message += ": pfn " + hex(e.pfn) + " in " + zone_name(f->zone()) + (mem->is_cma_page(page) ? " (CMA)" : "");
        }
        e.before = f->ref_count();
        e.pin_before = folio_pins(f);
        e.message += " (refcount " + std::to_string(e.before) + ", pincount " + std::to_string(e.pin_before) + ")";
    }
    tl_recorder->add(std::move(e));
}

void rec_longterm_round(int round, vaddr_t start, long nr_pinned, long rc) {
    Event e;
    e.kind = Kind::Longterm;
    e.function = "__gup_longterm_locked";
    e.addr = start;
    e.before = round;
    e.after = rc;
    e.message = "round " + std::to_string(round + 1) + ": " + std::to_string(nr_pinned) + " page(s) pinned; " +
                (rc == 0         ? std::string("every folio longterm-pinnable, done")
                 : rc == -EAGAIN ? std::string("unpinnable folios migrated, pin again")
                                 : "check_and_migrate_movable_pages failed: " + errno_name(rc));
    tl_recorder->add(std::move(e));
}

namespace {

std::string vm_flag_names(vm_flags_t f) {
    static const std::pair<vm_flags_t, const char*> names[] = {
        {VM_READ, "VM_READ"},         {VM_WRITE, "VM_WRITE"},       {VM_EXEC, "VM_EXEC"},
        {VM_SHARED, "VM_SHARED"},     {VM_MAYSHARE, "VM_MAYSHARE"}, {VM_IO, "VM_IO"},
        {VM_PFNMAP, "VM_PFNMAP"},     {VM_MIXEDMAP, "VM_MIXEDMAP"}, {VM_HUGETLB, "VM_HUGETLB"},
        {VM_LOCKED, "VM_LOCKED"},     {VM_DONTCOPY, "VM_DONTCOPY"}, {VM_WIPEONFORK, "VM_WIPEONFORK"},
        {VM_HUGEPAGE, "VM_HUGEPAGE"}, {VM_UFFD_WP, "VM_UFFD_WP"}};
    std::string out;
    for (const auto& [bit, name] : names)
        if (f & bit) out += (out.empty() ? "" : "|") + std::string(name);
    return out.empty() ? "0" : out;
}

}  // namespace

std::vector<VmaSnap> snapshot_mm(MmStruct& mm, size_t max_leaves_per_vma) {
    std::vector<VmaSnap> out;
    sync::ReadGuard lock(mm.mmap_lock);
    const PhysMem& mem = *mm.kernel.mem;
    mm.for_each_vma([&](const Vma& v) {
        VmaSnap vs;
        vs.start = v.start;
        vs.end = v.end;
        vs.flags = vm_flag_names(v.flags);
        sync::SpinGuard g(mm.page_table_lock);
        vaddr_t a = v.start;
        while (a < v.end) {
            vaddr_t at = a;
            PageTable::Leaf leaf = mm.pgtable.next_leaf(&at, v.end);
            if (!leaf.slot) break;
            const uint64_t span = 1ULL << level_shift(leaf.level);
            a = at + span;
            if (!pte::present(leaf.entry) && pte::none(leaf.entry)) continue;
            if (vs.ptes.size() == max_leaves_per_vma) {
                vs.truncated = true;
                break;
            }
            PteSnap p;
            p.addr = at;
            p.level = leaf.level == PtLevel::Pte ? "pte" : leaf.level == PtLevel::Pmd ? "pmd" : "pud";
            p.bits = pte::describe(leaf.entry);
            if (pte::present(leaf.entry)) {
                p.pfn = pte::pfn(leaf.entry);
                if (const Page* pg = mem.pfn_to_page(p.pfn)) {
                    const Folio* f = page_folio(pg);
                    p.has_page = true;
                    p.refcount = f->ref_count();
                    p.pincount = folio_pins(f);
                    p.mapcount = f->mapcount();
                    p.zone = std::string(zone_name(f->zone())) + (mem.is_cma_page(pg) ? ", CMA" : "");
                    p.anon = f->is_anon();
                    p.anon_exclusive = PageAnonExclusive(pg);
                    p.zero = mem.is_any_zero_folio(f);
                }
            }
            vs.ptes.push_back(std::move(p));
        }
        out.push_back(std::move(vs));
    });
    return out;
}

void rec_note(Kind kind, const char* fn, vaddr_t addr, const std::string& what) { add(kind, fn, addr, what); }

void RefScope::snapshot() {
    if (!folio_) return;
    ref_ = folio_->ref_count();
    pin_ = folio_pins(folio_);
    armed_ = true;
}

void rec_ref(const char* fn, const Folio* folio, int ref_before, int pin_before) {
    const int ref_after = folio->ref_count();
    const int pin_after = folio_pins(folio);
    if (ref_after == ref_before && pin_after == pin_before) return;
    Event e;
    e.kind = Kind::Ref;
    e.function = fn;
    e.before = ref_before;
    e.after = ref_after;
    e.pin_before = pin_before;
    e.pin_after = pin_after;
    if (const PhysMem* mem = current_mem()) {
        e.has_pfn = true;
        e.pfn = mem->page_to_pfn(folio->head());
    }
    e.message = std::string("folio") + (e.has_pfn ? " pfn " + hex(e.pfn) : std::string()) + ": refcount " +
                std::to_string(ref_before) + " → " + std::to_string(ref_after) + ", pincount " +
                std::to_string(pin_before) + " → " + std::to_string(pin_after);
    tl_recorder->add(std::move(e));
}

}  // namespace pl::trace
