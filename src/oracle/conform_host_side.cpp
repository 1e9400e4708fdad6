// pinlab conform — the host side of a lock-step run (conform_host_side.h).
#include "oracle/conform_host_side.h"

#include <linux/mman.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdio>

#include "scenario/commands.h"

namespace pl::oracle {

using scenario::Call;
using scenario::Cmd;
using scenario::Expr;
using scenario::SourceLoc;
using scenario::Stmt;
using scenario::Type;
using scenario::Value;

namespace {

constexpr uint64_t kMaxRead = 1u << 20;  // scenario::kMaxReadBytes

// /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h).
constexpr int kKpfAnon = 12, kKpfCompoundHead = 15, kKpfCompoundTail = 16, kKpfHuge = 17, kKpfZeroPage = 24;

// The host side ends quietly: the model stopped at this step too (a failed
// expectation or a failed step on both sides).
struct EndHost {};

// io_uring rings are torn down in a workqueue after their last close: the
// next scenario's counter baseline waits for the previous one's teardown.
bool g_settle_at_start = false;
// acquired - released machine-wide when the last scenario started.
std::optional<int64_t> g_balance_before;


// What a command's result is, for comparison: addresses and handles differ
// between the two worlds by nature, so only success or the errno is compared.
enum class ResultKind : uint8_t { exact, address, handle };

ResultKind result_kind(Cmd c) {
    switch (c) {
        case Cmd::mmap:
        case Cmd::mremap: return ResultKind::address;
        case Cmd::io_uring_setup:
        case Cmd::pipe: return ResultKind::handle;
        default: return ResultKind::exact;
    }
}

// Why a state-changing command has no host counterpart (empty: it has one,
// or it only reads state and its model value is taken unchanged).
std::string model_only_reason(Cmd c) {
    if (scenario::is_gup_call(c))
        return "a raw GUP call: user space has no door for arbitrary FOLL_* flags (gup_test, "
               "CONFIG_GUP_TEST, is not driven by pinlab conform)";
    switch (c) {
        case Cmd::v6_4_get_user_pages:
        case Cmd::v6_4_pin_user_pages:
            return "a raw GUP call: user space has no door for arbitrary FOLL_* flags (gup_test, "
                   "CONFIG_GUP_TEST, is not driven by pinlab conform)";
        case Cmd::unpin_user_page:
        case Cmd::unpin_user_pages:
        case Cmd::unpin_user_pages_dirty_lock:
        case Cmd::unpin_user_page_range_dirty_lock:
        case Cmd::unpin_folio:
        case Cmd::unpin_user_folio:
        case Cmd::folio_add_pin:
        case Cmd::folio_add_pins:
        case Cmd::put_page:
        case Cmd::get_page:
        case Cmd::set_page_dirty_lock:
        case Cmd::put_user_page:
        case Cmd::put_user_pages:
        case Cmd::put_user_pages_dirty_lock:
        case Cmd::get_dump_page:
        case Cmd::fixup_user_fault: return "a kernel-internal page call";
        case Cmd::device_write: return "a device write through a raw pin";
        case Cmd::migrate:
        case Cmd::compact: return "migration on demand";
        case Cmd::ptrace_allowed: return "a credential switch";
        case Cmd::dio_complete: return "in-flight O_DIRECT";
        case Cmd::vfio_open:
        case Cmd::vfio_map_dma:
        case Cmd::vfio_unmap_dma:
        case Cmd::vfio_dma_write:
        case Cmd::vfio_close: return "vfio (no IOMMU group here)";
        case Cmd::dma_heap_alloc:
        case Cmd::dma_buf_device_write: return "dma-buf heaps";
        case Cmd::ttm_bo_create:
        case Cmd::ttm_bo_move:
        case Cmd::ttm_bo_write:
        case Cmd::ttm_bo_put: return "TTM (a GPU driver)";
        case Cmd::vb2_queue_new:
        case Cmd::vb2_reqbufs:
        case Cmd::vb2_qbuf:
        case Cmd::vb2_dqbuf:
        case Cmd::vb2_device_dma:
        case Cmd::vb2_queue_close: return "videobuf2 (a V4L2 device)";
        case Cmd::ib_umem_get:
        case Cmd::ib_umem_release:
        case Cmd::ib_umem_dma_write: return "RDMA umem (an RDMA device)";
        case Cmd::get_futex_key: return "futex keys";
        case Cmd::frame_vector_create:
        case Cmd::get_vaddr_frames:
        case Cmd::put_vaddr_frames:
        case Cmd::frame_vector_destroy: return "frame vectors (kernel-internal)";
        case Cmd::pin_owner_begin:
        case Cmd::pin_owner_end: return "pin tracker scopes";
        default: return "";
    }
}

// Commands that only read model state the host cannot see: their model
// value is taken (not compared).
bool model_only_query(Cmd c) {
    switch (c) {
        case Cmd::device_read:
        case Cmd::read_disk:
        case Cmd::io_uring_buffer_segments:
        case Cmd::pipe_nr_bufs:
        case Cmd::dma_buf_size:
        case Cmd::dma_buf_device_read:
        case Cmd::ttm_bo_placement:
        case Cmd::ttm_bo_pfn:
        case Cmd::ttm_bo_read:
        case Cmd::vfio_dma_read:
        case Cmd::ib_umem_dma_read:
        case Cmd::ib_umem_nents:
        case Cmd::same_key:
        case Cmd::frame_vector_is_pfns:
        case Cmd::frame_vector_got_ref:
        case Cmd::frame_vector_nr_frames:
        case Cmd::vmas_start:
        case Cmd::vmas_flags: return true;
        default: return false;
    }
}

bool counter_observable(const std::string& name) {
    return name == "nr_foll_pin_acquired" || name == "nr_foll_pin_released";
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    return s.substr(i);
}


}  // namespace

// A value on the host side.
struct ConformHostSide::HostVal {
    Value v;                 // Int, Str, Bool; Pages/Page only when borrowed
    bool borrowed = false;   // the model's value: the host cannot see it
    // A page named TASK:ADDR on the host.
    bool host_page = false;
    std::string task;
    uint64_t addr = 0;
    // A file: a session file id, or a device kind ("pfnmap") for dev_open.
    int64_t file_id = 0;
    std::string device;
    // A handle: index+1 into handles_.
    int64_t handle = 0;
};

// Thrown by the evaluator when an observation differs.
class ConformHostSide::Eval {
public:
    Eval(ConformHostSide& side, const Stmt& st) : side_(side), st_(st) {}

