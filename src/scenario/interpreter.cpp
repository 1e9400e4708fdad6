#include "scenario/interpreter.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "gup/foll_flags.h"
#include "base/sync/sched_point.h"
#include "pinlab/kapi.h"
#include "scenario/driver_commands.h"
#include "scenario/parser.h"

namespace pl::scenario {
namespace {

constexpr const char* kKinds[] = {"warn",  "put_page_on_pinned", "unpin_not_pinned", "double_unpin",
                                  "leak",  "pinned_page_moved",  "dangling_vma",     "pfnmap_gup"};

// A step that cannot go on (failed expectation, skip, runtime error): thrown
// inside the interpreter only, caught by run().
struct StepStop {
    Verdict verdict;
    SourceLoc loc;
    std::string message;
};

// mmap_read_lock() for the duration of one call, as the calling driver
// would hold it (RAII: released on every path).
class MmapReadGuard {
public:
    explicit MmapReadGuard(mm_struct* mm) : mm_(mm) { mmap_read_lock(mm_); }
    ~MmapReadGuard() {
        if (held_) mmap_read_unlock(mm_);
    }
    // GUP dropped the lock itself and said so (*locked == 0).
    void dropped() { held_ = false; }
    MmapReadGuard(const MmapReadGuard&) = delete;
    MmapReadGuard& operator=(const MmapReadGuard&) = delete;

private:
    mm_struct* mm_;
    bool held_ = true;
};

std::string hex(unsigned long v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%#lx", v);
    return buf;
}

class Interpreter {
public:
    Interpreter(const Scenario& s, std::string config, StepObserver* obs)
        : s_(s), config_(std::move(config)), obs_(obs) {}

    // The whole scenario on the calling thread, the race group's blocks one
    // after another in file order (the schedule without preemption).
    Outcome run() {
        serial_ = true;  // nothing runs halfway beside a step: check after each
        if (!begin()) return outcome();
        if (setup())
            for (size_t t = 0; t < s_.threads.size(); ++t) run_thread(t);
        return finish();
    }

    // ---- staged run (StagedRun, for the explorer) ----------------------------
    // False when the configuration is bad (finish() reports it).
    bool begin() {
        k_ = pl_kernel_new(config_.c_str());
        if (!k_) {
            out_.verdict = Verdict::Error;
            out_.reason = std::string("bad configuration: ") + pl_last_error();
            out_.diag = {s_.name, {}, out_.reason, ""};
            done_ = true;
            return false;
        }
        baseline_ = pl_nr_allocated_pages(k_);
        for (size_t i = 0; i < s_.stmts.size(); ++i) {
            if (s_.stmts[i].thread < 0) continue;
            if (group_begin_ == npos) group_begin_ = i;
            group_end_ = i + 1;
        }
        if (group_begin_ == npos) group_begin_ = group_end_ = s_.stmts.size();
        between_.assign(s_.threads.size(), 1);
        return true;
    }

    // The statements before the race group; false when the scenario stopped.
    bool setup() { return run_main(0, group_begin_); }

    // Thread block t's statements, on whatever OS thread calls it. A failed
    // step ends the block; the first failure in time is the scenario's.
    void run_thread(size_t t) {
        if (stop_) return;
        racing_ = !serial_;
        const Stmt* at = nullptr;
        try {
            for (size_t i = group_begin_; i < group_end_; ++i) {
                const Stmt& st = s_.stmts[i];
                if (st.thread != static_cast<int>(t)) continue;
                // Between two operations, like a return to user space: the
                // explorer may switch threads here, and when every thread is
                // between operations it checks the invariants (below).
                sync::point(sync::Point::Resched, &between_);
                at = &st;
                between_[t] = 0;
                if (on_step_) on_step_(t, st.loc.line);
                if (obs_) obs_->before_step(st);
                step(st);
                if (obs_) obs_->after_step(st);
                if (obs_) obs_->state(tasks_);
                ++completed_;
                between_[t] = 1;
            }
            sync::point(sync::Point::Resched, &between_);  // the block's end: between operations too
        } catch (const StepStop& stop) {
            between_[t] = 1;
            if (obs_ && at) obs_->after_step(*at);
            if (!thread_stop_) {
                thread_stop_ = stop;
                thread_stop_at_ = at;
            }
        }
        pl_set_current(nullptr);  // the OS thread may run other work next
    }

    // The join, the statements after the group, teardown, the final checks.
    Outcome finish() {
        if (done_) return out_;
        racing_ = false;
        if (!stop_ && thread_stop_) record(*thread_stop_, thread_stop_at_);
        if (!stop_ && group_begin_ < group_end_ && pl_kernel_check(k_) != 0) {
            corrupt_ = true;
            const SourceLoc at = s_.thread_locs.empty() ? SourceLoc{} : s_.thread_locs.front();
            record(StepStop{Verdict::Fail, at,
                            std::string("invariant broken when the thread blocks ended: ") + pl_last_error()},
                   nullptr);
            out_.diag.loc = at;
            out_.diag.source_line = "thread " + s_.threads.front() + " {";
        }
        if (!stop_ && run_main(group_end_, s_.stmts.size())) {
            try {
                teardown();
                final_checks();
            } catch (const StepStop& stop) {
                record(stop, nullptr);
            }
        }
        if (stop_ && !corrupt_) teardown();
        // A kernel whose invariants broke (a reference put twice, say) may
        // not even tear down: truncating a page cache that holds a folio at
        // refcount 0 waits for it forever, as find_lock_entries() would.
        // Such a kernel is abandoned, not freed: the runner must terminate.
        if (!corrupt_) pl_kernel_free(k_);
        else pl_kernel_abandon(k_);
        k_ = nullptr;
        done_ = true;
        return outcome();
    }

