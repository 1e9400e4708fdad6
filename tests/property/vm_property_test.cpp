// pinlab — the property test that guards against data loss.
//
// rapidcheck generates random sequences of mmap, munmap, mprotect, madvise,
// fork, exit, CPU writes and reads, file writes, migrations and soft-dirty
// clearing over several tasks, runs them on the model through the C API, and
// checks every read against a simple reference of what each process must
// see (Linux's documented semantics: private mappings are copy-on-write,
// shared ones are shared, MADV_DONTNEED drops private copies, fork copies,
// DONTFORK/WIPEONFORK hold back or wipe). After every step the full
// invariant checker runs. At the end everything is torn down and every
// allocated frame must have been returned.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "pinlab/kapi.h"

namespace {

constexpr unsigned long kPage = 4096;
using Bytes = std::shared_ptr<std::array<uint8_t, kPage>>;

Bytes zero_page() {
    auto b = std::make_shared<std::array<uint8_t, kPage>>();
    b->fill(0);
    return b;
}

// A shared object: a file or a shared anonymous region; its pages by index.
struct Object {
    std::map<unsigned long, Bytes> pages;
    pl_file* file = nullptr;  // null for shared anonymous memory
    Bytes get(unsigned long idx) const {
        auto it = pages.find(idx);
        return it == pages.end() ? zero_page() : it->second;
    }
    Bytes& mut(unsigned long idx) {
        auto& b = pages[idx];
        if (!b) b = zero_page();
        else if (b.use_count() > 1) b = std::make_shared<std::array<uint8_t, kPage>>(*b);
        return b;
    }
};

enum class Kind : uint8_t { Anon, Shared, FilePrivate };

struct Slot {
    Kind kind;
    int prot;
    std::shared_ptr<Object> obj;  // Shared and FilePrivate
    unsigned long idx = 0;        // page index in obj
    Bytes priv;                   // Anon: contents (null = zero); FilePrivate: private copy once COWed
    bool dontfork = false;
    bool wipeonfork = false;
    bool readable() const { return prot & (PROT_READ | PROT_WRITE | PROT_EXEC); }
    bool writable() const { return prot & PROT_WRITE; }
    Bytes contents() const {
        if (kind == Kind::Anon) return priv ? priv : zero_page();
        if (kind == Kind::FilePrivate && priv) return priv;
        return obj->get(idx);
    }
};

struct RefTask {
    task_struct* t;
    std::map<unsigned long, Slot> pages;                       // by virtual page address
    std::vector<std::pair<unsigned long, unsigned long>> regions;  // (start, npages) of its mmaps
};

// --- operations ------------------------------------------------------------------

enum class OpKind : uint8_t {
    MmapAnon, MmapShared, MmapFile, Munmap, Mprotect, Madvise, Fork, Exit, Write, Read, FileWrite, Migrate, ClearRefs,
    Mremap, PunchHole,
};

struct Op {
    OpKind kind;
    unsigned a, b, c, d, e;  // raw choices, reduced modulo the current state
};

std::string show(const Op& op) {
    static const char* names[] = {"mmap_anon", "mmap_shared", "mmap_file", "munmap", "mprotect", "madvise", "fork",
                                  "exit",      "write",       "read",      "file_write", "migrate", "clear_refs",
                                  "mremap",    "punch_hole"};
    return std::string(names[static_cast<int>(op.kind)]) + "(" + std::to_string(op.a) + "," + std::to_string(op.b) +
           "," + std::to_string(op.c) + "," + std::to_string(op.d) + "," + std::to_string(op.e) + ")";
}

constexpr std::array<unsigned long, 7> kSizes = {1, 2, 3, 8, 16, 512, 1024};
constexpr std::array<int, 3> kProts = {PROT_READ | PROT_WRITE, PROT_READ, PROT_NONE};
constexpr std::array<int, 9> kAdvice = {MADV_DONTNEED,  MADV_HUGEPAGE,  MADV_NOHUGEPAGE,    MADV_DONTFORK,
                                        MADV_DOFORK,    MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_COLLAPSE,
                                        MADV_POPULATE_WRITE};
constexpr unsigned long kFilePages = 64;
constexpr std::array<const char*, 3> kFs = {"ext4", "tmpfs", "memfd"};

class Harness {
public:
    explicit Harness(const char* config) : k_(pl_kernel_new(config)) {
        RC_ASSERT(static_cast<bool>(k_));
        baseline_ = pl_nr_allocated_pages(k_);
        for (const char* fs : kFs) {
            auto o = std::make_shared<Object>();
            o->file = pl_file_new(k_, fs, kFilePages * kPage);
            RC_ASSERT(static_cast<bool>(o->file));
            files_.push_back(o);
        }
        tasks_.push_back(RefTask{pl_task_new(k_), {}, {}});
    }

