#include "oracle/conform_random.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string_view>
#include <vector>

#include "scenario/ast.h"
#include "scenario/matrix.h"
#include "scenario/parser.h"

namespace pl::oracle {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t k2M = 2ULL << 20;

// "4K", "2M", "1G", or plain bytes: the scenario language's binary units.
std::string size_text(uint64_t n) {
    if (n == 0) return "0";
    if (n % (1ULL << 30) == 0) return std::to_string(n >> 30) + "G";
    if (n % (1ULL << 20) == 0) return std::to_string(n >> 20) + "M";
    if (n % 1024 == 0) return std::to_string(n >> 10) + "K";
    return std::to_string(n);
}

std::string plus(const std::string& var, uint64_t off) { return off ? var + "+" + size_text(off) : var; }

// ---------------------------------------------------------------- generator

enum class Backing : uint8_t { anon, memfd, shmem, ext4, hugetlb };

struct Mapping {          // one mmap() or mremap() result, by its variable
    std::string var;
    Backing backing = Backing::anon;
    bool shared = false;
    bool hinted = false;  // placed at an `at NG` hint: nothing else is mapped right after it
};

struct View {             // one task's view of a mapping (fork copies views)
    int map = 0;
    uint64_t len = 0;     // a tail munmap shrinks it
    bool dontfork = false;
};

struct TaskState {
    std::string name;
    bool live = true;
    std::vector<View> views;
    int parent = -1;
    // Has the pipe: on the host the first task (A, which never exits) makes
    // it and only the children forked afterwards inherit the descriptor.
    bool holds_pipe = false;
};

struct Ring {
    std::string var;
    std::string owner;
    bool live = true;
    bool registered = false;
    std::string reg_var;  // the mapping variable the buffer starts in
    uint64_t reg_off = 0;
    uint64_t reg_len = 0;
};

struct Pipe {
    std::string var;
    uint64_t pending = 0;  // bytes vmspliced and not read yet (as far as the generator knows)
};

// The operations, each with the most lines it can emit (so that the
// scenario stays within its statement budget) and a weight.
enum class Op : uint8_t {
    mmap, write, memset, read, page, same_frame, fork, exit, mprotect, madvise, munmap, mremap, clear_refs,
    uring_register, uring_unregister, write_fixed, read_fixed, vmsplice, pipe_read, process_vm, direct_io,
    pin_balance,
};

struct OpInfo {
    Op op;
    int max_lines;
    int weight;
};

constexpr OpInfo kOps[] = {
    {Op::mmap, 4, 4},           {Op::write, 1, 14},          {Op::memset, 1, 4},         {Op::read, 1, 10},
    {Op::page, 1, 8},           {Op::same_frame, 1, 5},      {Op::fork, 1, 5},           {Op::exit, 1, 3},
    {Op::mprotect, 1, 6},       {Op::madvise, 1, 8},         {Op::munmap, 1, 5},         {Op::mremap, 1, 3},
    {Op::clear_refs, 1, 3},     {Op::uring_register, 2, 7},  {Op::uring_unregister, 1, 2}, {Op::write_fixed, 4, 9},
    {Op::read_fixed, 3, 4},     {Op::vmsplice, 2, 5},        {Op::pipe_read, 1, 5},      {Op::process_vm, 2, 5},
    {Op::direct_io, 3, 5},      {Op::pin_balance, 1, 3},
};

constexpr const char* kTaskNames[] = {"A", "B", "C", "D", "E"};

class Generator {
public:
    Generator(uint64_t seed, uint64_t index) : seed_(seed), index_(index) {
        // seed_seq's mixing and mt19937_64 are specified by the standard, so
        // the text is the same with every standard library.
        std::seed_seq seq{uint32_t(seed), uint32_t(seed >> 32), uint32_t(index), uint32_t(index >> 32), 0x70696eU};
        rng_.seed(seq);
    }

    std::string run() {
        const int target = 8 + int(below(23));  // statements from `task A` on: 8..30
        use_hugetlb_ = chance(20);
        static constexpr const char* kThp[] = {"madvise", "madvise", "madvise", "always", "always", "never"};
        const char* thp = kThp[below(6)];

        std::string out =
            "scenario \"random seed " + std::to_string(seed_) + " index " + std::to_string(index_) + "\"\n";
        out += "config ram=256M hugetlb_1g=0 hugetlb_2m=" + std::string(use_hugetlb_ ? "4" : "0") + " thp=" + thp +
               "\n";

        tasks_.push_back(TaskState{"A", true, {}, -1, false});
        next_task_ = 1;
        emit("task A");

        // Prologue: memory, touched; often a pin through a door; often a fork.
        const int first_maps = 1 + int(chance(40));
        for (int i = 0; i < first_maps; ++i) {
            op_mmap(0);
            op_write(0);
        }
        // The classic story: pin through a door, fork, write to the pinned
        // page in parent or child (COW), then look through the pin (closing()).
        const int reserve = 7;  // closing(): a read through a pin (up to 4 lines), two task reads, the pin balance
        if (chance(70)) try_op(pick_door(), target - reserve);
        if (chance(60) && try_op(Op::fork, target - reserve) && chance(70)) try_op(Op::write, target - reserve);

        int stuck = 0;
        while (int(lines_.size()) < target - reserve && stuck < 200) {
            if (!try_op(pick_op(), target - reserve)) ++stuck;
        }
        closing();
        for (const std::string& l : lines_) out += l + "\n";
        return out;
    }

private:
    // ---- randomness (no std::uniform_*_distribution: its output differs
    // between standard libraries)
    uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }
    bool chance(int percent) { return below(100) < uint64_t(percent); }