    HostVal eval(const Expr& e);
    bool truthy(const HostVal& h) const {
        if (h.v.type == Type::File) return h.file_id != 0 || !h.device.empty();
        return h.v.truthy();
    }

    // The model's value of this node (it ran the step first).
    const Value* model(const Expr& e) const {
        auto it = side_.model_vals_.find(&e);
        return it == side_.model_vals_.end() ? nullptr : &it->second;
    }
    HostVal borrow(const Expr& e) {
        const Value* m = model(e);
        if (!m) throw HostStop{ConformStatus::error, e.loc, "the model did not evaluate this (it stopped before)"};
        ++side_.model_only_checks_;
        HostVal h;
        h.v = *m;
        h.borrowed = true;
        return h;
    }
    // The source text of node e: from its column to the end of its last
    // word (the AST keeps no end positions: a leaf's extent is known from
    // its kind; a command runs to the end of the line).
    std::string what(const Expr& e) const {
        const std::string& line = st_.line_text;
        if (e.loc.col < 1 || static_cast<size_t>(e.loc.col) > line.size()) return trim(line);
        std::string rest = line.substr(static_cast<size_t>(e.loc.col - 1));
        auto upto = [&](const std::string& word) {
            const size_t at = rest.find(word);
            return at == std::string::npos ? trim(rest) : trim(rest.substr(0, at + word.size()));
        };
        switch (e.kind) {
            case Expr::Kind::Vmstat: return "vmstat " + e.name;
            case Expr::Kind::PageProp: return upto(" " + e.name);
            case Expr::Kind::SameFrame: {
                // same_frame REF REF: two words after the keyword.
                size_t pos = 0;
                for (int words = 0; words < 3 && pos != std::string::npos; ++words) {
                    pos = rest.find_first_not_of(' ', pos);
                    if (pos != std::string::npos) pos = rest.find(' ', pos);
                }
                return trim(pos == std::string::npos ? rest : rest.substr(0, pos));
            }
            default: return trim(rest);
        }
    }
    // Compare the model's and the host's value of an observation.
    void observe(const Expr& e, const Value& host, ResultKind kind = ResultKind::exact) {
        const Value* m = model(e);
        std::string mshow = m ? m->show() : "(the step failed)";
        bool equal = false;
        if (m) {
            if (kind == ResultKind::exact) {
                equal = m->equals(host);
            } else {
                auto ok = [](const Value& v) { return !(v.type == Type::Int && v.i < 0 && v.i > -4096); };
                equal = ok(*m) == ok(host) && (ok(*m) || m->i == host.i);
                if (ok(*m)) mshow = kind == ResultKind::address ? "an address" : "a handle";
            }
        }
        std::string hshow = host.show();
        if (kind != ResultKind::exact && !(host.type == Type::Int && host.i < 0 && host.i > -4096))
            hshow = kind == ResultKind::address ? "an address" : "a handle";
        ++side_.compared_;
        if (equal) return;
        side_.disagreement_ = ConformObservation{e.loc, what(e), mshow, hshow, false};
        throw Disagree{};
    }

    [[noreturn]] void model_only(SourceLoc loc, const std::string& why) {
        throw HostStop{ConformStatus::model_only, loc, why};
    }
    [[noreturn]] void skipped(SourceLoc loc, const std::string& why) {
        throw HostStop{ConformStatus::skipped, loc, why};
    }
    [[noreturn]] void error(SourceLoc loc, const std::string& why) { throw HostStop{ConformStatus::error, loc, why}; }

    int64_t integer(const HostVal& h, SourceLoc loc) {
        if (h.v.type != Type::Int && h.v.type != Type::Bool) error(loc, "expected an integer, got " + h.v.show());
        return h.v.i;
    }
    uint64_t u(const Expr& e) { return static_cast<uint64_t>(integer(eval(e), e.loc)); }
    std::string str(const Expr& e) {
        HostVal h = eval(e);
        if (h.v.type != Type::Str) error(e.loc, "expected a string, got " + h.v.show());
        return h.v.s;
    }

