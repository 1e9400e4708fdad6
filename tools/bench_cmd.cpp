// pinlab bench — gup_test on the model (see bench_cmd.h, docs/PERFORMANCE.md).
//
// The timed loop is mm/gup_test.c __gup_test_ioctl(): walk the range in calls
// of nr_pages_per_call pages, stop at the first short or failed call, time the
// gets, check (untimed) that pins are dma-pinned (verify_dma_pinned), then
// time the puts. The slow-path commands hold mmap_read_lock across both, as
// the ioctl does. Each of -j threads runs the whole loop over the one shared
// mapping, as gup_test's threads do.
#include "bench_cmd.h"
#include "json_text.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/config.h"
#include "base/sync/atomic.h"
#include "oracle/host_pin.h"
#include "pinlab/kapi.h"

namespace pl::tools {

namespace {

constexpr unsigned long kPage = 4096;
constexpr unsigned long kMiB = 1UL << 20;
constexpr unsigned long kHuge2M = 2UL << 20;

using Clock = std::chrono::steady_clock;

const char* cmd_name(GupTestCmd c) {
    switch (c) {
    case GupTestCmd::gup_fast_benchmark: return "GUP_FAST_BENCHMARK";
    case GupTestCmd::pin_fast_benchmark: return "PIN_FAST_BENCHMARK";
    case GupTestCmd::pin_longterm_benchmark: return "PIN_LONGTERM_BENCHMARK";
    case GupTestCmd::gup_basic_test: return "GUP_BASIC_TEST";
    case GupTestCmd::pin_basic_test: return "PIN_BASIC_TEST";
    case GupTestCmd::dump_user_pages_test: return "DUMP_USER_PAGES_TEST";
    }
    return "Unknown command";
}

bool is_benchmark(GupTestCmd c) {
    return c == GupTestCmd::gup_fast_benchmark || c == GupTestCmd::pin_fast_benchmark ||
           c == GupTestCmd::pin_longterm_benchmark;
}

// What the timed loop of one command does (gup_test.c's two switches).
struct CmdPlan {
    GupTestCmd cmd;
    bool needs_mmap_lock;  // every command but the two *_FAST ones
    bool pins;             // released with unpin_user_pages, else put_page
    bool longterm;
};

CmdPlan plan_of(GupTestCmd c, bool dump_with_pin) {
    CmdPlan p{c, true, false, false};
    switch (c) {
    case GupTestCmd::gup_fast_benchmark: p.needs_mmap_lock = false; break;
    case GupTestCmd::pin_fast_benchmark: p.needs_mmap_lock = false; p.pins = true; break;
    case GupTestCmd::pin_longterm_benchmark: p.pins = true; p.longterm = true; break;
    case GupTestCmd::gup_basic_test: break;
    case GupTestCmd::pin_basic_test: p.pins = true; break;
    case GupTestCmd::dump_user_pages_test: p.pins = dump_with_pin; break;
    }
    return p;
}

// One ioctl's worth: the struct gup_test fields the tool reads back.
struct Sample {
    int thread = 0;
    long long get_us = 0;  // ktime_us_delta: whole microseconds
    long long put_us = 0;
    double get_ns = 0;  // the same, unrounded, for ns/page
    double put_ns = 0;
    unsigned long size = 0;  // bytes actually walked (gup->size on return)
    unsigned long pages = 0;
    std::string verify_failure;  // verify_dma_pinned's WARN, if any
};

// A per-thread progress counter on its own cache line, so that counting does
// not make the -j threads share a line the pin loop would not share.
struct alignas(64) Progress {
    sync::Atomic<unsigned long> pages{0};
};

struct RunShape {
    CmdPlan plan;
    unsigned long addr = 0;
    unsigned long size = 0;
    long nr_per_call = 1;
    unsigned int gup_flags = 0;
    int repeats = 1;
    int threads = 1;
    bool stagger = false;  // --stagger: thread i starts at i/threads of the range
};

// __gup_test_ioctl() for one thread, `repeats` times.
void gup_thread(task_struct* t, const RunShape& s, int thread, Progress* progress, const sync::Atomic<int>* go,
                std::vector<Sample>* out) {
    pl_set_current(t);
    mm_struct* mm = pl_task_mm(t);
    const unsigned long nr_pages = s.size / kPage;
    std::vector<page*> pages(nr_pages);
    while (go->load(sync::memory_order_acquire) == 0) std::this_thread::yield();
    unsigned long done = 0;
    for (int r = 0; r < s.repeats; ++r) {
        if (s.plan.needs_mmap_lock) mmap_read_lock(mm);
        // gup_test's walk is one segment from the start; staggered threads
        // walk the same pages from their own offset, wrapping around.
        const unsigned long off = s.stagger ? (nr_pages * static_cast<unsigned long>(thread) /
                                               static_cast<unsigned long>(s.threads)) * kPage
                                            : 0;
        const unsigned long seg_start[2] = {s.addr + off, s.addr};
        const unsigned long seg_end[2] = {s.addr + s.size, s.addr + off};
        unsigned long i = 0;
        long nr = s.nr_per_call;
        unsigned long addr = seg_start[0];
        unsigned long walked = 0;
        auto t0 = Clock::now();
        for (int seg = 0; seg < (off ? 2 : 1) && nr == s.nr_per_call; ++seg) {
          const unsigned long end = seg_end[seg];
          addr = seg_start[seg];
          for (unsigned long next; addr < end; addr = next) {
            if (nr != s.nr_per_call) break;  // the previous call came up short
            next = addr + static_cast<unsigned long>(nr) * kPage;
            if (next > end) {
                next = end;
                nr = static_cast<long>((next - addr) / kPage);
            }
            switch (s.plan.cmd) {
            case GupTestCmd::gup_fast_benchmark:
                nr = get_user_pages_fast(addr, static_cast<int>(nr), s.gup_flags, pages.data() + i);
                break;
            case GupTestCmd::pin_fast_benchmark:
                nr = pin_user_pages_fast(addr, static_cast<int>(nr), s.gup_flags, pages.data() + i);
                break;
            case GupTestCmd::pin_longterm_benchmark:
                nr = pin_user_pages(addr, static_cast<unsigned long>(nr), s.gup_flags | FOLL_LONGTERM,
                                    pages.data() + i);
                break;
            case GupTestCmd::gup_basic_test:
                nr = get_user_pages(addr, static_cast<unsigned long>(nr), s.gup_flags, pages.data() + i);
                break;
            case GupTestCmd::pin_basic_test:
                nr = pin_user_pages(addr, static_cast<unsigned long>(nr), s.gup_flags, pages.data() + i);
                break;
            case GupTestCmd::dump_user_pages_test:
                nr = s.plan.pins
                         ? pin_user_pages(addr, static_cast<unsigned long>(nr), s.gup_flags, pages.data() + i)
                         : get_user_pages(addr, static_cast<unsigned long>(nr), s.gup_flags, pages.data() + i);
                break;
            }
            if (nr <= 0) break;
            i += static_cast<unsigned long>(nr);
            walked += static_cast<unsigned long>(nr) * kPage;
            if (progress) progress->pages.store(done + i, sync::memory_order_relaxed);
          }
          // The first segment's last call may be cut at its end: only a call
          // that returned less than it asked ends the walk.
          if (nr > 0 && addr >= end && walked == (end - seg_start[0])) nr = s.nr_per_call;
        }
        auto t1 = Clock::now();
        Sample smp;
        smp.thread = thread;
        smp.pages = i;
        smp.size = off ? walked : addr - s.addr;  // gup->size = addr - gup->addr
        smp.get_ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
        // verify_dma_pinned(): untimed, pins only.
        if (s.plan.pins) {
            for (unsigned long j = 0; j < i; ++j) {
                folio* f = page_folio(pages[j]);
                if (!folio_maybe_dma_pinned(f)) {
                    smp.verify_failure = "pages[" + std::to_string(j) + "] is NOT dma-pinned";
                    break;
                }
            }
        }
        t0 = Clock::now();
        if (s.plan.pins) {
            unpin_user_pages(pages.data(), i);
        } else {
            for (unsigned long j = 0; j < i; ++j) put_page(pages[j]);
        }
        t1 = Clock::now();
        if (s.plan.needs_mmap_lock) mmap_read_unlock(mm);
        smp.put_ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
        smp.get_us = static_cast<long long>(smp.get_ns / 1000);
        smp.put_us = static_cast<long long>(smp.put_ns / 1000);
        out->push_back(smp);
        done += i;
    }
    pl_set_current(nullptr);
}

// A progress bar on stderr while the threads run (only on a terminal).
class ProgressBar {
public:
    ProgressBar(const std::vector<Progress>& p, unsigned long total) : p_(p), total_(total) {
        th_ = std::thread([this] { loop(); });
    }
    ~ProgressBar() {
        stop_.store(1, sync::memory_order_release);
        th_.join();
        std::fprintf(stderr, "\r%60s\r", "");
    }
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

private:
    void loop() {
        while (stop_.load(sync::memory_order_acquire) == 0) {
            unsigned long sum = 0;
            for (const Progress& x : p_) sum += x.pages.load(sync::memory_order_relaxed);
            const int pct = total_ ? static_cast<int>(std::min(100UL, sum * 100 / total_)) : 100;
            char bar[41];
            std::fill(bar, bar + 40, ' ');
            std::fill(bar, bar + pct * 40 / 100, '#');
            bar[40] = 0;
            std::fprintf(stderr, "\rbench [%s] %3d%%", bar, pct);
            std::fflush(stderr);
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
    }
    const std::vector<Progress>& p_;
    unsigned long total_;
    sync::Atomic<int> stop_{0};
    std::thread th_;
};

std::string host_kernel() {
    utsname u{};
    if (uname(&u) != 0) return "unknown";
    return u.release;
}

std::string json_str(const std::string& s) { return tools::json_quote(s); }

std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

struct Summary {
    double get_ns_per_page = 0;  // mean over samples
    double put_ns_per_page = 0;
    double pages_per_sec = 0;  // summed over threads
    bool valid = false;
};

Summary summarise(const std::vector<Sample>& samples, int threads) {
    Summary s;
    double get = 0, put = 0;
    unsigned long pages = 0;
    for (const Sample& x : samples) {
        get += x.get_ns;
        put += x.put_ns;
        pages += x.pages;
    }
    if (pages == 0) return s;
    s.valid = true;
    s.get_ns_per_page = get / static_cast<double>(pages);
    s.put_ns_per_page = put / static_cast<double>(pages);
    // Each thread's own rate, added: what the threads pin per second while
    // they all run (they start together and each does the same work).
    s.pages_per_sec = 1e9 / (s.get_ns_per_page + s.put_ns_per_page) * threads;
    return s;
}

struct HostResult {
    std::string door;  // "io_uring register/unregister" or "O_DIRECT read"
    std::string skipped;
    std::vector<oracle::HostTiming> runs;
    unsigned long pages = 0;
    double ns_per_page() const {
        double t = 0;
        for (const auto& r : runs) t += (r.get_us + r.put_us) * 1000;
        return runs.empty() || pages == 0 ? 0 : t / static_cast<double>(runs.size() * pages);
    }
};

HostResult measure_host(const BenchOptions& o, const CmdPlan& plan, unsigned long size) {
    HostResult h;
    h.pages = size / kPage;
    // Pins (-a, -L) are compared with io_uring's register + unregister: the
    // host's pin_user_pages() and unpin of the whole buffer, nothing else
    // timed. GETs (-u) have no door of their own; an O_DIRECT read pins
    // short-term but also times the device I/O (an upper bound).
    const bool uring = o.kernel_door == "io_uring" || (o.kernel_door == "auto" && plan.pins);
    h.door = uring ? "io_uring register/unregister" : "O_DIRECT read";
    oracle::HostBufferSpec spec;
    spec.bytes = size;
    spec.sharing = o.shared ? oracle::HostSharing::shared_map : oracle::HostSharing::private_map;
    spec.hugetlb = o.hugetlb ? oracle::HostHugetlb::yes : oracle::HostHugetlb::no;
    spec.thp = o.thp_on    ? oracle::HostThp::hugepage
               : o.thp_off ? oracle::HostThp::nohugepage
                           : oracle::HostThp::unchanged;
    auto buf = oracle::HostBuffer::create(spec);
    if (!buf.ok()) {
        h.skipped = std::string("host mmap/populate of the buffer failed: ") + std::strerror(buf.error().errnum) +
                    (o.hugetlb ? " (are hugetlb pages reserved? vm.nr_hugepages)" : "");
        return h;
    }
    oracle::HostRefusal why;
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = tmp && *tmp ? tmp : "/tmp";
    const int repeats = std::max(1, o.repeats);
    auto runs = uring ? oracle::host_pin_longterm(*buf, repeats, &why)
                      : oracle::host_pin_direct_io(*buf, dir, repeats, &why);
    if (!runs.ok()) {
        h.skipped = why.why;
        return h;
    }
    h.runs = std::move(*runs);
    return h;
}

}  // namespace

BenchCommand::BenchCommand(CLI::App& app) {
    cmd_ = app.add_subcommand("bench",
                              "gup_test-compatible GUP benchmark on a booted model kernel "
                              "(tools/testing/selftests/mm/gup_test options and output)");
    auto* c = cmd_;
    c->add_flag("-u", opt_.u, "GUP_FAST_BENCHMARK: get_user_pages_fast + put_page (the default)");
    c->add_flag("-a", opt_.a, "PIN_FAST_BENCHMARK: pin_user_pages_fast + unpin_user_pages");
    c->add_flag("-L", opt_.L, "PIN_LONGTERM_BENCHMARK: pin_user_pages(FOLL_LONGTERM) under mmap_read_lock");
    c->add_flag("-U", opt_.U, "GUP_BASIC_TEST: get_user_pages under mmap_read_lock");
    c->add_flag("-b", opt_.b, "PIN_BASIC_TEST: pin_user_pages under mmap_read_lock");
    c->add_flag("-c", opt_.c, "DUMP_USER_PAGES_TEST: get the pages and dump those named (default page 0)");
    c->add_flag("-p", opt_.p, "with -c: pin instead of get");
    c->add_option("-F", opt_.foll_flags, "Extra FOLL_* flags (decimal or 0x hex, as strtol)");
    c->add_option("-m", opt_.mib, "Size in MiB (default 128)")->check(CLI::Range(1L, 1L << 20));
    c->add_option("-n", opt_.nr_pages, "Pages per call (default 1; negative: the whole size)");
    c->add_option("-r", opt_.repeats, "Repeats (default 1)")->check(CLI::Range(1, 1 << 20));
    c->add_option("-j", opt_.threads, "Threads sharing the one mapping (default 1)")->check(CLI::Range(1, 256));
    c->add_flag("--stagger", opt_.stagger,
                "With -j: thread i starts its walk at i/j of the range and wraps around (same pages, other "
                "order), so threads do not write the same struct pages at the same moment");
    c->add_flag("-t", opt_.thp_on, "madvise(MADV_HUGEPAGE) the mapping");
    c->add_flag("-T", opt_.thp_off, "madvise(MADV_NOHUGEPAGE) the mapping");
    c->add_flag("-w", opt_.write, "FOLL_WRITE (the default)");
    c->add_flag("-W", opt_.no_write, "No FOLL_WRITE");
    c->add_flag("-S", opt_.shared, "MAP_SHARED instead of MAP_PRIVATE");
    c->add_flag("-H", opt_.hugetlb, "MAP_HUGETLB|MAP_ANONYMOUS (2 MiB hugetlb pages, reserved at boot)");
    c->add_option("-f", opt_.file,
                  "Map a new model file of this file system (ext4, xfs, btrfs, tmpfs, memfd, hugetlbfs, ...) "
                  "instead of /dev/zero");
    c->add_option("pages", opt_.dump_pages, "With -c: page indices to dump (0-based)");
    c->add_flag("--compare-kernel", opt_.compare_kernel,
                "Also pin the same size and backing on the host kernel (see --kernel-door)");
    c->add_option("--kernel-door", opt_.kernel_door,
                  "How the host pins for --compare-kernel: io_uring (register + unregister), odirect (one "
                  "O_DIRECT read, device I/O included) or auto (io_uring for -a/-L, odirect for -u)")
        ->check(CLI::IsMember({"auto", "io_uring", "odirect"}));
    c->add_option("--format", opt_.format, "Output format")->check(CLI::IsMember({"text", "json"}));
    c->add_option("--config", opt_.config, "Kernel configuration key=value words (repeatable; after bench's sizing)")
        ->allow_extra_args(false);
    c->add_flag("--no-progress", opt_.no_progress, "No progress bar, even on a terminal");
}

int BenchCommand::run(const std::string& global_config) const {
    const BenchOptions& o = opt_;
    const int ncmd = o.u + o.a + o.L + o.U + o.b + o.c;
    if (ncmd > 1) {
        std::fprintf(stderr, "pinlab bench: choose one of -u -a -L -U -b -c\n");
        return 2;
    }
    if (o.thp_on && o.thp_off) {
        std::fprintf(stderr, "pinlab bench: -t and -T exclude each other\n");
        return 2;
    }
    GupTestCmd cmd = GupTestCmd::gup_fast_benchmark;
    if (o.a) cmd = GupTestCmd::pin_fast_benchmark;
    if (o.L) cmd = GupTestCmd::pin_longterm_benchmark;
    if (o.U) cmd = GupTestCmd::gup_basic_test;
    if (o.b) cmd = GupTestCmd::pin_basic_test;
    if (o.c) cmd = GupTestCmd::dump_user_pages_test;
    const CmdPlan plan = plan_of(cmd, o.p);

    char* endp = nullptr;
    const unsigned long extra_flags = std::strtoul(o.foll_flags.c_str(), &endp, 0);
    if (!endp || *endp) {
        std::fprintf(stderr, "pinlab bench: -F %s: not a number\n", o.foll_flags.c_str());
        return 2;
    }
    unsigned int gup_flags = static_cast<unsigned int>(extra_flags);
    if (!o.no_write) gup_flags |= FOLL_WRITE;  // gup_test writes by default; -W clears

    RunShape shape;
    shape.plan = plan;
    shape.size = static_cast<unsigned long>(o.mib) * kMiB;
    shape.nr_per_call = o.nr_pages < 0 ? static_cast<long>(shape.size / kPage) : o.nr_pages;
    shape.gup_flags = gup_flags;
    shape.repeats = is_benchmark(cmd) ? o.repeats : 1;
    shape.threads = o.threads;
    shape.stagger = o.stagger;
    if (shape.nr_per_call == 0) {
        std::fprintf(stderr, "pinlab bench: -n 0 pins nothing\n");
        return 2;
    }
    if (shape.nr_per_call > (1L << 30)) {
        std::fprintf(stderr, "pinlab bench: -n too large\n");
        return 2;
    }

    // A kernel sized for the request: RAM for the mapping (twice, for copies
    // and migration targets) beside the default 4G; the hugetlb pool when -H.
    std::string config = "ram=" + std::to_string((4UL << 30) / kMiB + 2 * shape.size / kMiB) + "M";
    if (o.hugetlb || o.file == "hugetlbfs" || o.file == "memfd-hugetlb")
        config += " hugetlb_2m=" + std::to_string((shape.size + kHuge2M - 1) / kHuge2M);
    if (!global_config.empty()) config += " " + global_config;
    for (const std::string& w : o.config) config += " " + w;
    pl_kernel* k = pl_kernel_new(config.c_str());
    if (!k) {
        std::fprintf(stderr, "pinlab bench: %s\n", pl_last_error());
        return 2;
    }

    task_struct* t = pl_task_new(k);
    pl_file* f = nullptr;
    int flags = o.shared ? MAP_SHARED : MAP_PRIVATE;
    std::string backing;
    if (o.hugetlb) {
        // gup_test: flags |= MAP_HUGETLB | MAP_ANONYMOUS, the file is ignored.
        flags |= MAP_HUGETLB | MAP_ANONYMOUS;
        backing = std::string(o.shared ? "shared" : "private") + " anonymous hugetlb (2 MiB)";
    } else if (!o.file.empty()) {
        f = pl_file_new(k, o.file.c_str(), shape.size);
        if (!f) {
            std::fprintf(stderr, "pinlab bench: -f %s: %s\n", o.file.c_str(), pl_last_error());
            pl_exit(t);
            pl_kernel_free(k);
            return 2;
        }
        backing = std::string(o.shared ? "MAP_SHARED " : "MAP_PRIVATE ") + o.file + " file";
    } else {
        // gup_test maps /dev/zero: private is anonymous memory, shared is shmem.
        flags |= MAP_ANONYMOUS;
        backing = std::string(o.shared ? "shared" : "private") + " anonymous";
    }
    long addr = pl_mmap(t, 0, shape.size, PROT_READ | PROT_WRITE, flags, f, 0);
    if (addr < 0) {
        std::fprintf(stderr, "pinlab bench: mmap: %s (%s)\n", std::strerror(static_cast<int>(-addr)), pl_last_error());
        pl_exit(t);
        if (f) pl_file_put(f);
        pl_kernel_free(k);
        return 1;
    }
    shape.addr = static_cast<unsigned long>(addr);
    if (o.thp_on) pl_madvise(t, shape.addr, shape.size, MADV_HUGEPAGE);
    if (o.thp_off) pl_madvise(t, shape.addr, shape.size, MADV_NOHUGEPAGE);
    // Fault them in from "user space" first, as gup_test does (p[0] = 0).
    const char zero = 0;
    for (unsigned long off = 0; off < shape.size; off += kPage) {
        if (pl_write(t, shape.addr + off, &zero, 1) != 1) {
            std::fprintf(stderr, "pinlab bench: faulting in page %lu failed: %s\n", off / kPage, pl_last_error());
            pl_exit(t);
            if (f) pl_file_put(f);
            pl_kernel_free(k);
            return 1;
        }
    }
    // What the pages ended up as (the model's THP/hugetlb decisions).
    unsigned long huge_pages = 0;
    for (unsigned long off = 0; off < shape.size; off += kPage) {
        page* pg = pl_virt_to_page(t, shape.addr + off);
        if (pg && PageCompound(pg)) ++huge_pages;
    }

    std::vector<Progress> progress(static_cast<std::size_t>(o.threads));
    std::vector<std::vector<Sample>> per_thread(static_cast<std::size_t>(o.threads));
    const unsigned long total_pages = shape.size / kPage * static_cast<unsigned long>(shape.repeats) *
                                      static_cast<unsigned long>(o.threads);
    const bool bar = !o.no_progress && isatty(STDERR_FILENO) && total_pages >= (1UL << 18);
    {
        sync::Atomic<int> go{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < o.threads; ++i) {
            const auto n = static_cast<std::size_t>(i);
            threads.emplace_back(gup_thread, t, std::cref(shape), i, bar ? &progress[n] : nullptr, &go, &per_thread[n]);
        }
        std::unique_ptr<ProgressBar> pb;
        if (bar) pb = std::make_unique<ProgressBar>(progress, total_pages);
        go.store(1, sync::memory_order_release);
        for (auto& th : threads) th.join();
    }
    std::vector<Sample> samples;
    for (const auto& v : per_thread) samples.insert(samples.end(), v.begin(), v.end());
    // -L: the first repeat finds pages in ZONE_MOVABLE or CMA and migrates
    // them before pinning (check_and_migrate_movable_pages); later repeats
    // pin pages already moved. Their costs are told apart.
    const unsigned long migrated = pl_vmstat(k, "pgmigrate_success");
    double first_get = 0, later_get = 0;
    unsigned long first_n = 0, later_n = 0;
    for (const auto& v : per_thread)
        for (std::size_t r = 0; r < v.size(); ++r) {
            if (!v[r].pages) continue;
            (r == 0 ? first_get : later_get) += v[r].get_ns / static_cast<double>(v[r].pages);
            (r == 0 ? first_n : later_n)++;
        }
    const bool split_longterm = plan.longterm && migrated > 0 && first_n > 0 && later_n > 0;
    if (first_n) first_get /= static_cast<double>(first_n);
    if (later_n) later_get /= static_cast<double>(later_n);

    // -c: dump the named pages (dump_pages_test), with a fresh get/pin.
    std::string dump;
    if (cmd == GupTestCmd::dump_user_pages_test) {
        std::vector<long> which = o.dump_pages.empty() ? std::vector<long>{0} : o.dump_pages;
        pl_set_current(t);
        for (long idx : which) {
            if (idx < 0 || static_cast<unsigned long>(idx) >= shape.size / kPage) {
                dump += "ZEROING due to out of range: page " + std::to_string(idx) + "\n";
                continue;
            }
            page* pg = nullptr;
            mmap_read_lock(pl_task_mm(t));
            const unsigned long a = shape.addr + static_cast<unsigned long>(idx) * kPage;
            long n = plan.pins ? pin_user_pages(a, 1, gup_flags, &pg) : get_user_pages(a, 1, gup_flags, &pg);
            mmap_read_unlock(pl_task_mm(t));
            if (n != 1) continue;
            char line[200];
            std::snprintf(line, sizeof line,
                          "---- page #%ld, starting from user virt addr: %#lx: pfn %#lx refcount %d mapcount %d%s%s\n",
                          idx, shape.addr, page_to_pfn(pg), page_ref_count(pg), page_mapcount(pg),
                          PageCompound(pg) ? " compound" : "", plan.pins ? " (pinned)" : "");
            dump += line;
            if (plan.pins) unpin_user_page(pg);
            else put_page(pg);
        }
        pl_set_current(nullptr);
    }

    pl_munmap(t, shape.addr, shape.size);
    pl_exit(t);
    if (f) pl_file_put(f);
    const int check = pl_kernel_check(k);
    const std::string check_error = check ? pl_last_error() : "";
    const std::string dmesg = pl_dmesg(k);
    const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
    const unsigned long released = pl_vmstat(k, "nr_foll_pin_released");
    const std::string kernel_config = pl_kernel_config(k);
    pl_kernel_free(k);

    const Summary sum = summarise(samples, o.threads);
    HostResult host;
    if (o.compare_kernel && is_benchmark(cmd)) host = measure_host(o, plan, shape.size);
    const bool have_host = o.compare_kernel && host.skipped.empty() && !host.runs.empty();
    const double model_ns = sum.get_ns_per_page + sum.put_ns_per_page;
    const double host_ns = have_host ? host.ns_per_page() : 0;
    const double ratio = have_host && host_ns > 0 ? model_ns / host_ns : 0;

    int status = 0;
    std::string problems;
    for (const Sample& s : samples)
        if (!s.verify_failure.empty()) {
            problems += "WARNING: verify_dma_pinned: " + s.verify_failure + "\n";
            status = 1;
        }
    if (check) {
        problems += "invariants broken: " + check_error + "\n";
        status = 1;
    }
    if (acquired != released) {
        problems += "nr_foll_pin_acquired " + std::to_string(acquired) + " != nr_foll_pin_released " +
                    std::to_string(released) + "\n";
        status = 1;
    }

    const std::string uname_r = host_kernel();
    if (o.format == "json") {
        std::string j = "{\n  \"command\": " + json_str(cmd_name(cmd)) + ",\n  \"size\": " +
                        std::to_string(shape.size) +
                        ",\n  \"nr_pages_per_call\": " + std::to_string(shape.nr_per_call) +
                        ",\n  \"gup_flags\": " + std::to_string(gup_flags) + ",\n  \"threads\": " +
                        std::to_string(o.threads) + ",\n  \"repeats\": " + std::to_string(shape.repeats) +
                        ",\n  \"backing\": " + json_str(backing) + ",\n  \"model_huge_pages\": " +
                        std::to_string(huge_pages) + ",\n  \"kernel_config\": " + json_str(kernel_config) +
                        ",\n  \"host_kernel\": " + json_str(uname_r) + ",\n  \"runs\": [";
        for (std::size_t i = 0; i < samples.size(); ++i) {
            const Sample& s = samples[i];
            j += std::string(i ? "," : "") + "\n    {\"thread\": " + std::to_string(s.thread) +
                 ", \"get_us\": " + std::to_string(s.get_us) + ", \"put_us\": " + std::to_string(s.put_us) +
                 ", \"size\": " + std::to_string(s.size) + ", \"pages\": " + std::to_string(s.pages) + "}";
        }
        j += "\n  ],\n  \"model\": {\"get_ns_per_page\": " + num(sum.get_ns_per_page) + ", \"put_ns_per_page\": " +
             num(sum.put_ns_per_page) + ", \"ns_per_page\": " + num(model_ns) + ", \"pages_per_sec\": " +
             num(sum.pages_per_sec) + "}";
        if (o.compare_kernel) {
            j += ",\n  \"kernel\": {\"door\": " + json_str(host.door);
            if (have_host) {
                j += ", \"runs\": [";
                for (std::size_t i = 0; i < host.runs.size(); ++i)
                    j += std::string(i ? ", " : "") + "{\"get_us\": " + num(host.runs[i].get_us) + ", \"put_us\": " +
                         num(host.runs[i].put_us) + "}";
                j += "], \"ns_per_page\": " + num(host_ns) + "}";
                j += ",\n  \"ratio\": " + num(ratio);
            } else {
                j += ", \"skipped\": " + json_str(host.skipped.empty() ? "not a benchmark command" : host.skipped) +
                     "}";
            }
        }
        if (split_longterm)
            j += ",\n  \"longterm\": {\"pgmigrate_success\": " + std::to_string(migrated) +
                 ", \"first_repeat_get_ns_per_page\": " + num(first_get) +
                 ", \"later_repeats_get_ns_per_page\": " + num(later_get) +
                 ", \"ratio\": " + num(first_get / later_get) + "}";
        j += ",\n  \"dmesg\": " + json_str(dmesg) + ",\n  \"problems\": " + json_str(problems) +
             ",\n  \"exit_status\": " + std::to_string(status) + "\n}\n";
        std::fputs(j.c_str(), stdout);
    } else {
        // gup_test's own lines, one per repeat per thread.
        for (const Sample& s : samples) {
            if (is_benchmark(cmd)) {
                std::printf("%s: Time: get:%lld put:%lld us", cmd_name(cmd), s.get_us, s.put_us);
                if (s.size != shape.size) std::printf(", truncated (size: %lu)", s.size);
                std::printf("\n");
            } else {
                std::printf("%s: done\n", cmd_name(cmd));
                if (s.size != shape.size) std::printf("Truncated (size: %lu)\n", s.size);
            }
        }
        std::fputs(dump.c_str(), stdout);
        std::printf("model: %s, %lu MiB, %lu of %lu pages in huge folios, %ld pages/call, %d thread%s, flags %#x\n",
                    backing.c_str(), shape.size / kMiB, huge_pages, shape.size / kPage, shape.nr_per_call, o.threads,
                    o.threads == 1 ? "" : "s", gup_flags);
        if (sum.valid)
            std::printf("model: ns per 4 KiB page: get %.1f put %.1f total %.1f; %.3g pages/s over %d thread%s\n",
                        sum.get_ns_per_page, sum.put_ns_per_page, model_ns, sum.pages_per_sec, o.threads,
                        o.threads == 1 ? "" : "s");
        if (split_longterm)
            std::printf("model: longterm: repeat 1 (migrate + re-pin, %lu pages migrated) get %.1f ns/pg; "
                        "repeats 2..%d get %.1f ns/pg; ratio %.1f\n",
                        migrated, first_get, shape.repeats, later_get, first_get / later_get);
        if (o.compare_kernel) {
            if (!is_benchmark(cmd)) {
                std::printf("kernel: skipped: --compare-kernel times the benchmark commands (-u -a -L) only\n");
            } else if (!have_host) {
                std::printf("kernel %s: skipped: %s\n", uname_r.c_str(), host.skipped.c_str());
            } else {
                for (const auto& r : host.runs)
                    std::printf("KERNEL %s: Time: get:%lld put:%lld us\n", host.door.c_str(),
                                static_cast<long long>(r.get_us), static_cast<long long>(r.put_us));
                std::printf("kernel %s (%s, 1 thread): ns per 4 KiB page: total %.1f\n", uname_r.c_str(),
                            host.door.c_str(), host_ns);
                std::printf("model/kernel: %.2f\n", ratio);
            }
        }
        if (!dmesg.empty()) std::fprintf(stderr, "%s", dmesg.c_str());
        std::fputs(problems.c_str(), stderr);
    }
    return status;
}

}  // namespace pl::tools