    void emit(std::string line) { lines_.push_back(std::move(line)); }
    std::string fresh(const char* prefix, int* counter) { return prefix + std::to_string((*counter)++); }
    std::string obs() { return fresh("v", &nvar_); }

    std::vector<int> live_tasks() const {
        std::vector<int> r;
        for (size_t i = 0; i < tasks_.size(); ++i)
            if (tasks_[i].live) r.push_back(int(i));
        return r;
    }
    std::vector<int> tasks_with_views() const {
        std::vector<int> r;
        for (int t : live_tasks())
            if (!tasks_[size_t(t)].views.empty()) r.push_back(t);
        return r;
    }
    int pick_task_with_view() {
        const auto ts = tasks_with_views();
        return ts.empty() ? -1 : ts[below(ts.size())];
    }
    View& pick_view(int t) {
        auto& vs = tasks_[size_t(t)].views;
        return vs[below(vs.size())];
    }
    const std::string& tname(int t) const { return tasks_[size_t(t)].name; }
    const Mapping& map_of(const View& v) const { return maps_[size_t(v.map)]; }
    Ring* ring_of(int t) {
        for (Ring& r : rings_)
            if (r.live && r.owner == tname(t)) return &r;
        return nullptr;
    }

    // A page-aligned offset into a view: its first page, its last page or
    // any page (the edges are where splits and partial pins go wrong).
    uint64_t pick_page(const View& v) {
        const uint64_t pages = v.len / kPage;
        const uint64_t r = below(10);
        if (r < 4 || pages <= 1) return 0;
        if (r < 7) return (pages - 1) * kPage;
        return below(pages) * kPage;
    }
    // Where something was written (reads see the tags), else any page.
    uint64_t pick_spot(const View& v, int percent_written) {
        std::vector<uint64_t> offs;
        for (const auto& [map, off] : written_)
            if (map == v.map && off < v.len) offs.push_back(off);
        if (!offs.empty() && chance(percent_written)) return offs[below(offs.size())];
        return pick_page(v);
    }
    uint64_t pick_spot_in(const View& v, uint64_t off, uint64_t len) {
        std::vector<uint64_t> offs;
        for (const auto& [map, o] : written_)
            if (map == v.map && o >= off && o < off + len) offs.push_back(o);
        return offs.empty() ? off : offs[below(offs.size())];
    }
    void set_hot(const View& v, uint64_t off) {
        hot_map_ = v.map;
        hot_off_ = off;
    }

    // A length from `off` to at most the end of the view, biased small.
    uint64_t pick_len(const View& v, uint64_t off, uint64_t cap) {
        const uint64_t room = std::min(v.len - off, cap);
        static constexpr uint64_t kLens[] = {4096, 4096, 8192, 16384, 65536, 2ULL << 20};
        const uint64_t want = chance(25) ? room : kLens[below(6)];
        return std::max<uint64_t>(kPage, std::min(want, room) / kPage * kPage);
    }
    std::string addr(const View& v, uint64_t off) const { return plus(map_of(v).var, off); }

    Op pick_door() {
        static constexpr Op kDoors[] = {Op::uring_register, Op::uring_register, Op::vmsplice, Op::direct_io,
                                        Op::process_vm};
        return kDoors[below(5)];
    }
    Op pick_op() {
        int total = 0;
        for (const OpInfo& o : kOps) total += o.weight;
        int r = int(below(uint64_t(total)));
        for (const OpInfo& o : kOps) {
            if (r < o.weight) return o.op;
            r -= o.weight;
        }
        return Op::write;
    }

    // Runs `op` if it fits in the budget and applies to the current state.
    bool try_op(Op op, int budget) {
        int max_lines = 1;
        for (const OpInfo& o : kOps)
            if (o.op == op) max_lines = o.max_lines;
        if (int(lines_.size()) + max_lines > budget) return false;
        const size_t before = lines_.size();
        switch (op) {
            case Op::mmap: {
                const auto ts = live_tasks();
                op_mmap(chance(75) ? 0 : ts[below(ts.size())]);
                break;
            }
            case Op::write: op_write(-1); break;
            case Op::memset: op_memset(); break;
            case Op::read: op_read(); break;
            case Op::page: op_page(); break;
            case Op::same_frame: op_same_frame(); break;
            case Op::fork: op_fork(); break;
            case Op::exit: op_exit(); break;
            case Op::mprotect: op_mprotect(); break;
            case Op::madvise: op_madvise(); break;
            case Op::munmap: op_munmap(); break;
            case Op::mremap: op_mremap(); break;
            case Op::clear_refs: op_clear_refs(); break;
            case Op::uring_register: op_uring_register(); break;
            case Op::uring_unregister: op_uring_unregister(); break;
            case Op::write_fixed: op_write_fixed(); break;
            case Op::read_fixed: op_read_fixed(); break;
            case Op::vmsplice: op_vmsplice(); break;
            case Op::pipe_read: op_pipe_read(); break;
            case Op::process_vm: op_process_vm(); break;
            case Op::direct_io: op_direct_io(); break;
            case Op::pin_balance: op_pin_balance(); break;
        }
        return lines_.size() > before;
    }

    // ---- memory