    const std::vector<std::pair<std::string, std::string>>& explore_words() const { return explore_words_; }

    // Under the explorer, at every interleaving point: when every race
    // thread is between two operations (or not started, or ended), nothing
    // is halfway done, so the invariants must hold; checked once per such
    // state (an operation completed since the last check).
    std::optional<std::string> check_between_steps() {
        if (!racing_ || stop_ || corrupt_ || completed_ == checked_at_) return std::nullopt;
        for (char b : between_)
            if (!b) return std::nullopt;
        checked_at_ = completed_;
        if (pl_kernel_check(k_) == 0) return std::nullopt;
        corrupt_ = true;
        return s_.name + ": invariant broken between operations of the thread blocks: " + pl_last_error();
    }
    void on_step(std::function<void(size_t, int)> fn) { on_step_ = std::move(fn); }

    ~Interpreter() {
        // An execution the explorer aborted (a deadlock) never reached finish().
        if (!done_ && k_) {
            if (!corrupt_) teardown();
            if (!corrupt_) pl_kernel_free(k_);
            else pl_kernel_abandon(k_);
        }
    }

private:
    static constexpr size_t npos = static_cast<size_t>(-1);

    // Main-line statements [from, to); false when one stopped the scenario.
    bool run_main(size_t from, size_t to) {
        const Stmt* at = nullptr;
        try {
            for (size_t i = from; i < to; ++i) {
                const Stmt& st = s_.stmts[i];
                at = &st;
                if (obs_) obs_->before_step(st);
                step(st);
                if (obs_) obs_->after_step(st);
                if (obs_) obs_->state(tasks_);
            }
        } catch (const StepStop& stop) {
            if (obs_ && at) obs_->after_step(*at);
            record(stop, at);
            return false;
        }
        return true;
    }

    void record(const StepStop& stop, const Stmt* at) {
        stop_ = stop;
        out_.verdict = stop.verdict;
        out_.reason = stop.message;
        out_.diag = {s_.name, stop.loc, stop.message, at ? at->line_text : ""};
        if (at && stop.loc.line != at->loc.line) out_.diag.source_line.clear();
        if (!at) out_.diag.loc = {};
    }

    Outcome outcome() const { return out_; }

    [[noreturn]] void fail(SourceLoc loc, std::string msg) { throw StepStop{Verdict::Fail, loc, std::move(msg)}; }

    task_struct* task(const std::string& name, SourceLoc loc) {
        auto it = tasks_.find(name);
        if (it == tasks_.end() || !it->second) fail(loc, "task '" + name + "' does not exist");
        return it->second;
    }

    void check_invariants(SourceLoc loc) {
        // Inside the race group another thread may be halfway through an
        // operation: the join checks instead.
        if (racing_) return;
        if (pl_kernel_check(k_) != 0) {
            corrupt_ = true;
            fail(loc, std::string("invariant broken after this step: ") + pl_last_error());
        }
    }

    void step(const Stmt& st) {
        if (st.guard && !eval(*st.guard).truthy()) return;
        switch (st.kind) {
            case Stmt::Kind::Task: {
                task_struct* t = pl_task_new(k_);
                if (!t) fail(st.loc, std::string("pl_task_new failed: ") + pl_last_error());
                tasks_[st.names[0]] = t;
                order_.push_back(st.names[0]);
                return;
            }
            case Stmt::Kind::Thread: {
                task_struct* th = pl_thread_new(task(st.names[1], st.loc));
                if (!th) fail(st.loc, std::string("pl_thread_new failed: ") + pl_last_error());
                tasks_[st.names[0]] = th;
                order_.push_back(st.names[0]);
                check_invariants(st.loc);
                return;
            }
            case Stmt::Kind::Fork: {
                task_struct* child = pl_fork(task(st.names[0], st.loc));
                if (!child) fail(st.loc, std::string("fork failed: ") + pl_last_error());
                tasks_[st.names[1]] = child;
                order_.push_back(st.names[1]);
                check_invariants(st.loc);
                return;
            }
            case Stmt::Kind::Exit: {
                task_struct* t = task(st.names[0], st.loc);
                if (pl_current() == t) pl_set_current(nullptr);
                pl_exit(t);
                tasks_[st.names[0]] = nullptr;
                check_invariants(st.loc);
                return;
            }
            case Stmt::Kind::Do: {
                Value v = eval(*st.expr);
                if (!st.name.empty()) vars_[st.name] = std::move(v);
                check_invariants(st.loc);
                return;
            }
            case Stmt::Kind::Expect: return expect(st);
            case Stmt::Kind::Skip: {
                if (st.expr && !eval(*st.expr).truthy()) return;
                throw StepStop{Verdict::Skip, st.loc, st.name};
            }
            case Stmt::Kind::Allow: allowed_.insert(st.name); return;
            case Stmt::Kind::Explore:
                explore_words_.insert(explore_words_.end(), st.words.begin(), st.words.end());
                return;
        }
    }