    ~Harness() {
        if (k_) pl_kernel_free(k_);
    }

    void run(const Op& op) {
        step_ = show(op);
        switch (op.kind) {
            case OpKind::MmapAnon: mmap_op(op, Kind::Anon); break;
            case OpKind::MmapShared: mmap_op(op, Kind::Shared); break;
            case OpKind::MmapFile: mmap_op(op, Kind::FilePrivate); break;
            case OpKind::Munmap: munmap_op(op); break;
            case OpKind::Mprotect: mprotect_op(op); break;
            case OpKind::Madvise: madvise_op(op); break;
            case OpKind::Fork: fork_op(op); break;
            case OpKind::Exit: exit_op(op); break;
            case OpKind::Write: write_op(op); break;
            case OpKind::Read: read_op(op); break;
            case OpKind::FileWrite: file_write_op(op); break;
            case OpKind::Migrate: migrate_op(op); break;
            case OpKind::ClearRefs: (void)pl_clear_refs(task(op.a).t, 4); break;
            case OpKind::Mremap: mremap_op(op); break;
            case OpKind::PunchHole: punch_op(op); break;
        }
        require(!(pl_kernel_check(k_) != 0), [&] { std::ostringstream o; o << step_ << ": " << pl_last_error(); return o.str(); });
    }

    // Reads every mapped page of every task and compares; then tears down.
    void finish() {
        for (auto& t : tasks_)
            for (auto& [addr, slot] : t.pages) check_read(t, addr, slot);
        for (auto& t : tasks_) pl_exit(t.t);
        tasks_.clear();
        for (auto& f : files_) pl_file_put(f->file);
        files_.clear();
        RC_ASSERT(pl_kernel_check(k_) == 0);
        RC_ASSERT(pl_nr_allocated_pages(k_) == baseline_);
    }

private:
    RefTask& task(unsigned i) { return tasks_[i % tasks_.size()]; }

    // A page range inside one of the task's regions.
    bool pick_range(RefTask& t, const Op& op, unsigned long* start, unsigned long* n) {
        if (t.regions.empty()) return false;
        auto [rs, rn] = t.regions[op.b % t.regions.size()];
        unsigned long first = op.c % rn;
        unsigned long count = 1 + op.d % (rn - first);
        *start = rs + first * kPage;
        *n = count;
        return true;
    }