    void op_mmap(int t) {
        if (maps_.size() >= 5 || !tasks_[size_t(t)].live) return;
        Mapping m;
        m.var = fresh("m", &nmap_);
        uint64_t len = 0;
        bool thp = false;
        const uint64_t r = below(100);
        if (r < 35) {
            m.backing = Backing::anon;
        } else if (r < 45) {
            m.backing = Backing::anon;
            m.shared = true;
        } else if (r < 55) {
            m.backing = Backing::memfd;
            m.shared = chance(70);
        } else if (r < 63) {
            m.backing = Backing::shmem;
            m.shared = chance(80);
        } else if (r < 73) {
            m.backing = Backing::ext4;
            m.shared = chance(70);
        } else if (r < 85 && use_hugetlb_) {
            m.backing = Backing::hugetlb;
            m.shared = chance(40);
            len = k2M;
        } else {
            m.backing = Backing::anon;  // a THP candidate: 2M-aligned, MADV_HUGEPAGE
            thp = true;
            len = k2M;
        }
        if (!len) {
            static constexpr uint64_t kLens[] = {4096, 8192, 8192, 16384, 65536, 1ULL << 20, 2ULL << 20};
            len = kLens[below(7)];
        }
        const bool writable = chance(88);
        // Shared anonymous, memfd and shmem pages leave their file when the
        // last mapping goes (shmem_evict_inode() -> truncate_inode_pages_range());
        // one that a door still pins is legal upstream, and the model's pin
        // tracker reports it: accept those reports, the host cannot see them.
        const bool shmem_backed = m.backing == Backing::memfd || m.backing == Backing::shmem ||
                                  (m.backing == Backing::anon && m.shared);
        if (shmem_backed && !allowed_truncation_) {
            emit("allow reports pinned_page_moved");
            allowed_truncation_ = true;
        }
        std::string line = tname(t) + ": " + m.var + " = mmap " + size_text(len) + (writable ? " rw " : " r ") +
                           (m.shared ? "shared " : "private ");
        switch (m.backing) {
            case Backing::anon: line += "anon"; break;
            case Backing::memfd: line += "memfd"; break;
            case Backing::shmem: line += "shmem"; break;
            case Backing::ext4: line += "file ext4"; break;
            case Backing::hugetlb: line += "hugetlb"; break;
        }
        // File and shmem mappings always at a hint: fault-around's 64 KiB
        // windows (do_fault_around()) make what a read fault maps depend on
        // alignment, and the host randomises where an unhinted mmap lands.
        const bool page_cache = m.backing != Backing::anon || m.shared;
        if (len == k2M || page_cache || chance(15)) {
            m.hinted = true;
            line += " at " + std::to_string(++hint_) + "G";
        }
        emit(line);
        if (thp && chance(80)) emit(tname(t) + ": madvise " + m.var + " 2M MADV_HUGEPAGE");
        maps_.push_back(m);
        tasks_[size_t(t)].views.push_back(View{int(maps_.size() - 1), len, false});
    }

    std::string tag(int t) { return tname(t) + std::to_string(++ntag_) + "#"; }

    void op_write(int t) {
        if (t < 0) t = pick_task_with_view();
        if (t < 0 || tasks_[size_t(t)].views.empty()) return;
        // Mostly the newest mapping of the first task: the prologue touches what it just mapped.
        View& v = t == 0 && chance(60) ? tasks_[0].views.back() : pick_view(t);
        // Often the page a door pinned: the COW write that tells whether the pin follows the process.
        const uint64_t off = hot_map_ == v.map && hot_off_ < v.len && chance(45) ? hot_off_ : pick_spot(v, 30);
        emit(tname(t) + ": write " + addr(v, off) + " \"" + tag(t) + "\"");
        written_.emplace_back(v.map, off);
    }