    HostVal exec(const Call& c, const Expr& node);
    HostVal page_prop(const Expr& e);
    HostVal same_frame(const Expr& e);
    HostVal vmstat(const Expr& e);
    HostVal compare(const Expr& e, const HostVal& a, const HostVal& b);

private:
    const Expr* option(const Call& c, std::string_view name, bool* present = nullptr) {
        return scenario::call_option(c, name, present);
    }
    HostVal integer_val(int64_t r) {
        HostVal h;
        h.v = Value::integer(r);
        return h;
    }
    HostVal bytes_or_errno(const HostResult& r) {
        HostVal h;
        h.v = r.ret < 0 ? Value::integer(r.ret) : Value::str(r.bytes);
        return h;
    }
    int64_t file_arg(const Expr& e) {
        HostVal f = eval(e);
        if (f.v.type != Type::File) error(e.loc, "expected a file, got " + f.v.show());
        if (!f.device.empty()) model_only(e.loc, "file operations on a device");
        return f.file_id;
    }
    // The process-local handle for handle argument e, in the task that runs
    // the command (or, for commands that run as no task, its first holder).
    std::pair<HostProcess*, int64_t> handle_arg(const Expr& e, const std::string& task, const std::string& kind) {
        HostVal h = eval(e);
        const int64_t id = h.handle;
        if (id < 1 || id > static_cast<int64_t>(side_.handles_.size()) || side_.handles_[static_cast<size_t>(id - 1)].kind != kind)
            error(e.loc, "not a " + kind + " on the host");
        auto& entry = side_.handles_[static_cast<size_t>(id - 1)];
        if (!task.empty()) {
            auto it = entry.local.find(task);
            if (it == entry.local.end())
                model_only(e.loc, "task " + task + " uses a " + kind + " its process did not open or inherit");
            return {&side_.proc(task, e.loc), it->second};
        }
        for (auto& [t, local] : entry.local)
            if (side_.procs_.count(t)) return {&side_.proc(t, e.loc), local};
        error(e.loc, "no live process holds this " + kind);
    }
    // The session pipe behind a `pipe` value.
    int64_t pipe_arg(const Expr& e) {
        HostVal h = eval(e);
        if (h.file_id <= 0) error(e.loc, "not a pipe on the host");
        return h.file_id;
    }
    HostVal new_handle(const std::string& kind, const std::string& task, int64_t local) {
        if (local < 0) return integer_val(local);
        side_.handles_.push_back({kind, {{task, local}}});
        HostVal h;
        h.v = Value::integer(static_cast<int64_t>(side_.handles_.size()));
        h.handle = static_cast<int64_t>(side_.handles_.size());
        return h;
    }
    void forget_handle(int64_t id) {
        if (id >= 1 && id <= static_cast<int64_t>(side_.handles_.size()))
            side_.handles_[static_cast<size_t>(id - 1)].local.clear();
    }
    void ensure_hugetlb(bool one_gig, SourceLoc loc) {
        bool& ready = one_gig ? side_.hugetlb_1g_ready_ : side_.hugetlb_2m_ready_;
        if (ready) return;
        HostKnobs k;
        if (one_gig) k.hugetlb_1g = side_.hugetlb_1g_;
        else k.hugetlb_2m = side_.hugetlb_2m_;
        std::string why;
        auto r = side_.host_.apply_knobs(k, &why);
        if (!r.ok() || !r.value()) skipped(loc, why.empty() ? "cannot reserve hugetlb pages on the host" : why);
        ready = true;
    }
    int64_t new_file(const std::string& fs, uint64_t size, SourceLoc loc) {
        if (fs == "memfd-hugetlb" || fs == "hugetlbfs") ensure_hugetlb(false, loc);
        std::string why;
        const int64_t id = side_.host_.file_new(fs, size, &why);
        if (id == -EOPNOTSUPP) skipped(loc, why.empty() ? "no " + fs + " file system on this host" : why);
        if (id < 0) error(loc, "cannot create a " + fs + " file on the host: " + std::to_string(id) + (why.empty() ? "" : " (" + why + ")"));
        return id;
    }
    bool in_device_range(const std::string& task, uint64_t addr, uint64_t len) const {
        auto it = side_.device_ranges_.find(task);
        if (it == side_.device_ranges_.end()) return false;
        for (auto [s, e] : it->second)
            if (addr < e && addr + len > s) return true;
        return false;
    }