    void expect(const Stmt& st) {
        const Expr& e = *st.expr;
        if (e.kind == Expr::Kind::Compare || e.kind == Expr::Kind::Contains) {
            const Value a = eval(*e.kids[0]);
            const Value b = eval(*e.kids[1]);
            const bool holds = compare(e, a, b);
            if (obs_) obs_->compared(st, a.show(), e.op.empty() ? "contains" : e.op, b.show(), holds != st.negate);
            if (holds != st.negate) return;
            if (e.op == "==" && !st.negate) fail(e.loc, "expectation failed: expected " + b.show() + ", got " + a.show());
            if (e.op == "contains")
                fail(e.loc, "expectation failed: expected " + a.show() + (st.negate ? " not" : "") + " to contain " +
                                b.show());
            fail(e.loc, "expectation failed: expected " + std::string(st.negate ? "not " : "") + a.show() + " " + e.op +
                            " " + b.show());
        }
        last_check_error_.clear();
        const Value v = eval(e);
        if (obs_) obs_->compared(st, v.show(), "", "", v.truthy() != st.negate);
        if (v.truthy() != st.negate) return;
        std::string msg = "expectation failed: expected " + std::string(st.negate ? "false" : "true") + ", got " + v.show();
        if (!last_check_error_.empty()) msg += ": " + last_check_error_;
        fail(e.loc, msg);
    }

    bool compare(const Expr& e, const Value& a, const Value& b) {
        if (e.kind == Expr::Kind::Contains) {
            if (a.type != Type::Str || b.type != Type::Str)
                fail(e.loc, "'contains' needs strings, got " + a.show() + " and " + b.show());
            return a.s.find(b.s) != std::string::npos;
        }
        if (e.op == "==") return a.equals(b);
        if (e.op == "!=") return !a.equals(b);
        const int64_t x = integer(a, e.loc), y = integer(b, e.loc);
        if (e.op == "<") return x < y;
        if (e.op == "<=") return x <= y;
        if (e.op == ">") return x > y;
        return x >= y;
    }

    int64_t integer(const Value& v, SourceLoc loc) {
        if (v.type != Type::Int && v.type != Type::Bool) fail(loc, "expected an integer, got " + v.show());
        return v.i;
    }
    const std::string& string(const Value& v, SourceLoc loc) {
        if (v.type != Type::Str) fail(loc, "expected a string, got " + v.show());
        return v.s;
    }
    page* one_page(const Value& v, SourceLoc loc) {
        if ((v.type != Type::Page && v.type != Type::Pages) || v.pages.size() != 1 || !v.pages[0])
            fail(loc, "expected a page, got " + v.show());
        return v.pages[0];
    }
    page* page_of(const Expr& e) {
        Value v = eval(e);
        page* p = v.pages.empty() ? nullptr : v.pages[0];
        return p;
    }
    unsigned long ulong(const Expr& e) { return static_cast<unsigned long>(integer(eval(e), e.loc)); }

    Value eval(const Expr& e) {
        if (!obs_) return eval_node(e);
        Value v = eval_node(e);
        obs_->evaluated(e, v);
        return v;
    }

    Value eval_node(const Expr& e) {
        switch (e.kind) {
            case Expr::Kind::Literal: return e.value;
            case Expr::Kind::Var: {
                auto it = vars_.find(e.name);
                if (it == vars_.end()) fail(e.loc, "variable '" + e.name + "' has no value");
                return it->second;
            }
            case Expr::Kind::Index: {
                auto it = vars_.find(e.name);
                if (it == vars_.end()) fail(e.loc, "variable '" + e.name + "' has no value");
                if (it->second.type != Type::Pages) fail(e.loc, "'" + e.name + "' is " + it->second.show() + ", not a page list");
                const int64_t i = integer(eval(*e.kids[0]), e.kids[0]->loc);
                const auto n = static_cast<int64_t>(it->second.pages.size());
                if (i < 0 || i >= n)
                    fail(e.kids[0]->loc, "index " + std::to_string(i) + " out of range: " + e.name + " holds " +
                                             std::to_string(n) + " page(s)");
                Value v;
                v.type = Type::Page;
                v.pages = {it->second.pages[static_cast<size_t>(i)]};
                return v;
            }
            case Expr::Kind::Neg: return Value::integer(-integer(eval(*e.kids[0]), e.loc));
            case Expr::Kind::Add:
            case Expr::Kind::Sub:
            case Expr::Kind::Or: {
                const int64_t a = integer(eval(*e.kids[0]), e.kids[0]->loc);
                const int64_t b = integer(eval(*e.kids[1]), e.kids[1]->loc);
                // Wrap like the unsigned arithmetic of addresses; no UB.
                const auto ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
                const uint64_t r = e.kind == Expr::Kind::Add ? ua + ub : e.kind == Expr::Kind::Sub ? ua - ub : (ua | ub);
                return Value::integer(static_cast<int64_t>(r));
            }
            case Expr::Kind::Fill: fail(e.loc, "'fill' only as write's data");
            case Expr::Kind::Call: return exec(*e.call);
            case Expr::Kind::Vmstat: {
                const unsigned long v = pl_vmstat(k_, e.name.c_str());
                if (v == 0 && std::string(pl_last_error()).find("unknown counter '" + e.name + "'") != std::string::npos)
                    fail(e.loc, "unknown vmstat counter '" + e.name + "'");
                return Value::integer(static_cast<int64_t>(v));
            }
            case Expr::Kind::Reports: {
                if (!e.name.empty()) {
                    const int n = pl_warning_count(k_, e.name.c_str());
                    seen_[e.name] = n;
                    return Value::integer(n);
                }
                for (const char* kind : kKinds) seen_[kind] = pl_warning_count(k_, kind);
                return Value::integer(pl_warning_count(k_, nullptr));
            }
            case Expr::Kind::Dmesg: return Value::str(pl_dmesg(k_));
            case Expr::Kind::PinBalance:
                return Value::integer(pl_pin_balance(k_, e.name.empty() ? nullptr : e.name.c_str()));
            case Expr::Kind::Invariants: {
                const bool ok = pl_kernel_check(k_) == 0;
                if (!ok) {
                    last_check_error_ = pl_last_error();
                    corrupt_ = true;
                }
                return Value::boolean(ok);
            }
            case Expr::Kind::PageAt: {
                const unsigned long addr = ulong(*e.kids[0]);
                Value v;
                v.type = Type::Page;
                v.pages = {pl_virt_to_page(task(e.task, e.loc), addr)};
                return v;
            }
            case Expr::Kind::PageProp: return page_property(e);
            case Expr::Kind::SameFrame: {
                page* a = page_of(*e.kids[0]);
                page* b = page_of(*e.kids[1]);
                return Value::boolean(a && a == b);
            }
            case Expr::Kind::Pte: {
                const Expr& ref = *e.kids[0];
                return Value::str(pl_pte_describe(task(ref.task, ref.loc), ulong(*ref.kids[0])));
            }
            case Expr::Kind::Compare:
            case Expr::Kind::Contains: {
                const Value a = eval(*e.kids[0]);
                const Value b = eval(*e.kids[1]);
                return Value::boolean(compare(e, a, b));
            }
        }
        fail(e.loc, "cannot evaluate this");
    }