    void mmap_op(const Op& op, Kind kind) {
        RefTask& t = task(op.a);
        unsigned long n = kSizes[op.b % kSizes.size()];
        int prot = kProts[op.c % 2];  // mapped readable, writable or not
        bool populate = op.e % 4 == 0;
        std::shared_ptr<Object> obj;
        unsigned long off = 0;
        pl_file* f = nullptr;
        int flags = 0;
        if (kind == Kind::Anon) {
            flags = MAP_PRIVATE | MAP_ANONYMOUS;
        } else if (kind == Kind::Shared && op.d % 2 == 0) {
            flags = MAP_SHARED | MAP_ANONYMOUS;
            obj = std::make_shared<Object>();
        } else {
            obj = files_[op.d % files_.size()];
            n = std::min(n, kFilePages);
            off = (op.e % (kFilePages - n + 1));
            f = obj->file;
            flags = kind == Kind::Shared ? MAP_SHARED : MAP_PRIVATE;
        }
        if (populate) flags |= MAP_POPULATE;
        long addr = pl_mmap(t.t, 0, n * kPage, prot, flags, f, off * kPage);
        RC_ASSERT(addr > 0);
        auto start = static_cast<unsigned long>(addr);
        for (unsigned long i = 0; i < n; ++i) {
            unsigned long va = start + i * kPage;
            RC_ASSERT(t.pages.count(va) == 0);  // the kernel must not hand out used space
            Slot s{kind, prot, obj, off + i, nullptr};
            // MAP_POPULATE write-faults private writable mappings: a file page is COWed now.
            if (kind == Kind::FilePrivate && populate && (prot & PROT_WRITE)) s.priv = obj->get(off + i);
            t.pages[va] = s;
        }
        t.regions.emplace_back(start, n);
    }

    void munmap_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        RC_ASSERT(pl_munmap(t.t, start, n * kPage) == 0);
        for (unsigned long i = 0; i < n; ++i) t.pages.erase(start + i * kPage);
    }