    void op_memset() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        const uint64_t off = pick_page(v);
        emit(tname(t) + ": memset " + addr(v, off) + " " + std::to_string(1 + below(255)) + " " +
             size_text(pick_len(v, off, k2M)));
    }

    void op_read() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        uint64_t off = pick_spot(v, 65);
        // Now and then just past a hinted mapping (nothing is mapped there): -EFAULT on both sides.
        if (map_of(v).hinted && chance(8)) off = v.len;
        emit(tname(t) + ": " + obs() + " = read " + addr(v, off) + " 8");
    }

    void op_page() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        const std::string ref = tname(t) + ":" + addr(v, pick_spot(v, 50));
        const uint64_t r = below(10);
        if (r < 4) {
            emit(obs() + " = page " + ref + " mapped");
        } else {
            // Every property but `mapped` fails the step where nothing is
            // mapped, hence the guard.
            // `exclusive` (pagemap's PM_MMAP_EXCLUSIVE) once the parser knows it.
            const char* prop = r < 7 || !has_exclusive_ ? "anon" : "exclusive";
            emit("if page " + ref + " mapped: " + obs() + " = page " + ref + " " + prop);
        }
    }

    void op_same_frame() {
        const auto ts = live_tasks();
        if (ts.size() < 2) return;
        const int a = ts[below(ts.size())];
        int b = ts[below(ts.size())];
        if (a == b) b = ts[(size_t(std::find(ts.begin(), ts.end(), a) - ts.begin()) + 1) % ts.size()];
        // A mapping both tasks have (a fork shares them).
        for (const View& va : tasks_[size_t(a)].views) {
            for (const View& vb : tasks_[size_t(b)].views) {
                if (va.map != vb.map) continue;
                const uint64_t off = pick_spot(va.len < vb.len ? va : vb, 50);
                emit(obs() + " = same_frame " + tname(a) + ":" + addr(va, off) + " " + tname(b) + ":" + addr(vb, off));
                return;
            }
        }
    }

    void op_fork() {
        const auto ts = live_tasks();
        if (ts.size() >= 3 || next_task_ >= std::size(kTaskNames)) return;
        const int parent = chance(75) ? 0 : ts[below(ts.size())];
        TaskState child{kTaskNames[next_task_++], true, {}, parent, tasks_[size_t(parent)].holds_pipe};
        for (const View& v : tasks_[size_t(parent)].views)
            if (!v.dontfork) child.views.push_back(v);
        emit("fork " + tname(parent) + " -> " + child.name);
        tasks_.push_back(std::move(child));
    }

    void op_exit() {
        // Never A (the first task carries the scenario), nor a ring's owner:
        // its children inherit the ring's descriptor on the host and keep the
        // ring (and its pins) alive, where the model closes it at the owner's exit.
        std::vector<int> ts;
        for (int t : live_tasks())
            if (t != 0 && !ring_of(t)) ts.push_back(t);
        if (ts.empty()) return;
        const int t = ts[below(ts.size())];
        emit("exit " + tname(t));
        for (Ring& r : rings_)
            if (r.owner == tname(t)) r.live = false;  // exit_files() closes the ring
        tasks_[size_t(t)].live = false;
        tasks_[size_t(t)].views.clear();
    }

    void op_mprotect() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        const bool rw = chance(50);
        // The whole mapping, or one page of it (a VMA split; on a THP a
        // PTE-mapped THP, cow.c's favourite).
        if (chance(80)) emit(tname(t) + ": mprotect " + addr(v, 0) + " " + size_text(v.len) + (rw ? " rw" : " r"));
        else emit(tname(t) + ": mprotect " + addr(v, pick_page(v)) + " 4K" + (rw ? " rw" : " r"));
    }

    void op_madvise() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        static constexpr const char* kAdvice[] = {
            "MADV_DONTNEED", "MADV_DONTNEED",      "MADV_HUGEPAGE",       "MADV_NOHUGEPAGE", "MADV_DONTFORK",
            "MADV_DOFORK",   "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MADV_COLLAPSE",   "MADV_WIPEONFORK",
        };
        std::string advice = kAdvice[below(std::size(kAdvice))];
        // The model collapses private anonymous memory only (docs/FIDELITY.md:
        // no shmem or file MADV_COLLAPSE); elsewhere it is a known difference.
        if (advice == "MADV_COLLAPSE" && (map_of(v).backing != Backing::anon || map_of(v).shared))
            advice = "MADV_POPULATE_READ";
        const bool whole = advice == "MADV_DONTFORK" || advice == "MADV_DOFORK" || advice == "MADV_WIPEONFORK" ||
                           advice == "MADV_COLLAPSE" || chance(55);
        const uint64_t off = whole ? 0 : pick_page(v);
        const uint64_t len = whole ? v.len : pick_len(v, off, 64 * 1024);
        emit(tname(t) + ": madvise " + addr(v, off) + " " + size_text(len) + " " + advice);
        if (advice == "MADV_DONTFORK") v.dontfork = true;
        if (advice == "MADV_DOFORK") v.dontfork = false;
    }

    void op_munmap() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        auto& vs = tasks_[size_t(t)].views;
        const size_t i = below(vs.size());
        View& v = vs[i];
        if (v.len >= 2 * kPage && map_of(v).backing != Backing::hugetlb && chance(35)) {
            const uint64_t keep = v.len / 2 / kPage * kPage;  // unmap the tail half
            emit(tname(t) + ": munmap " + addr(v, keep) + " " + size_text(v.len - keep));
            v.len = keep;
            return;
        }
        emit(tname(t) + ": munmap " + addr(v, 0) + " " + size_text(v.len));
        vs.erase(vs.begin() + long(i));
    }

    void op_mremap() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        View& v = pick_view(t);
        const Mapping& old = map_of(v);
        if (old.backing == Backing::hugetlb || old.hinted) return;
        const bool grow = v.len < k2M && chance(60);
        const uint64_t to = grow ? v.len * 2 : std::max(kPage, v.len / 2 / kPage * kPage);
        Mapping m = old;
        m.var = fresh("m", &nmap_);
        m.hinted = false;
        emit(tname(t) + ": " + m.var + " = mremap " + old.var + " " + size_text(v.len) + " " + size_text(to) +
             " MREMAP_MAYMOVE");
        maps_.push_back(m);
        const int old_map = v.map;
        v.map = int(maps_.size() - 1);
        v.len = to;
        for (size_t i = 0, n = written_.size(); i < n; ++i)
            if (written_[i].first == old_map) written_.emplace_back(v.map, written_[i].second);
        if (hot_map_ == old_map) hot_map_ = v.map;
    }

    void op_clear_refs() {
        const auto ts = live_tasks();
        emit(tname(ts[below(ts.size())]) + ": clear_refs 4");
    }

    // ---- pins through the doors

    void op_uring_register() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        Ring* r = ring_of(t);
        if (r && r->registered) return;
        if (!r) {
            Ring fresh_ring;
            fresh_ring.var = fresh("r", &nring_);
            fresh_ring.owner = tname(t);
            rings_.push_back(fresh_ring);
            r = &rings_.back();
            emit(tname(t) + ": " + r->var + " = io_uring_setup 4");
        }
        View& v = pick_view(t);
        const uint64_t off = chance(60) ? 0 : pick_page(v);
        const uint64_t len = pick_len(v, off, k2M);
        emit("io_uring_register_buffers " + r->var + " " + addr(v, off) + " " + size_text(len));
        set_hot(v, pick_spot_in(v, off, len));
        r->registered = true;
        r->reg_var = map_of(v).var;
        r->reg_off = off;
        r->reg_len = len;
    }

    Ring* pick_registered_ring() {
        std::vector<Ring*> rs;
        for (Ring& r : rings_)
            if (r.live && r.registered) rs.push_back(&r);
        return rs.empty() ? nullptr : rs[below(rs.size())];
    }

    void op_uring_unregister() {
        Ring* r = pick_registered_ring();
        if (!r) return;
        emit("io_uring_unregister_buffers " + r->var);
        r->registered = false;
    }

    void ensure_tmpfs_file() {
        if (!tmpfs_file_.empty()) return;
        tmpfs_file_ = "f0";
        emit(tmpfs_file_ + " = open \"tmpfs\" 2M");
    }

    // A range inside the registered buffer, its offset from the buffer's start.
    void pick_fixed_range(const Ring& r, uint64_t* off, uint64_t* len) {
        const uint64_t pages = r.reg_len / kPage;
        *off = chance(60) ? 0 : below(pages) * kPage;
        const uint64_t room = r.reg_len - *off;
        *len = chance(50) ? std::min<uint64_t>(room, 64 * 1024) : std::min<uint64_t>(room, kPage);
    }

    void op_write_fixed() {
        Ring* r = pick_registered_ring();
        if (!r) return;
        ensure_tmpfs_file();
        uint64_t off = 0, len = 0;
        pick_fixed_range(*r, &off, &len);
        // What the pinned pages hold goes to the file (cow.c's check that a
        // long-term pin still sees the process's writes).
        emit("io_uring_write_fixed " + r->var + " " + tmpfs_file_ + " 0 " + plus(r->reg_var, r->reg_off + off) + " " +
             size_text(len) + " 0");
        emit(obs() + " = pread " + tmpfs_file_ + " 0 8");
        if (len > kPage) emit(obs() + " = pread " + tmpfs_file_ + " " + size_text(len - kPage) + " 8");
    }

    void op_read_fixed() {
        Ring* r = pick_registered_ring();
        if (!r) return;
        ensure_tmpfs_file();
        uint64_t off = 0, len = 0;
        pick_fixed_range(*r, &off, &len);
        const std::string a = plus(r->reg_var, r->reg_off + off);
        emit("io_uring_read_fixed " + r->var + " " + tmpfs_file_ + " 0 " + a + " " + size_text(len) + " 0");
        // Whether the owner sees what the device wrote, if the buffer is
        // still mapped there (after munmap or mremap the old range is a hole
        // or, depending on the layout, someone else's).
        for (const TaskState& t : tasks_) {
            if (t.name != r->owner) continue;
            for (const View& v : t.views)
                if (map_of(v).var == r->reg_var && r->reg_off + off < v.len) {
                    emit(r->owner + ": " + obs() + " = read " + a + " 8");
                    return;
                }
        }
    }

    void op_vmsplice() {
        if (pipes_.empty()) {
            if (tasks_[0].views.empty()) return;
            Pipe fresh_pipe;
            fresh_pipe.var = fresh("p", &npipe_);
            pipes_.push_back(fresh_pipe);
            emit(pipes_.back().var + " = pipe");
            tasks_[0].holds_pipe = true;
        }
        std::vector<int> holders;
        for (int h : tasks_with_views())
            if (tasks_[size_t(h)].holds_pipe) holders.push_back(h);
        if (holders.empty()) return;
        const int t = holders[below(holders.size())];
        Pipe& p = pipes_.back();
        View& v = pick_view(t);
        const uint64_t off = pick_page(v);
        const uint64_t len = std::min<uint64_t>(pick_len(v, off, 16 * 1024), 32 * 1024 - p.pending);
        if (len < kPage) return;
        emit(tname(t) + ": vmsplice " + p.var + " " + addr(v, off) + " " + size_text(len));
        set_hot(v, off);
        p.pending += len;
    }

    void op_pipe_read() {
        if (pipes_.empty() || pipes_.back().pending < kPage) return;
        Pipe& p = pipes_.back();
        emit(obs() + " = pipe_read " + p.var + " 4K");  // one page: what vmsplice() took of it
        p.pending -= kPage;
    }

    void op_process_vm() {
        const auto ts = tasks_with_views();
        if (ts.empty()) return;
        // Itself or a child it forked: the only pairs where ptrace access
        // (mm_access(), PTRACE_MODE_ATTACH_REALCREDS) is granted whatever the
        // host's Yama scope and credentials are.
        const int caller = ts[below(ts.size())];
        std::vector<int> targets{caller};
        for (int t : ts)
            if (tasks_[size_t(t)].parent == caller) targets.push_back(t);
        const int target = targets[below(targets.size())];
        View& local = pick_view(caller);
        View& remote = pick_view(target);
        const uint64_t loff = pick_page(local), roff = pick_page(remote);
        const uint64_t len = std::min({local.len - loff, remote.len - roff, chance(50) ? uint64_t(8) : 2 * kPage});
        const bool rd = chance(55);
        emit(tname(caller) + ": " + obs() + " = " + (rd ? "process_vm_readv" : "process_vm_writev") + " \"" +
             tname(target) + "\" " + addr(local, loff) + " " + addr(remote, roff) + " " + size_text(len));
        // Look at what arrived, through the receiving task.
        if (rd) emit(tname(caller) + ": " + obs() + " = read " + addr(local, loff) + " 8");
        else emit(tname(target) + ": " + obs() + " = read " + addr(remote, roff) + " 8");
        set_hot(rd ? local : remote, rd ? loff : roff);
    }

    void op_direct_io() {
        const int t = pick_task_with_view();
        if (t < 0) return;
        if (ext4_file_.empty()) {
            ext4_file_ = "g0";
            emit(ext4_file_ + " = open \"ext4\" 64K");
        }
        View& v = pick_view(t);
        const uint64_t off = pick_page(v);
        const uint64_t len = std::min<uint64_t>(v.len - off, chance(60) ? kPage : 2 * kPage);
        const uint64_t foff = below((64 * 1024 - len) / kPage + 1) * kPage;
        set_hot(v, off);
        if (chance(50)) {
            // O_DIRECT write: the device reads the pinned pages.
            emit(tname(t) + ": direct_write " + ext4_file_ + " " + addr(v, off) + " " + size_text(len) + " " +
                 size_text(foff));
            emit(obs() + " = pread " + ext4_file_ + " " + size_text(foff) + " 8");
        } else {
            // O_DIRECT read: the device writes into them; the task must see it.
            emit(tname(t) + ": direct_read " + ext4_file_ + " " + addr(v, off) + " " + size_text(len) + " " +
                 size_text(foff));
            emit(tname(t) + ": " + obs() + " = read " + addr(v, off) + " 8");
        }
    }

    void op_pin_balance() { emit(obs() + " = vmstat nr_foll_pin_acquired - vmstat nr_foll_pin_released"); }

    // The last word: what a pin still held sees (the device's view), what
    // each live task sees, and the pin balance.
    void closing() {
        if (pick_registered_ring()) op_write_fixed();
        else if (!pipes_.empty() && pipes_.back().pending >= kPage) op_pipe_read();
        int n = 0;
        for (int t : tasks_with_views()) {
            if (n == 2) break;
            View& v = pick_view(t);
            uint64_t off = pick_spot(v, 60);
            if (hot_map_ == v.map && hot_off_ < v.len && chance(60)) off = hot_off_;
            emit(tname(t) + ": " + obs() + " = read " + addr(v, off) + " 8");
            ++n;
        }
        op_pin_balance();
        // At least 8 statements: a short run (everything unmapped early) gets more observations.
        while (lines_.size() < 8)
            if (!try_op(Op::page, 30)) op_pin_balance();
    }

    uint64_t seed_, index_;
    std::mt19937_64 rng_;
    bool use_hugetlb_ = false;
    bool allowed_truncation_ = false;
    const bool has_exclusive_ = [] {
        scenario::Type type{};
        return scenario::page_property_type("exclusive", &type);
    }();
    std::vector<std::string> lines_;
    std::vector<TaskState> tasks_;
    std::vector<Mapping> maps_;
    std::vector<Ring> rings_;
    std::vector<Pipe> pipes_;
    std::string tmpfs_file_, ext4_file_;
    std::vector<std::pair<int, uint64_t>> written_;  // (mapping, offset) that got a tag
    int hot_map_ = -1;                                // the last page a door pinned
    uint64_t hot_off_ = 0;
    size_t next_task_ = 0;
    int nmap_ = 0, nvar_ = 0, nring_ = 0, npipe_ = 0, ntag_ = 0, hint_ = 0;
};