    ConformHostSide& side_;
    const Stmt& st_;
};

ConformHostSide::HostVal ConformHostSide::Eval::eval(const Expr& e) {
    switch (e.kind) {
        case Expr::Kind::Literal: {
            HostVal h;
            h.v = e.value;
            return h;
        }
        case Expr::Kind::Var: {
            auto it = side_.vars_.find(e.name);
            if (it == side_.vars_.end()) error(e.loc, "variable '" + e.name + "' has no value on the host");
            return *it->second;
        }
        case Expr::Kind::Index: return borrow(e);  // pages[] of a raw GUP call: the model's
        case Expr::Kind::Neg: {
            HostVal a = eval(*e.kids[0]);
            HostVal h;
            h.v = Value::integer(-integer(a, e.loc));
            h.borrowed = a.borrowed;
            return h;
        }
        case Expr::Kind::Add:
        case Expr::Kind::Sub:
        case Expr::Kind::Or: {
            HostVal a = eval(*e.kids[0]);
            HostVal b = eval(*e.kids[1]);
            const auto ua = static_cast<uint64_t>(integer(a, e.kids[0]->loc));
            const auto ub = static_cast<uint64_t>(integer(b, e.kids[1]->loc));
            const uint64_t r = e.kind == Expr::Kind::Add ? ua + ub : e.kind == Expr::Kind::Sub ? ua - ub : (ua | ub);
            HostVal h;
            h.v = Value::integer(static_cast<int64_t>(r));
            h.borrowed = a.borrowed || b.borrowed;
            return h;
        }
        case Expr::Kind::Fill: error(e.loc, "'fill' only as write's data");
        case Expr::Kind::Call: return exec(*e.call, e);
        case Expr::Kind::Vmstat: return vmstat(e);
        case Expr::Kind::Reports:
        case Expr::Kind::Dmesg:
        case Expr::Kind::PinBalance:
        case Expr::Kind::Invariants:
        case Expr::Kind::Pte: return borrow(e);
        case Expr::Kind::PageAt: {
            HostVal a = eval(*e.kids[0]);
            if (a.borrowed) return borrow(e);
            HostVal h;
            h.v.type = Type::Page;
            h.host_page = true;
            h.task = e.task;
            h.addr = static_cast<uint64_t>(integer(a, e.loc));
            return h;
        }
        case Expr::Kind::PageProp: return page_prop(e);
        case Expr::Kind::SameFrame: return same_frame(e);
        case Expr::Kind::Compare:
        case Expr::Kind::Contains: {
            HostVal a = eval(*e.kids[0]);
            HostVal b = eval(*e.kids[1]);
            return compare(e, a, b);
        }
    }
    error(e.loc, "cannot evaluate this on the host");
}

ConformHostSide::HostVal ConformHostSide::Eval::compare(const Expr& e, const HostVal& a, const HostVal& b) {
    HostVal h;
    h.borrowed = a.borrowed || b.borrowed;
    if (e.kind == Expr::Kind::Contains) {
        if (a.v.type != Type::Str || b.v.type != Type::Str) return borrow(e);
        h.v = Value::boolean(a.v.s.find(b.v.s) != std::string::npos);
        return h;
    }
    if (a.host_page || b.host_page) return borrow(e);  // pages compare by identity: model-only
    if (e.op == "==" || e.op == "!=") {
        const bool eq = a.v.equals(b.v);
        h.v = Value::boolean(e.op == "==" ? eq : !eq);
        return h;
    }
    const bool num = (a.v.type == Type::Int || a.v.type == Type::Bool) && (b.v.type == Type::Int || b.v.type == Type::Bool);
    if (!num) return borrow(e);
    const int64_t x = a.v.i, y = b.v.i;
    bool r = false;
    if (e.op == "<") r = x < y;
    else if (e.op == "<=") r = x <= y;
    else if (e.op == ">") r = x > y;
    else r = x >= y;
    h.v = Value::boolean(r);
    return h;
}

ConformHostSide::HostVal ConformHostSide::Eval::vmstat(const Expr& e) {
    if (!counter_observable(e.name)) return borrow(e);
    if (side_.settle_needed_) {
        side_.host_.settle_pins();
        side_.settle_needed_ = false;
    }
    // Each CPU holds back a small delta of the node counters until the
    // vmstat worker folds it; HostSession::vmstat() folds it first through
    // /proc/sys/vm/stat_refresh, which needs root: without it the counters
    // are not precise enough to compare.
    if (!side_.host_.caps().root) return borrow(e);
    auto now = side_.host_.vmstat(e.name);
    const auto& base = e.name == "nr_foll_pin_acquired" ? side_.base_acquired_ : side_.base_released_;
    if (!now || !base) return borrow(e);
    HostVal h;
    h.v = Value::integer(static_cast<int64_t>(*now - *base));
    observe(e, h.v);
    return h;
}

ConformHostSide::HostVal ConformHostSide::Eval::page_prop(const Expr& e) {
    const Expr& ref = *e.kids[0];
    HostVal r = eval(ref);
    const std::string& prop = e.name;
    static const std::set<std::string> kPagemapProps = {"mapped", "exclusive"};
    static const std::set<std::string> kRootProps = {"anon", "huge", "compound", "zero", "folio_nr_pages"};
    const bool root = side_.host_.caps().root;
    if (!r.host_page || !(kPagemapProps.count(prop) || (root && kRootProps.count(prop)))) return borrow(e);
    if (in_device_range(r.task, r.addr, 1)) return borrow(e);  // a device's pages are its own
    HostPageInfo pi = side_.proc(r.task, ref.loc).page_info(r.addr);
    HostVal h;
    if (prop == "mapped") {
        h.v = Value::boolean(pi.present);
    } else if (!pi.present) {
        // The model fails such a step ("no page mapped"): both must.
        if (model(e)) observe(e, Value::str("no page mapped"));
        throw EndHost{};
    } else if (prop == "exclusive") {
        h.v = Value::boolean(pi.exclusive);
    } else {
        if (!pi.kpageflags) return borrow(e);
        const uint64_t f = *pi.kpageflags;
        auto bit = [&](int b) { return ((f >> b) & 1) != 0; };
        if (prop == "anon") h.v = Value::boolean(bit(kKpfAnon));
        else if (prop == "huge") h.v = Value::boolean(bit(kKpfHuge));
        else if (prop == "compound") h.v = Value::boolean(bit(kKpfCompoundHead) || bit(kKpfCompoundTail));
        else if (prop == "zero") h.v = Value::boolean(bit(kKpfZeroPage));
        else h.v = Value::integer(static_cast<int64_t>(pi.folio_nr_pages ? pi.folio_nr_pages : 1));
    }
    observe(e, h.v);
    return h;
}

ConformHostSide::HostVal ConformHostSide::Eval::same_frame(const Expr& e) {
    HostVal a = eval(*e.kids[0]);
    HostVal b = eval(*e.kids[1]);
    if (!a.host_page || !b.host_page || !side_.host_.caps().root) return borrow(e);
    HostPageInfo pa = side_.proc(a.task, e.kids[0]->loc).page_info(a.addr);
    HostPageInfo pb = side_.proc(b.task, e.kids[1]->loc).page_info(b.addr);
    HostVal h;
    h.v = Value::boolean(pa.present && pb.present && pa.pfn != 0 && pa.pfn == pb.pfn);
    observe(e, h.v);
    return h;
}

ConformHostSide::HostVal ConformHostSide::Eval::exec(const Call& c, const Expr& node) {
    const Cmd cmd = c.spec->cmd;
    if (model_only_query(cmd)) return borrow(node);
    if (std::string why = model_only_reason(cmd); !why.empty()) model_only(c.loc, std::string(c.spec->name) + ": " + why);
    const auto& a = c.args;
    auto arg_u = [&](size_t i, uint64_t dflt = 0) { return i < a.size() ? u(*a[i]) : dflt; };
    HostProcess* p = c.task.empty() ? nullptr : &side_.proc(c.task, c.loc);
    HostVal out;
    switch (cmd) {
        case Cmd::mmap: {
            const uint64_t len = arg_u(0);
            const int prot = static_cast<int>(arg_u(1));
            int flags = static_cast<int>(arg_u(2));
            bool present = false;
            const Expr* off_e = option(c, "off");
            const uint64_t off = off_e ? u(*off_e) : 0;
            const Expr* at_e = option(c, "at");
            const uint64_t addr = at_e ? u(*at_e) : 0;
            if (option(c, "populate", &present), present) flags |= MAP_POPULATE;
            if (option(c, "fixed", &present), present) flags |= MAP_FIXED;
            if (option(c, "noreserve", &present), present) flags |= MAP_NORESERVE;
            if (const Expr* fl = option(c, "flags")) flags |= static_cast<int>(u(*fl));
            int64_t file = 0;
            std::string device;
            if (c.backing == "anon") {
                flags |= MAP_ANONYMOUS;
            } else if (c.backing == "hugetlb") {
                flags |= MAP_ANONYMOUS | MAP_HUGETLB;
                ensure_hugetlb((flags & (0x3f << MAP_HUGE_SHIFT)) == MAP_HUGE_1GB, c.loc);
            } else if (c.backing == "shmem") {
                file = new_file("tmpfs", len + off, c.loc);
            } else if (c.backing == "memfd") {
                file = new_file("memfd", len + off, c.loc);
            } else if (c.backing == "device") {
                device = c.backing_fs;
            } else if (c.backing_file) {
                HostVal f = eval(*c.backing_file);
                if (f.v.type != Type::File) error(c.backing_file->loc, "expected a file, got " + f.v.show());
                file = f.file_id;
                device = f.device;
            } else {
                const uint64_t size = c.backing_size ? u(*c.backing_size) : len + off;
                file = new_file(c.backing_fs, size, c.loc);
            }
            if (device == "iomem") model_only(c.loc, "I/O memory without struct pages (the host offers no such device)");
            HostResult r = p->mmap(addr, len, prot, flags, file, off, device);
            if (!device.empty() && r.ret >= 0)
                side_.device_ranges_[c.task].push_back({static_cast<uint64_t>(r.ret), static_cast<uint64_t>(r.ret) + len});
            if (!device.empty() && r.ret == -ENODEV) skipped(c.loc, "the host offers no " + device + " device");
            out = integer_val(r.ret);
            break;
        }
        case Cmd::munmap: out = integer_val(p->munmap(arg_u(0), arg_u(1)).ret); break;
        case Cmd::mprotect: out = integer_val(p->mprotect(arg_u(0), arg_u(1), static_cast<int>(arg_u(2))).ret); break;
        case Cmd::madvise: out = integer_val(p->madvise(arg_u(0), arg_u(1), static_cast<int>(arg_u(2))).ret); break;
        case Cmd::mremap: {
            const Expr* to = option(c, "to");
            int flags = static_cast<int>(arg_u(3));
            if (to) flags |= MREMAP_FIXED | MREMAP_MAYMOVE;
            out = integer_val(p->mremap(arg_u(0), arg_u(1), arg_u(2), flags, to ? u(*to) : 0).ret);
            break;
        }
        case Cmd::write: {
            const uint64_t addr = arg_u(0);
            const Expr& data = *a[1];
            if (data.kind == Expr::Kind::Fill) {
                const int byte = static_cast<int>(u(*data.kids[0]));
                out = integer_val(p->memset(addr, byte, u(*data.kids[1])).ret);
            } else {
                out = integer_val(p->write(addr, str(data)).ret);
            }
            break;
        }
        case Cmd::read: {
            const uint64_t addr = arg_u(0), len = arg_u(1);
            if (len > kMaxRead) return borrow(node);  // the model refused the step
            out = bytes_or_errno(p->read(addr, len));
            if (in_device_range(c.task, addr, len)) {
                // A device's bytes are its own (a perf ring's metadata page):
                // whether the load faulted is compared, not what it read.
                const Value* m = model(node);
                if (m && out.v.type == Type::Str && m->type == Type::Str) {
                    ++side_.model_only_checks_;
                    out.v = *m;
                    return out;
                }
            }
            break;
        }
        case Cmd::memset: out = integer_val(p->memset(arg_u(0), static_cast<int>(arg_u(1)), arg_u(2)).ret); break;
        case Cmd::clear_refs: {
            const uint64_t v = arg_u(0);
            // The model tracks soft-dirty bits (clear_refs 4 write-protects
            // every PTE, clear_soft_dirty()); a kernel without
            // CONFIG_MEM_SOFT_DIRTY ignores the request, and everything after
            // (which faults, which pins GUP-fast takes) is another kernel's.
            if (v == 4 && !side_.host_.caps().soft_dirty)
                model_only(c.loc, "clear_refs 4: this host kernel has no CONFIG_MEM_SOFT_DIRTY (clearing is a no-op here)");
            out = integer_val(p->clear_refs(static_cast<int>(v)).ret);
            break;
        }
        case Cmd::open: {
            const std::string fs = str(*a[0]);
            out.v.type = Type::File;
            out.file_id = new_file(fs, arg_u(1), c.loc);
            return out;  // a file: nothing to compare (the model fails the step if it cannot)
        }
        case Cmd::dev_open: {
            const std::string kind = str(*a[0]);
            if (kind != "pfnmap" && kind != "mixedmap") model_only(c.loc, "device " + kind + " has no host counterpart");
            out.v.type = Type::File;
            out.device = kind;
            return out;
        }
        case Cmd::pwrite: {
            const int64_t f = file_arg(*a[0]);
            out = integer_val(side_.host_.file_pwrite(f, arg_u(1), str(*a[2])).ret);
            break;
        }
        case Cmd::pread: {
            const int64_t f = file_arg(*a[0]);
            if (arg_u(2) > kMaxRead) return borrow(node);
            out = bytes_or_errno(side_.host_.file_pread(f, arg_u(1), arg_u(2)));
            break;
        }
        case Cmd::fsync: out = integer_val(side_.host_.file_fsync(file_arg(*a[0])).ret); break;
        case Cmd::ftruncate: {
            const int64_t f = file_arg(*a[0]);
            out = integer_val(side_.host_.file_ftruncate(f, arg_u(1)).ret);
            break;
        }
        case Cmd::fallocate: {
            const int64_t f = file_arg(*a[0]);
            out = integer_val(side_.host_.file_fallocate(f, arg_u(1), arg_u(2)).ret);
            break;
        }
        case Cmd::io_uring_setup: {
            HostResult r = p->io_uring_setup(static_cast<unsigned>(arg_u(0)));
            g_settle_at_start = true;
            if (r.ret == -EOPNOTSUPP || r.ret == -ENOSYS || r.ret == -EPERM)
                skipped(c.loc, "io_uring is not available on this host (" + std::to_string(r.ret) + ")");
            out = new_handle("ring", c.task, r.ret);
            if (r.ret < 0) break;
            observe(node, out.v, ResultKind::handle);
            return out;
        }
        case Cmd::io_uring_register_buffers: {
            auto [hp, ring] = handle_arg(*a[0], c.task, "ring");
            std::vector<std::pair<uint64_t, uint64_t>> iov;
            for (size_t i = 1; i + 1 < a.size(); i += 2) iov.emplace_back(u(*a[i]), u(*a[i + 1]));
            out = integer_val(hp->io_uring_register_buffers(ring, iov).ret);
            break;
        }
        case Cmd::io_uring_unregister_buffers: {
            auto [hp, ring] = handle_arg(*a[0], c.task, "ring");
            out = integer_val(hp->io_uring_unregister_buffers(ring).ret);
            break;
        }
        case Cmd::io_uring_read_fixed:
        case Cmd::io_uring_write_fixed: {
            auto [hp, ring] = handle_arg(*a[0], c.task, "ring");
            const int64_t f = file_arg(*a[1]);
            out = integer_val(hp->io_uring_rw_fixed(ring, cmd == Cmd::io_uring_write_fixed, f, static_cast<int>(arg_u(2)),
                                                    arg_u(3), arg_u(4), arg_u(5))
                                  .ret);
            break;
        }
        case Cmd::io_uring_exit: {
            HostVal h = eval(*a[0]);
            auto [hp, ring] = handle_arg(*a[0], c.task, "ring");
            out = integer_val(hp->io_uring_exit(ring).ret);
            forget_handle(h.handle);
            side_.settle_needed_ = true;  // the ring is torn down in a workqueue
            g_settle_at_start = true;
            break;
        }
        case Cmd::pipe: {
            // A pipe belongs to no task: the controller makes it and hands
            // its write end to whichever task vmsplices (SCM_RIGHTS).
            const int64_t id = side_.host_.pipe_new();
            if (id < 0) {
                out = integer_val(id);
                break;
            }
            out.v = Value::integer(id);
            out.file_id = id;
            observe(node, out.v, ResultKind::handle);
            return out;
        }
        case Cmd::vmsplice: {
            const int64_t pf = pipe_arg(*a[0]);
            out = integer_val(p->vmsplice_file(pf, arg_u(1), arg_u(2)).ret);
            break;
        }
        case Cmd::pipe_read: {
            const int64_t pf = pipe_arg(*a[0]);
            if (arg_u(1) > kMaxRead) return borrow(node);
            out = bytes_or_errno(side_.host_.pipe_read(pf, arg_u(1)));
            break;
        }
        case Cmd::pipe_close: {
            const int64_t pf = pipe_arg(*a[0]);
            (void)side_.host_.pipe_close(pf);
            out = integer_val(0);
            break;
        }
        case Cmd::process_vm_readv:
        case Cmd::process_vm_writev: {
            const std::string target = str(*a[0]);
            HostProcess& tp = side_.proc(target, a[0]->loc);
            out = integer_val(
                p->process_vm_rw(cmd == Cmd::process_vm_writev, tp.pid(), arg_u(1), arg_u(2), arg_u(3)).ret);
            break;
        }
        case Cmd::set_rlimit_memlock: out = integer_val(p->set_rlimit_memlock(arg_u(0)).ret); break;
        case Cmd::cap_ipc_lock: {
            HostResult r = p->set_cap_ipc_lock(u(*a[0]) != 0);
            if (r.ret == -EPERM) skipped(c.loc, "raising CAP_IPC_LOCK needs a root conformance run");
            out = integer_val(r.ret);
            break;
        }
        case Cmd::locked_vm: {
            bool user = false;
            option(c, "user", &user);
            if (user) return borrow(node);  // the user's counter is not visible per process
            out = integer_val(p->status_pages("VmLck").ret);
            break;
        }
        case Cmd::pinned_vm: out = integer_val(p->status_pages("VmPin").ret); break;
        case Cmd::direct_read:
        case Cmd::direct_write: {
            bool inflight = false;
            option(c, "inflight", &inflight);
            if (inflight) model_only(c.loc, "in-flight O_DIRECT (the host's I/O completes before the call returns)");
            const int64_t f = file_arg(*a[0]);
            out = integer_val(p->direct_rw(cmd == Cmd::direct_write, f, arg_u(1), arg_u(2), arg_u(3)).ret);
            break;
        }
        default: model_only(c.loc, std::string(c.spec->name) + " has no host counterpart");
    }
    observe(node, out.v, result_kind(cmd));
    return out;
}

ConformHostSide::ConformHostSide(const scenario::Scenario& /*s*/, HostSession& host, unsigned long hugetlb_2m,
                                 unsigned long hugetlb_1g)
    : host_(host), hugetlb_2m_(hugetlb_2m), hugetlb_1g_(hugetlb_1g) {
    auto balance = [&]() -> std::optional<int64_t> {
        auto a = host_.vmstat("nr_foll_pin_acquired"), r = host_.vmstat("nr_foll_pin_released");
        if (!a || !r) return std::nullopt;
        return static_cast<int64_t>(*a - *r);
    };
    if (g_settle_at_start) {
        // The previous scenario's rings are torn down in a workqueue that
        // retries every HZ/20 (io_ring_exit_work()): wait, bounded, until
        // the pins held machine-wide are back to what they were before it.
        using Clock = std::chrono::steady_clock;
        const auto until = Clock::now() + std::chrono::seconds(2);
        while (g_balance_before && balance() != g_balance_before && Clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        host_.settle_pins();
    }
    g_settle_at_start = false;
    g_balance_before = balance();
    base_acquired_ = host_.vmstat("nr_foll_pin_acquired");
    base_released_ = host_.vmstat("nr_foll_pin_released");
}

ConformHostSide::~ConformHostSide() { finish(); }

void ConformHostSide::finish() {
    // Children before parents: newest first.
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
        auto p = procs_.find(*it);
        if (p != procs_.end()) {
            p->second->exit();
            procs_.erase(p);
        }
    }
    procs_.clear();
}

HostProcess& ConformHostSide::proc(const std::string& task, SourceLoc loc) {
    auto it = procs_.find(task);
    if (it == procs_.end()) throw HostStop{ConformStatus::error, loc, "task '" + task + "' has no host process"};
    return *it->second;
}

void ConformHostSide::before_step(const Stmt&) {
    model_vals_.clear();
    model_held_.reset();
}

void ConformHostSide::compared(const Stmt&, const std::string&, const std::string&, const std::string&, bool held) {
    model_held_ = held;
}

void ConformHostSide::evaluated(const Expr& node, const Value& value) { model_vals_[&node] = value; }

void ConformHostSide::after_step(const Stmt& st) {
    if (!active_) return;
    try {
        step(st);
        ++host_steps_;
    } catch (const EndHost&) {
        active_ = false;
    } catch (const Disagree&) {
        active_ = false;
        disagreement_line_ = st.line_text;
    } catch (const HostStop& stop) {
        active_ = false;
        stopped_ = stop;
        disagreement_line_ = st.line_text;
    }
}

void ConformHostSide::step(const Stmt& st) {
    Eval ev(*this, st);
    if (st.guard) {
        HostVal g = ev.eval(*st.guard);
        const bool host_true = ev.truthy(g);
        if (const Value* m = ev.model(*st.guard); m && m->truthy() != host_true) {
            disagreement_ = ConformObservation{st.guard->loc, "if " + ev.what(*st.guard), m->truthy() ? "true" : "false",
                                               host_true ? "true" : "false", false};
            throw Disagree{};
        }
        if (!host_true) return;
    }
    if (st.thread >= 0)
        throw HostStop{ConformStatus::model_only, st.loc,
                       "thread blocks are races for `pinlab explore`, not run on the host"};
    switch (st.kind) {
        case Stmt::Kind::Explore: return;
        case Stmt::Kind::Task: {
            auto p = host_.spawn();
            if (!p.ok()) throw HostStop{ConformStatus::error, st.loc, "cannot start a host process"};
            procs_[st.names[0]] = std::move(p.value());
            order_.push_back(st.names[0]);
            return;
        }
        case Stmt::Kind::Thread:
            throw HostStop{ConformStatus::model_only, st.loc, "threads (clone(CLONE_VM)) are not run on the host"};
        case Stmt::Kind::Fork: {
            auto child = proc(st.names[0], st.loc).fork();
            if (!child.ok()) throw HostStop{ConformStatus::error, st.loc, "fork failed on the host"};
            procs_[st.names[1]] = std::move(child.value());
            order_.push_back(st.names[1]);
            for (auto& h : handles_) {
                auto it = h.local.find(st.names[0]);
                if (it != h.local.end()) h.local[st.names[1]] = it->second;
            }
            device_ranges_[st.names[1]] = device_ranges_[st.names[0]];
            return;
        }
        case Stmt::Kind::Exit: {
            auto it = procs_.find(st.names[0]);
            if (it == procs_.end()) throw HostStop{ConformStatus::error, st.loc, "no such host task"};
            it->second->exit();
            procs_.erase(it);
            for (auto& h : handles_) h.local.erase(st.names[0]);
            settle_needed_ = true;  // its rings are torn down in a workqueue
            g_settle_at_start = g_settle_at_start || !handles_.empty();
            return;
        }
        case Stmt::Kind::Do: {
            HostVal v = ev.eval(*st.expr);
            if (!st.name.empty()) vars_[st.name] = std::make_unique<HostVal>(std::move(v));
            return;
        }
        case Stmt::Kind::Expect: {
            const Expr& e = *st.expr;
            bool held;
            std::string shown;
            if (e.kind == Expr::Kind::Compare || e.kind == Expr::Kind::Contains) {
                HostVal a = ev.eval(*e.kids[0]);
                HostVal b = ev.eval(*e.kids[1]);
                HostVal r = ev.compare(e, a, b);
                held = r.v.truthy() != st.negate;
                shown = a.v.show() + " " + (e.op.empty() ? "contains" : e.op) + " " + b.v.show();
            } else {
                HostVal v = ev.eval(e);
                held = ev.truthy(v) != st.negate;
                shown = v.v.show();
            }
            if (!held && kernel_failure_.empty())
                kernel_failure_ = "line " + std::to_string(st.loc.line) + ": " + trim(st.line_text) + " (kernel: " + shown + ")";
            ++compared_;
            if (model_held_ && *model_held_ != held) {
                disagreement_ = ConformObservation{st.loc, trim(st.line_text), *model_held_ ? "holds" : "does not hold",
                                                   held ? "holds" : "does not hold (" + shown + ")", false};
                throw Disagree{};
            }
            if (!held) throw EndHost{};  // failed on both sides: the model stopped here
            return;
        }
        case Stmt::Kind::Skip: {
            if (st.expr) {
                HostVal v = ev.eval(*st.expr);
                const bool host_skip = ev.truthy(v);
                if (const Value* m = ev.model(*st.expr); m && m->truthy() != host_skip) {
                    disagreement_ = ConformObservation{st.loc, trim(st.line_text), m->truthy() ? "skips" : "goes on",
                                                       host_skip ? "skips" : "goes on", false};
                    throw Disagree{};
                }
                if (!host_skip) return;
            }
            throw HostStop{ConformStatus::skipped, st.loc, st.name};
        }
        case Stmt::Kind::Allow: return;
    }
}

}  // namespace pl::oracle