    void mprotect_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        int prot = kProts[op.e % kProts.size()];
        int expect = 0;
        for (unsigned long i = 0; i < n; ++i) {
            auto it = t.pages.find(start + i * kPage);
            if (it == t.pages.end()) {
                expect = -ENOMEM;
                break;
            }
            it->second.prot = prot;
        }
        RC_ASSERT(pl_mprotect(t.t, start, n * kPage, prot) == expect);
    }

    void madvise_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        int advice = kAdvice[op.e % kAdvice.size()];
        int expect = 0;
        bool hole = false;
        for (unsigned long i = 0; i < n; ++i) {
            auto it = t.pages.find(start + i * kPage);
            if (it == t.pages.end()) {
                hole = true;
                // madvise_populate() stops at the first hole (-ENOMEM).
                if (advice == MADV_POPULATE_WRITE) break;
                continue;
            }
            Slot& s = it->second;
            bool file_or_shared = s.kind != Kind::Anon;
            if (advice == MADV_WIPEONFORK && file_or_shared) {
                expect = -EINVAL;
                break;
            }
            if (advice == MADV_POPULATE_WRITE && !s.writable()) {
                expect = -EINVAL;
                break;
            }
            switch (advice) {
                case MADV_DONTNEED: s.priv = nullptr; break;  // private copies go; shared data stays
                case MADV_DONTFORK: s.dontfork = true; break;
                case MADV_DOFORK: s.dontfork = false; break;
                case MADV_WIPEONFORK: s.wipeonfork = true; break;
                case MADV_KEEPONFORK: s.wipeonfork = false; break;
                case MADV_POPULATE_WRITE:
                    if (s.kind == Kind::FilePrivate && !s.priv) s.priv = s.obj->get(s.idx);
                    break;
                default: break;
            }
        }
        if (expect == 0 && hole) expect = -ENOMEM;
        int r = pl_madvise(t.t, start, n * kPage, advice);
        if (advice == MADV_COLLAPSE) return;  // success depends on layout and pins; contents must not change
        require(!(r != expect), [&] { std::ostringstream o; o << step_ << " got " << r << " want " << expect; return o.str(); });
    }

    void fork_op(const Op& op) {
        if (tasks_.size() >= 4) return;
        RefTask& p = task(op.a);
        task_struct* c = pl_fork(p.t);
        RC_ASSERT(static_cast<bool>(c));
        RefTask child{c, {}, p.regions};
        for (auto& [va, s] : p.pages) {
            if (s.dontfork) continue;
            Slot cs = s;
            if (s.wipeonfork && s.kind == Kind::Anon) cs.priv = nullptr;
            child.pages[va] = cs;
        }
        tasks_.push_back(std::move(child));
    }

    void exit_op(const Op& op) {
        if (tasks_.size() <= 1) return;
        size_t i = op.a % tasks_.size();
        pl_exit(tasks_[i].t);
        tasks_.erase(tasks_.begin() + static_cast<long>(i));
    }

    void write_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        unsigned off = op.e % kPage;
        unsigned len = 1 + (op.d * 37u) % (kPage - off);
        uint8_t byte = static_cast<uint8_t>(op.e * 7 + 1);
        std::vector<uint8_t> buf(len, byte);
        auto it = t.pages.find(start);
        long r = pl_write(t.t, start + off, buf.data(), len);
        if (it == t.pages.end() || !it->second.writable()) {
            require(!(r != -EFAULT), [&] { std::ostringstream o; o << step_ << " write got " << r; return o.str(); });
            return;
        }
        require(!(r != static_cast<long>(len)), [&] { std::ostringstream o; o << step_ << " write got " << r; return o.str(); });
        Slot& s = it->second;
        Bytes* target;
        if (s.kind == Kind::Shared) target = &s.obj->mut(s.idx);
        else {
            if (!s.priv) s.priv = s.kind == Kind::Anon ? zero_page() : s.obj->get(s.idx);
            s.priv = std::make_shared<std::array<uint8_t, kPage>>(*s.priv);  // never alias another task's copy
            target = &s.priv;
        }
        std::memset((*target)->data() + off, byte, len);
    }

    void check_read(RefTask& t, unsigned long va, const Slot& s) {
        std::array<uint8_t, kPage> got{};
        long r = pl_read(t.t, va, got.data(), kPage);
        if (!s.readable()) {
            require(!(r != -EFAULT), [&] { std::ostringstream o; o << step_ << " read of PROT_NONE got " << r; return o.str(); });
            return;
        }
        require(!(r != static_cast<long>(kPage)), [&] { std::ostringstream o; o << step_ << " read got " << r; return o.str(); });
        Bytes want = s.contents();
        if (std::memcmp(got.data(), want->data(), kPage) != 0) {
            size_t i = 0;
            while (got[i] == (*want)[i]) ++i;
            RC_LOG() << step_ << ": task pid " << pl_task_pid(t.t) << " page 0x" << std::hex << va << std::dec
                     << " byte " << i << " is " << int(got[i]) << ", expected " << int((*want)[i]) << "\n";
            RC_FAIL("data mismatch");
        }
    }

    void read_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        auto it = t.pages.find(start);
        if (it == t.pages.end()) {
            std::array<uint8_t, kPage> got{};
            RC_ASSERT(pl_read(t.t, start, got.data(), kPage) == -EFAULT);
            return;
        }
        check_read(t, start, it->second);
    }

    void file_write_op(const Op& op) {
        auto& obj = files_[op.a % files_.size()];
        unsigned long idx = op.b % kFilePages;
        uint8_t byte = static_cast<uint8_t>(op.c * 13 + 5);
        std::vector<uint8_t> buf(kPage, byte);
        RC_ASSERT(pl_pwrite(obj->file, buf.data(), kPage, idx * kPage) == static_cast<long>(kPage));
        std::memset(obj->mut(idx)->data(), byte, kPage);
    }

    // Moves one page elsewhere (MREMAP_MAYMOVE|MREMAP_FIXED to a fresh
    // address): its data, sharing and copy-on-write state move with it.
    void mremap_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        auto it = t.pages.find(start);
        long target = pl_mmap(t.t, 0, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        RC_ASSERT(target > 0);
        auto dst = static_cast<unsigned long>(target);
        RC_ASSERT(t.pages.count(dst) == 0);
        long r = pl_mremap(t.t, start, kPage, kPage, 1 /* MAYMOVE */ | 2 /* FIXED */, dst);
        if (it == t.pages.end()) {
            // Nothing to move: -EFAULT, or -EINVAL when the scratch target
            // landed in that very hole (overlapping ranges).
            long want = dst == start ? -EINVAL : -EFAULT;
            require(r == want, [&] { return step_ + " mremap of a hole got " + std::to_string(r); });
            RC_ASSERT(pl_munmap(t.t, dst, kPage) == 0);
            return;
        }
        require(r == target, [&] { return step_ + " mremap got " + std::to_string(r) + ": " + pl_last_error(); });
        t.pages[dst] = it->second;
        t.pages.erase(it);
        t.regions.emplace_back(dst, 1);
    }

    // fallocate(PUNCH_HOLE|KEEP_SIZE): the file's pages read zero again;
    // shared mappings see that, private copies already made keep their data.
    void punch_op(const Op& op) {
        auto& obj = files_[op.a % files_.size()];
        unsigned long first = op.b % kFilePages;
        unsigned long n = 1 + op.c % (kFilePages - first);
        RC_ASSERT(pl_fallocate(obj->file, 3, first * kPage, n * kPage) == 0);
        for (unsigned long i = first; i < first + n; ++i) obj->pages.erase(i);
    }

    void migrate_op(const Op& op) {
        RefTask& t = task(op.a);
        unsigned long start, n;
        if (!pick_range(t, op, &start, &n)) return;
        int r = pl_migrate_page(t.t, start);
        require(!(r != 0 && r != -EFAULT && r != -EBUSY && r != -EAGAIN && r != -ENOMEM), [&] { std::ostringstream o; o << step_ << " migrate got " << r; return o.str(); });
    }

    template <typename Msg>
    void require(bool ok, Msg&& msg) {
        if (!ok) RC_FAIL(msg());
    }

    pl_kernel* k_;
    unsigned long baseline_ = 0;
    std::vector<std::shared_ptr<Object>> files_;
    std::vector<RefTask> tasks_;
    std::string step_;
};