// ---------------------------------------------------------------- shrinker

std::string_view first_word(std::string_view line) {
    size_t b = 0;
    while (b < line.size() && std::isspace(static_cast<unsigned char>(line[b]))) ++b;
    size_t e = b;
    while (e < line.size() && !std::isspace(static_cast<unsigned char>(line[e]))) ++e;
    return line.substr(b, e - b);
}

bool is_blank_or_comment(std::string_view line) {
    const std::string_view w = first_word(line);
    return w.empty() || w[0] == '#';
}

// Lines the shrinker never removes: without them the scenario is another one.
bool is_fixed(std::string_view line) {
    const std::string_view w = first_word(line);
    return w == "scenario" || w == "config" || w == "matrix";
}

std::string join(const std::vector<std::string>& lines) {
    std::string s;
    for (const std::string& l : lines) s += l + "\n";
    return s;
}

// A number token in a line: [begin, end) and its value (units applied).
struct NumberToken {
    size_t begin = 0, end = 0;
    uint64_t value = 0;
    bool after_at = false;  // the address of an `at` hint
};

std::vector<NumberToken> number_tokens(const std::string& line) {
    std::vector<NumberToken> out;
    auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; };
    size_t i = 0;
    while (i < line.size()) {
        const char c = line[i];
        if (c == '#') break;
        if (c == '"') {  // skip the string, escapes included
            for (++i; i < line.size() && line[i] != '"'; ++i)
                if (line[i] == '\\') ++i;
            ++i;
            continue;
        }
        if (!std::isdigit(static_cast<unsigned char>(c)) || (i > 0 && ident(line[i - 1]))) {
            ++i;
            continue;
        }
        size_t e = i;
        uint64_t v = 0;
        bool overflow = false;
        while (e < line.size() && std::isdigit(static_cast<unsigned char>(line[e]))) {
            if (v > (UINT64_MAX - 9) / 10) overflow = true;
            v = v * 10 + uint64_t(line[e] - '0');
            ++e;
        }
        int shift = 0;
        if (e < line.size()) {
            switch (line[e]) {
                case 'K': shift = 10; break;
                case 'M': shift = 20; break;
                case 'G': shift = 30; break;
                case 'T': shift = 40; break;
                default: break;
            }
            if (shift) ++e;
        }
        if (e < line.size() && ident(line[e])) {  // 0x2a, 4KB, ...: not a plain size
            while (e < line.size() && ident(line[e])) ++e;
            i = e;
            continue;
        }
        if (!overflow && v <= (UINT64_MAX >> shift)) {
            NumberToken t{i, e, v << shift, false};
            size_t p = i;
            while (p > 0 && line[p - 1] == ' ') --p;
            t.after_at = p >= 2 && line.compare(p - 2, 2, "at") == 0 && (p == 2 || line[p - 3] == ' ');
            out.push_back(t);
        }
        i = e;
    }
    return out;
}