    Value page_property(const Expr& e) {
        const Expr& ref = *e.kids[0];
        page* p = page_of(ref);
        const std::string& prop = e.name;
        if (prop == "mapped") return Value::boolean(p != nullptr);
        if (!p) {
            std::string where = ref.kind == Expr::Kind::PageAt ? ref.task + ":" + hex(ulong(*ref.kids[0])) : "there";
            fail(ref.loc, "no page mapped at " + where);
        }
        folio* f = page_folio(p);
        if (prop == "refcount") return Value::integer(page_ref_count(p));
        if (prop == "pincount") {
            // Large folios count pins in _pincount; small ones in _refcount,
            // GUP_PIN_COUNTING_BIAS each (folio_maybe_dma_pinned()'s reading).
            if (PageCompound(p)) return Value::integer(pl_folio_pincount(f));
            return Value::integer(page_ref_count(p) / GUP_PIN_COUNTING_BIAS_);
        }
        if (prop == "mapcount") return Value::integer(page_mapcount(p));
        if (prop == "folio_refcount") return Value::integer(folio_ref_count(f));
        if (prop == "folio_mapcount") return Value::integer(folio_mapcount(f));
        if (prop == "folio_nr_pages") return Value::integer(static_cast<int64_t>(folio_nr_pages(f)));
        if (prop == "pfn") return Value::integer(static_cast<int64_t>(page_to_pfn(p)));
        if (prop == "maybe_dma_pinned") return Value::boolean(page_maybe_dma_pinned(p));
        if (prop == "anon_exclusive") return Value::boolean(PageAnonExclusive(p));
        if (prop == "exclusive") {
            // /proc/PID/pagemap's PM_MMAP_EXCLUSIVE (fs/proc/task_mmu.c
            // __folio_page_mapped_exclusively(), CONFIG_PAGE_MAPCOUNT): a
            // normal page (not the zero page) mapped exactly once; hugetlb
            // asks whether the folio is mapped by one mm only.
            if (is_zero_page(p)) return Value::boolean(false);
            if (PageHuge(p)) return Value::boolean(folio_mapcount(f) == 1);
            // Under a PMD leaf, pagemap_pmd_range() (since v6.15) asks
            // about pmd_page() -- the first page the PMD maps -- for all
            // 512 entries, not about the page at the address: after a COW
            // of one subpage in the other process, every entry reads that
            // first page's precise mapcount.
            if (ref.kind == Expr::Kind::PageAt) {
                task_struct* t = task(ref.task, ref.loc);
                const unsigned long addr = ulong(*ref.kids[0]);
                if (std::string_view(pl_pte_describe(t, addr)).ends_with(" level=pmd")) {
                    constexpr unsigned long kPmdSize = 2UL << 20;
                    if (page* first = pl_virt_to_page(t, addr & ~(kPmdSize - 1))) p = first;
                }
            }
            return Value::boolean(page_mapcount(p) == 1);
        }
        if (prop == "anon") return Value::boolean(PageAnon(p));
        if (prop == "dirty") return Value::boolean(PageDirty(p));
        if (prop == "writeback") return Value::boolean(PageWriteback(p));
        if (prop == "huge") return Value::boolean(PageHuge(p));
        if (prop == "compound") return Value::boolean(PageCompound(p));
        if (prop == "zero") return Value::boolean(is_zero_page(p));
        if (prop == "reserved") return Value::boolean(PageReserved(p));
        if (prop == "longterm_pinnable") return Value::boolean(folio_is_longterm_pinnable(f));
        fail(e.loc, "unknown page property '" + prop + "'");
    }

    static constexpr int GUP_PIN_COUNTING_BIAS_ = 1024;  // include/pinlab/kapi.h (hidden from pinlab's own sources)

    const Expr* option(const Call& c, std::string_view name, bool* present = nullptr) {
        return call_option(c, name, present);
    }

    pl_file* new_file(const std::string& fs, unsigned long size, SourceLoc loc) {
        pl_file* f = pl_file_new(k_, fs.c_str(), size);
        if (!f) fail(loc, "cannot create a " + fs + " file of " + std::to_string(size) + " bytes: " + pl_last_error());
        files_.push_back(f);
        return f;
    }