rc::Gen<Op> gen_op() {
    return rc::gen::build<Op>(
        rc::gen::set(&Op::kind, rc::gen::weightedElement<OpKind>({{4, OpKind::MmapAnon},
                                                                  {2, OpKind::MmapShared},
                                                                  {3, OpKind::MmapFile},
                                                                  {2, OpKind::Munmap},
                                                                  {2, OpKind::Mprotect},
                                                                  {3, OpKind::Madvise},
                                                                  {2, OpKind::Fork},
                                                                  {1, OpKind::Exit},
                                                                  {8, OpKind::Write},
                                                                  {6, OpKind::Read},
                                                                  {2, OpKind::FileWrite},
                                                                  {1, OpKind::Migrate},
                                                                  {1, OpKind::ClearRefs},
                                                                  {2, OpKind::Mremap},
                                                                  {1, OpKind::PunchHole}})),
        rc::gen::set(&Op::a, rc::gen::inRange(0u, 64u)), rc::gen::set(&Op::b, rc::gen::inRange(0u, 64u)),
        rc::gen::set(&Op::c, rc::gen::inRange(0u, 1024u)), rc::gen::set(&Op::d, rc::gen::inRange(0u, 1024u)),
        rc::gen::set(&Op::e, rc::gen::inRange(0u, 4096u)));
}

void run_sequence(const char* config, const std::vector<Op>& ops) {
    Harness h(config);
    for (const Op& op : ops) h.run(op);
    h.finish();
}

}  // namespace

RC_GTEST_PROP(VmProperty, ProcessesSeeWhatLinuxPromises, ()) {
    auto ops = *rc::gen::container<std::vector<Op>>(gen_op());
    run_sequence("ram=256M hugetlb_2m=0 thp=always", ops);
}

RC_GTEST_PROP(VmProperty, SameWithoutThpAndWithoutPteSpecial, ()) {
    auto ops = *rc::gen::container<std::vector<Op>>(gen_op());
    run_sequence("ram=128M hugetlb_2m=0 thp=never arch.pte_special=off", ops);
}