// Where a line reaches past the end of a mapping the text itself sizes
// (`V = mmap LEN ...`, `V = mremap OLD OLD_LEN NEW_LEN`): `V+OFF` with OFF at
// or beyond LEN, or `V+OFF N` (an address and a length) ending beyond it.
// Such an access lands in whatever the layout puts there, which differs
// between the model and the host: shrinking a size must not create one.
class RangeCheck {
public:
    explicit RangeCheck(const std::vector<std::string>& lines) {
        for (const std::string& l : lines) {
            const auto w = words(l);
            size_t i = 0;
            if (i < w.size() && w[i].size() > 1 && w[i].back() == ':') ++i;  // T:
            if (i + 3 < w.size() && w[i + 1] == "=" && w[i + 2] == "mmap") {
                if (auto n = number(w[i + 3])) len_[w[i]] = *n;
            } else if (i + 5 < w.size() && w[i + 1] == "=" && w[i + 2] == "mremap") {
                if (auto n = number(w[i + 5])) len_[w[i]] = *n;
            }
        }
    }
    // How many accesses in `line` fall outside a known mapping.
    int outside(const std::string& line) const {
        const auto w = words(line);
        int n = 0;
        for (size_t i = 0; i < w.size(); ++i) {
            const size_t colon = w[i].find(':');  // TASK:ADDR
            const std::string t = colon == std::string::npos ? w[i] : w[i].substr(colon + 1);
            const size_t plus = t.find('+');
            const std::string var = t.substr(0, plus);
            const auto it = len_.find(var);
            if (it == len_.end()) continue;
            uint64_t off = 0;
            if (plus != std::string::npos) {
                auto o = number(t.substr(plus + 1));
                if (!o) continue;  // an expression the check does not follow
                off = *o;
            }
            uint64_t end = off + 1;
            if (i + 1 < w.size())
                if (auto l = number(w[i + 1])) end = off + *l;
            if (off >= it->second || end > it->second) ++n;
        }
        return n;
    }

private:
    static std::vector<std::string> words(const std::string& line) {
        std::vector<std::string> w;
        size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && line[i] == ' ') ++i;
            if (i >= line.size() || line[i] == '#') break;
            if (line[i] == '"') {  // a string: not a word (escapes included)
                for (++i; i < line.size() && line[i] != '"'; ++i)
                    if (line[i] == '\\') ++i;
                ++i;
                continue;
            }
            size_t e = i;
            while (e < line.size() && line[e] != ' ') ++e;
            w.push_back(line.substr(i, e - i));
            i = e;
        }
        return w;
    }
    // A plain number with an optional K/M/G unit ("64K"), else nothing.
    static std::optional<uint64_t> number(const std::string& t) {
        const auto toks = number_tokens(t);
        if (toks.size() != 1 || toks[0].begin != 0 || toks[0].end != t.size()) return std::nullopt;
        return toks[0].value;
    }
    std::map<std::string, uint64_t> len_;
};