    Value exec(const Call& c) {
        task_struct* t = nullptr;
        if (!c.task.empty()) {
            t = task(c.task, c.loc);
            pl_set_current(t);
        }
        const auto& a = c.args;
        auto arg_u = [&](size_t i, unsigned long dflt = 0) { return i < a.size() ? ulong(*a[i]) : dflt; };
        const CommandSpec& spec = *c.spec;
        if (is_driver_command(spec.cmd)) return driver_exec(c, t);
        if (is_gup_call(spec.cmd)) return gup(c, t);
        switch (spec.cmd) {
            case Cmd::mmap: {
                const unsigned long len = arg_u(0);
                const int prot = static_cast<int>(arg_u(1));
                int flags = static_cast<int>(arg_u(2));
                bool present = false;
                const Expr* off_e = option(c, "off", &present);
                const unsigned long off = off_e ? ulong(*off_e) : 0;
                const Expr* at_e = option(c, "at");
                const unsigned long addr = at_e ? ulong(*at_e) : 0;
                if (option(c, "populate", &present), present) flags |= MAP_POPULATE;
                if (option(c, "fixed", &present), present) flags |= MAP_FIXED;
                if (option(c, "noreserve", &present), present) flags |= MAP_NORESERVE;
                if (const Expr* fl = option(c, "flags")) flags |= static_cast<int>(ulong(*fl));
                pl_file* f = nullptr;
                if (c.backing == "anon") {
                    flags |= MAP_ANONYMOUS;
                } else if (c.backing == "hugetlb") {
                    flags |= MAP_ANONYMOUS | MAP_HUGETLB;
                } else if (c.backing == "shmem") {
                    f = new_file("tmpfs", len + off, c.loc);
                } else if (c.backing == "memfd") {
                    f = new_file("memfd", len + off, c.loc);
                } else if (c.backing == "device") {
                    f = pl_dev_open(k_, c.backing_fs.c_str());
                    if (!f) fail(c.loc, "cannot open device " + c.backing_fs + ": " + pl_last_error());
                    files_.push_back(f);
                } else if (c.backing_file) {
                    Value fv = eval(*c.backing_file);
                    if (fv.type != Type::File || !fv.file) fail(c.backing_file->loc, "expected a file, got " + fv.show());
                    f = fv.file;
                } else {
                    const unsigned long size = c.backing_size ? ulong(*c.backing_size) : len + off;
                    f = new_file(c.backing_fs, size, c.loc);
                }
                return Value::integer(pl_mmap(t, addr, len, prot, flags, f, off));
            }
            case Cmd::munmap: return Value::integer(pl_munmap(t, arg_u(0), arg_u(1)));
            case Cmd::mprotect: return Value::integer(pl_mprotect(t, arg_u(0), arg_u(1), static_cast<int>(arg_u(2))));
            case Cmd::madvise: return Value::integer(pl_madvise(t, arg_u(0), arg_u(1), static_cast<int>(arg_u(2))));
            case Cmd::mremap: {
                const Expr* to = option(c, "to");
                int flags = static_cast<int>(arg_u(3));
                if (to) flags |= MREMAP_FIXED | MREMAP_MAYMOVE;
                return Value::integer(pl_mremap(t, arg_u(0), arg_u(1), arg_u(2), flags, to ? ulong(*to) : 0));
            }
            case Cmd::write: {
                const unsigned long addr = arg_u(0);
                const Expr& data = *a[1];
                if (data.kind == Expr::Kind::Fill) {
                    const int byte = static_cast<int>(ulong(*data.kids[0]));
                    return Value::integer(pl_memset(t, addr, byte, ulong(*data.kids[1])));
                }
                const std::string bytes = string(eval(data), data.loc);
                return Value::integer(pl_write(t, addr, bytes.data(), bytes.size()));
            }
            case Cmd::read: {
                const unsigned long len = read_len(arg_u(1), a[1]->loc);
                std::string buf(len, '\0');
                const long r = pl_read(t, arg_u(0), buf.data(), len);
                if (r < 0) return Value::integer(r);
                buf.resize(static_cast<size_t>(r));
                return Value::str(std::move(buf));
            }
            // fs/proc/base.c mem_rw(): FOLL_FORCE [| FOLL_WRITE], and -EIO
            // when nothing at all could be copied.
            case Cmd::mem_write: {
                const Expr& data = *a[1];
                std::string bytes = data.kind == Expr::Kind::Fill
                                        ? std::string(ulong(*data.kids[1]), static_cast<char>(ulong(*data.kids[0])))
                                        : string(eval(data), data.loc);
                const long r = pl_access_process_vm(t, arg_u(0), bytes.data(), bytes.size(), FOLL_FORCE | FOLL_WRITE);
                return Value::integer(r == 0 && !bytes.empty() ? -EIO : r);
            }
            case Cmd::mem_read: {
                const unsigned long len = read_len(arg_u(1), a[1]->loc);
                std::string buf(len, '\0');
                const long r = pl_access_process_vm(t, arg_u(0), buf.data(), len, FOLL_FORCE);
                if (r == 0 && len) return Value::integer(-EIO);
                if (r < 0) return Value::integer(r);
                buf.resize(static_cast<size_t>(r));
                return Value::str(std::move(buf));
            }
            case Cmd::memset: return Value::integer(pl_memset(t, arg_u(0), static_cast<int>(arg_u(1)), arg_u(2)));
            case Cmd::migrate: return Value::integer(pl_migrate_page(t, arg_u(0)));
            case Cmd::compact: return Value::integer(pl_compact_memory(k_));
            case Cmd::clear_refs: return Value::integer(pl_clear_refs(t, static_cast<int>(arg_u(0))));
            case Cmd::open: {
                Value fs = eval(*a[0]);
                Value v;
                v.type = Type::File;
                v.file = new_file(string(fs, a[0]->loc), arg_u(1), c.loc);
                return v;
            }
            case Cmd::pwrite: {
                const std::string bytes = string(eval(*a[2]), a[2]->loc);
                return Value::integer(pl_pwrite(file(*a[0]), bytes.data(), bytes.size(), arg_u(1)));
            }
            case Cmd::pread:
            case Cmd::read_disk: {
                const unsigned long len = read_len(arg_u(2), a[2]->loc);
                std::string buf(len, '\0');
                const long r = spec.cmd == Cmd::pread ? pl_pread(file(*a[0]), buf.data(), len, arg_u(1))
                                                      : pl_file_read_disk(file(*a[0]), buf.data(), len, arg_u(1));
                if (r < 0) return Value::integer(r);
                buf.resize(static_cast<size_t>(r));
                return Value::str(std::move(buf));
            }
            case Cmd::fsync: return Value::integer(pl_fsync(file(*a[0])));
            case Cmd::ftruncate: return Value::integer(pl_ftruncate(file(*a[0]), arg_u(1)));
            case Cmd::fallocate: return Value::integer(pl_fallocate(file(*a[0]), 0, arg_u(1), arg_u(2)));
            case Cmd::unpin_user_page: unpin_user_page(one_page(eval(*a[0]), a[0]->loc)); return Value::integer(0);
            case Cmd::unpin_user_pages:
            case Cmd::unpin_user_pages_dirty_lock: {
                Value list = eval(*a[0]);
                if (list.type != Type::Pages && list.type != Type::Page) fail(a[0]->loc, "expected pages, got " + list.show());
                const bool dirty_form = spec.cmd == Cmd::unpin_user_pages_dirty_lock;
                const size_t n_idx = dirty_form ? 2 : 1;
                const unsigned long n = arg_u(n_idx, list.pages.size());
                if (n > list.pages.size())
                    fail(a[n_idx]->loc, std::to_string(n) + " pages asked for, the list holds " +
                                            std::to_string(list.pages.size()));
                if (dirty_form) unpin_user_pages_dirty_lock(list.pages.data(), n, arg_u(1) != 0);
                else unpin_user_pages(list.pages.data(), n);
                return Value::integer(0);
            }
            case Cmd::unpin_user_page_range_dirty_lock: {
                page* p = one_page(eval(*a[0]), a[0]->loc);
                const unsigned long n = arg_u(1);
                // The range is physically contiguous struct pages, trusted
                // as upstream trusts its callers: keep it inside memory.
                if (n && (n > (1UL << 40) || !pl_pfn_to_page(k_, page_to_pfn(p) + n - 1)))
                    fail(a[1]->loc, std::to_string(n) + " pages from pfn " + hex(page_to_pfn(p)) +
                                        " run past the end of memory");
                unpin_user_page_range_dirty_lock(p, n, arg_u(2) != 0);
                return Value::integer(0);
            }
            case Cmd::unpin_folio: unpin_folio(page_folio(one_page(eval(*a[0]), a[0]->loc))); return Value::integer(0);
            case Cmd::unpin_user_folio:
                unpin_user_folio(page_folio(one_page(eval(*a[0]), a[0]->loc)), arg_u(1));
                return Value::integer(0);
            case Cmd::folio_add_pin: folio_add_pin(page_folio(one_page(eval(*a[0]), a[0]->loc))); return Value::integer(0);
            case Cmd::folio_add_pins:
                return Value::integer(folio_add_pins(page_folio(one_page(eval(*a[0]), a[0]->loc)), u32(*a[1])));
            case Cmd::get_dump_page: {
                // *locked == 0: get_dump_page() takes and drops the lock itself.
                int locked = 0;
                page* p = get_dump_page(arg_u(0), &locked);
                if (!c.pages_out.empty()) {
                    Value list;
                    list.type = Type::Pages;
                    if (p) list.pages = {p};
                    vars_[c.pages_out] = std::move(list);
                }
                return Value::integer(p ? 1 : 0);
            }
            case Cmd::fixup_user_fault: {
                // The caller holds the mmap_lock for read and passes no
                // `unlocked`: the fault may not drop it.
                const unsigned long addr = arg_u(0);
                const unsigned flags = u32(*a[1]);
                mm_struct* mm = pl_task_mm(t);
                MmapReadGuard lock(mm);
                return Value::integer(fixup_user_fault(mm, addr, flags, nullptr));
            }
            case Cmd::put_user_page: put_user_page(one_page(eval(*a[0]), a[0]->loc)); return Value::integer(0);
            case Cmd::put_user_pages:
            case Cmd::put_user_pages_dirty_lock: {
                Value list = eval(*a[0]);
                if (list.type != Type::Pages && list.type != Type::Page) fail(a[0]->loc, "expected pages, got " + list.show());
                const bool dirty_form = spec.cmd == Cmd::put_user_pages_dirty_lock;
                const size_t n_idx = dirty_form ? 2 : 1;
                const unsigned long n = arg_u(n_idx, list.pages.size());
                if (n > list.pages.size())
                    fail(a[n_idx]->loc, std::to_string(n) + " pages asked for, the list holds " +
                                            std::to_string(list.pages.size()));
                if (dirty_form) put_user_pages_dirty_lock(list.pages.data(), n, arg_u(1) != 0);
                else put_user_pages(list.pages.data(), n);
                return Value::integer(0);
            }
            case Cmd::put_page: {
                Value list = eval(*a[0]);
                for (page* p : list.pages)
                    if (!p) fail(a[0]->loc, "no page");
                for (page* p : list.pages) put_page(p);
                return Value::integer(0);
            }
            case Cmd::get_page: get_page(one_page(eval(*a[0]), a[0]->loc)); return Value::integer(0);
            case Cmd::set_page_dirty_lock: set_page_dirty_lock(one_page(eval(*a[0]), a[0]->loc)); return Value::integer(0);
            case Cmd::device_read: {
                page* p = one_page(eval(*a[0]), a[0]->loc);
                const unsigned long len = read_len(arg_u(2), a[2]->loc);
                std::string buf(len, '\0');
                const int r = pl_page_read(p, u32(*a[1]), buf.data(), static_cast<unsigned>(len));
                if (r < 0) return Value::integer(r);
                return Value::str(std::move(buf));
            }
            case Cmd::device_write: {
                page* p = one_page(eval(*a[0]), a[0]->loc);
                const std::string bytes = string(eval(*a[2]), a[2]->loc);
                return Value::integer(
                    pl_page_write(p, u32(*a[1]), bytes.data(), static_cast<unsigned>(bytes.size())));
            }
            default: break;  // the driver commands: driver_exec()
        }
        fail(c.loc, "command not implemented");
    }

    // Driver commands run in driver_commands.cpp, through this interpreter's
    // expressions, tasks, variables and files.
    Value driver_exec(const Call& c, task_struct* t) {
        DriverHost host;
        host.k = k_;
        host.eval = [this](const Expr& x) { return eval(x); };
        host.task = [this](const std::string& n, SourceLoc l) { return task(n, l); };
        host.own_file = [this](pl_file* f) { files_.push_back(f); };
        host.disown_file = [this](pl_file* f) {
            auto it = std::find(files_.begin(), files_.end(), f);
            if (it == files_.end()) return false;
            files_.erase(it);
            return true;
        };
        host.set_var = [this](const std::string& n, Value v) { vars_[n] = std::move(v); };
        try {
            return drivers_.exec(c, t, host);
        } catch (const DriverFail& f) {
            fail(f.loc, f.message);
        }
    }

    // An `unsigned int` argument of the C API (pl_page_read's offset).
    unsigned u32(const Expr& e) {
        const unsigned long v = ulong(e);
        if (v > 0xffffffffUL) fail(e.loc, std::to_string(v) + " does not fit the C API's unsigned int");
        return static_cast<unsigned>(v);
    }

    unsigned long read_len(unsigned long len, SourceLoc loc) {
        if (len > kMaxReadBytes)
            fail(loc, "read of " + std::to_string(len) + " bytes: at most " + std::to_string(kMaxReadBytes) +
                          " per step in a scenario");
        return len;
    }