class Shrinker {
public:
    Shrinker(const std::function<bool(const std::string&)>& pred, int max_tries) : pred_(pred), max_(max_tries) {}

    int used() const { return used_; }
    bool exhausted() const { return used_ >= max_; }

    // Whether `text` still fails; each distinct text is asked about once.
    bool fails(const std::string& text) {
        if (exhausted() || !seen_.insert(text).second) return false;
        ++used_;
        return pred_(text);
    }

    std::string run(const std::string& text) {
        std::vector<std::string> all = scenario::split_lines(text);
        std::vector<std::string> stripped;
        for (const std::string& l : all)
            if (!is_blank_or_comment(l)) stripped.push_back(l);
        lines_ = all;
        // Comments and blank lines cannot matter, but only a run says so.
        if (stripped.size() != all.size() && fails(join(stripped))) lines_ = stripped;
        seen_.insert(join(lines_));
        for (size_t i = 0; i < lines_.size(); ++i)
            if (!is_fixed(lines_[i])) keep_.push_back(i);

        ddmin();
        one_by_one();
        simplify_numbers();
        one_by_one();  // a smaller size may have made a line unnecessary
        return build(keep_);
    }

private:
    std::string build(const std::vector<size_t>& keep) const {
        std::vector<std::string> out;
        size_t k = 0;
        for (size_t i = 0; i < lines_.size(); ++i) {
            const bool kept = k < keep.size() && keep[k] == i;
            if (kept) ++k;
            if (kept || is_fixed(lines_[i])) out.push_back(lines_[i]);
        }
        return join(out);
    }