    pl_file* file(const Expr& e) {
        Value v = eval(e);
        if (v.type != Type::File || !v.file) fail(e.loc, "expected a file, got " + v.show());
        return v.file;
    }

    Value gup(const Call& c, task_struct* t) {
        const unsigned long start = ulong(*c.args[0]);
        const auto nr = static_cast<long>(ulong(*c.args[1]));
        const auto flags = static_cast<unsigned>(ulong(*c.args[2]));
        // The kernel fills up to nr entries of pages[] (a negative nr is a huge
        // unsigned one to the slow path): the array must hold them all, so
        // with `-> P` nr is bounded; without it pages is NULL and the kernel
        // decides alone.
        if (!c.pages_out.empty() && (nr < 0 || nr > static_cast<long>(kMaxGupPages)))
            fail(c.args[1]->loc, "nr_pages " + std::to_string(nr) + " does not fit the scenario runner's pages[] " +
                                     "arrays (0 to " + std::to_string(kMaxGupPages) + " entries)");
        std::vector<page*> pages(c.pages_out.empty() ? 1 : static_cast<size_t>(std::max(nr, 1L)), nullptr);
        page** out = c.pages_out.empty() ? nullptr : pages.data();
        mm_struct* mm = pl_task_mm(t);
        long r = 0;
        // The locked variants' caller holds mmap_read_lock(), as a driver would.
        switch (c.spec->cmd) {
            case Cmd::get_user_pages: {
                MmapReadGuard lock(mm);
                r = get_user_pages(start, static_cast<unsigned long>(nr), flags, out);
                break;
            }
            case Cmd::pin_user_pages: {
                MmapReadGuard lock(mm);
                r = pin_user_pages(start, static_cast<unsigned long>(nr), flags, out);
                break;
            }
            case Cmd::get_user_pages_remote:
            case Cmd::pin_user_pages_remote: {
                // With `locked`, GUP may drop the lock (a fault that retries,
                // a fatal signal) and says so with *locked = 0: the caller
                // unlocks only while it still holds it.
                bool want_locked = false;
                option(c, "locked", &want_locked);
                int locked = 1;
                MmapReadGuard lock(mm);
                r = c.spec->cmd == Cmd::get_user_pages_remote
                        ? get_user_pages_remote(mm, start, static_cast<unsigned long>(nr), flags, out,
                                                want_locked ? &locked : nullptr)
                        : pin_user_pages_remote(mm, start, static_cast<unsigned long>(nr), flags, out,
                                                want_locked ? &locked : nullptr);
                if (!locked) lock.dropped();
                if (want_locked) vars_["locked"] = Value::integer(locked);
                break;
            }
            case Cmd::get_user_pages_unlocked:
                r = get_user_pages_unlocked(start, static_cast<unsigned long>(nr), out, flags);
                break;
            case Cmd::pin_user_pages_unlocked:
                r = pin_user_pages_unlocked(start, static_cast<unsigned long>(nr), out, flags);
                break;
            case Cmd::get_user_pages_fast: r = get_user_pages_fast(start, static_cast<int>(nr), flags, out); break;
            case Cmd::pin_user_pages_fast: r = pin_user_pages_fast(start, static_cast<int>(nr), flags, out); break;
            case Cmd::get_user_pages_fast_only:
                r = get_user_pages_fast_only(start, static_cast<int>(nr), flags, out);
                break;
            default: fail(c.loc, "not a GUP call");
        }
        if (!c.pages_out.empty()) {
            Value list;
            list.type = Type::Pages;
            const long got = r > 0 ? std::min(r, nr) : 0;
            list.pages.assign(pages.begin(), pages.begin() + got);
            vars_[c.pages_out] = std::move(list);
        }
        return Value::integer(r);
    }