    // Zeller's ddmin over the removable lines: try each chunk alone, then
    // each complement, refining the granularity when neither fails.
    void ddmin() {
        size_t n = 2;
        while (keep_.size() >= 2 && !exhausted()) {
            std::vector<std::vector<size_t>> chunks(n);
            for (size_t i = 0; i < keep_.size(); ++i) chunks[i * n / keep_.size()].push_back(keep_[i]);
            bool reduced = false;
            for (const auto& c : chunks) {
                if (!c.empty() && c.size() < keep_.size() && fails(build(c))) {
                    keep_ = c;
                    n = 2;
                    reduced = true;
                    break;
                }
            }
            if (!reduced && n > 2) {
                for (const auto& c : chunks) {
                    std::vector<size_t> rest;
                    std::set_difference(keep_.begin(), keep_.end(), c.begin(), c.end(), std::back_inserter(rest));
                    if (fails(build(rest))) {
                        keep_ = rest;
                        n = std::max<size_t>(n - 1, 2);
                        reduced = true;
                        break;
                    }
                }
            }
            if (!reduced) {
                if (n >= keep_.size()) break;
                n = std::min(keep_.size(), 2 * n);
            }
        }
    }

    // Remove single lines, the last first (later lines depend on earlier
    // ones, not the other way round), until none can go.
    void one_by_one() {
        for (bool changed = true; changed && !exhausted();) {
            changed = false;
            for (size_t j = keep_.size(); j-- > 0 && !exhausted();) {
                std::vector<size_t> rest = keep_;
                rest.erase(rest.begin() + long(j));
                if (fails(build(rest))) {
                    keep_ = rest;
                    changed = true;
                }
            }
        }
    }

    // Sizes and offsets towards 4K, and `at ADDR` hints away.
    // Passes until one changes nothing: a mapping can shrink only once the
    // later lines that reach into it have.
    void simplify_numbers() {
        for (bool any = true; any && !exhausted();) {
            any = false;
            for (size_t idx : keep_) any |= simplify_line(lines_[idx]);
        }
    }

    bool simplify_line(std::string& line) {
        if (exhausted()) return false;
        drop_hint(line);
        bool any = false;
        for (bool changed = true; changed && !exhausted();) {
            changed = false;
            for (const NumberToken& t : number_tokens(line)) {
                if (t.after_at) continue;
                const std::string old = line;
                std::vector<std::string> tries;
                // An offset `VAR+N` first goes away altogether (VAR itself).
                if (t.begin > 0 && old[t.begin - 1] == '+' && (t.end == old.size() || old[t.end] == ' '))
                    tries.push_back(old.substr(0, t.begin - 1) + old.substr(t.end));
                if (t.value > kPage && t.value % kPage == 0) {
                    tries.push_back(old.substr(0, t.begin) + size_text(kPage) + old.substr(t.end));
                    const uint64_t half = t.value / 2 / kPage * kPage;
                    if (half > kPage) tries.push_back(old.substr(0, t.begin) + size_text(half) + old.substr(t.end));
                }
                for (const std::string& candidate : tries) {
                    const int before = outside_count();
                    line = candidate;
                    if (outside_count() <= before && fails(build(keep_))) {
                        changed = true;
                        break;
                    }
                    line = old;
                }
                if (changed) break;  // token positions moved: rescan
            }
            any |= changed;
        }
        return any;
    }

    // Accesses beyond the end of a mapping in the kept lines (RangeCheck).
    int outside_count() const {
        std::vector<std::string> kept;
        for (size_t i : keep_) kept.push_back(lines_[i]);
        for (const std::string& l : lines_)
            if (is_fixed(l)) kept.push_back(l);
        const RangeCheck rc(kept);
        int n = 0;
        for (const std::string& l : kept) n += rc.outside(l);
        return n;
    }

    void drop_hint(std::string& line) {
        for (const NumberToken& t : number_tokens(line)) {
            if (!t.after_at) continue;
            size_t b = t.begin;
            while (b > 0 && line[b - 1] == ' ') --b;
            b -= 2;  // "at"
            while (b > 0 && line[b - 1] == ' ') --b;
            const std::string old = line;
            line = old.substr(0, b) + old.substr(t.end);
            if (!fails(build(keep_))) line = old;
            return;
        }
    }

    const std::function<bool(const std::string&)>& pred_;
    int max_;
    int used_ = 0;
    std::set<std::string> seen_;
    std::vector<std::string> lines_;
    std::vector<size_t> keep_;  // indexes of the removable lines still in
};

}  // namespace

std::string random_scenario(uint64_t seed, uint64_t index) { return Generator(seed, index).run(); }

bool scenario_text_parses(const std::string& text, std::string* why) {
    std::vector<scenario::Expansion> expansions;
    scenario::Diagnostic d;
    const std::string file = "<random>";
    bool ok = scenario::expand_matrix(file, scenario::split_lines(text), &expansions, &d);
    for (size_t i = 0; ok && i < expansions.size(); ++i) {
        scenario::Scenario s;
        ok = scenario::parse_scenario(file, file + expansions[i].suffix, expansions[i].lines, &s, &d);
    }
    if (!ok && why) *why = d.format();
    return ok;
}

std::string shrink_scenario(const std::string& text, const std::function<bool(const std::string&)>& still_fails,
                            int max_tries, int* tries_used) {
    Shrinker s(still_fails, std::max(0, max_tries));
    std::string out = s.run(text);
    if (tries_used) *tries_used = s.used();
    return out;
}

}  // namespace pl::oracle