    void teardown() {
        pl_set_current(nullptr);
        drivers_.release_all();
        for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
            task_struct*& t = tasks_[*it];
            if (t) pl_exit(t);
            t = nullptr;
        }
        for (pl_file* f : files_) pl_file_put(f);
        files_.clear();
    }

    void final_checks() {
        int total = 0;
        for (const char* kind : kKinds) {
            const int n = pl_warning_count(k_, kind);
            total += n;
            if (allowed_.count(kind)) continue;
            const int seen = seen_.count(kind) ? seen_[kind] : 0;
            if (n > seen) {
                // The first unseen report of that kind, as dmesg prints it.
                const std::string text = first_report_line(kind, seen);
                throw StepStop{Verdict::Fail, {},
                               std::to_string(n - seen) + " unexpected report(s) of kind " + kind +
                                   (text.empty() ? "" : ": " + text) +
                                   " (declare with `expect reports " + kind + " == N` or `allow reports " + kind + "`)"};
            }
        }
        if (pl_warning_count(k_, nullptr) != total)
            throw StepStop{Verdict::Fail, {}, std::string("reports of an unknown kind: ") + pl_dmesg(k_)};
        if (pl_kernel_check(k_) != 0) {
            corrupt_ = true;
            throw StepStop{Verdict::Fail, {}, std::string("invariant broken at the end: ") + pl_last_error()};
        }
        const bool leaks = seen_.count("leak") || allowed_.count("leak");
        const unsigned long quarantined = leaks ? pl_nr_quarantined_pages(k_) : 0;
        const unsigned long now = pl_nr_allocated_pages(k_);
        if (now != baseline_ + quarantined)
            throw StepStop{Verdict::Fail, {},
                           std::to_string(static_cast<long>(now - baseline_ - quarantined)) +
                               " frame(s) still allocated after every task exited and every file closed"};
    }

    // The dmesg line of the (skip+1)-th report whose line mentions `kind`;
    // falls back to the last report's line.
    std::string first_report_line(const char* kind, int skip) {
        std::string last;
        int matched = 0;
        for (int i = 0;; ++i) {
            const char* line = pl_warning_text(k_, i);
            if (!line) break;
            last = line;
            if (std::string(line).find(kind) != std::string::npos && matched++ == skip) return line;
        }
        return last;
    }

    const Scenario& s_;
    std::string config_;
    pl_kernel* k_ = nullptr;
    unsigned long baseline_ = 0;
    std::map<std::string, task_struct*> tasks_;
    std::vector<std::string> order_;
    std::map<std::string, Value> vars_;
    std::vector<pl_file*> files_;
    std::map<std::string, int> seen_;
    std::set<std::string> allowed_;
    std::string last_check_error_;
    DriverCommands drivers_;  // driver handles (rings, containers, ...)
    bool corrupt_ = false;  // invariants broken: abandon the kernel
    StepObserver* obs_ = nullptr;  // `pinlab explain`
    // The staged run.
    Outcome out_;
    std::optional<StepStop> stop_;         // what stopped the scenario
    std::optional<StepStop> thread_stop_;  // the first failure inside the race group
    const Stmt* thread_stop_at_ = nullptr;
    bool racing_ = false;                  // inside the race group, threads interleaving
    bool serial_ = false;                  // run(): the blocks one after another
    bool done_ = false;                    // finish() ran (or begin() failed)
    size_t group_begin_ = npos, group_end_ = 0;
    std::vector<std::pair<std::string, std::string>> explore_words_;
    std::function<void(size_t, int)> on_step_;
    std::vector<char> between_;            // per race thread: between two operations
    uint64_t completed_ = 0;               // operations the race threads completed
    uint64_t checked_at_ = ~uint64_t{0};   // completed_ at the last check_between_steps()
};

}  // namespace

std::string_view verdict_name(Verdict v) {
    switch (v) {
        case Verdict::Pass: return "PASS";
        case Verdict::Fail: return "FAIL";
        case Verdict::Skip: return "SKIP";
        case Verdict::Error: return "ERROR";
    }
    return "?";
}

namespace {
std::string full_config(const Scenario& s, const std::string& extra_config) {
    std::string config = s.config;
    if (!extra_config.empty()) config += (config.empty() ? "" : " ") + extra_config;
    return config;
}
}  // namespace

Outcome run_scenario(const Scenario& s, const std::string& extra_config, StepObserver* observer) {
    Interpreter in(s, full_config(s, extra_config), observer);
    return in.run();
}

struct StagedRun::Impl {
    Impl(const Scenario& s, std::string config) : in(s, std::move(config), nullptr) {}
    Interpreter in;
};

StagedRun::StagedRun(const Scenario& s, const std::string& extra_config)
    : impl_(std::make_unique<Impl>(s, full_config(s, extra_config))) {}
StagedRun::~StagedRun() = default;
bool StagedRun::setup() { return impl_->in.begin() && impl_->in.setup(); }
void StagedRun::run_thread(size_t i) { impl_->in.run_thread(i); }
void StagedRun::on_step(std::function<void(size_t, int)> fn) { impl_->in.on_step(std::move(fn)); }
std::optional<std::string> StagedRun::check_between_steps() { return impl_->in.check_between_steps(); }
Outcome StagedRun::finish() { return impl_->in.finish(); }
const std::vector<std::pair<std::string, std::string>>& StagedRun::explore_words() const {
    return impl_->in.explore_words();
}

}  // namespace pl::scenario
