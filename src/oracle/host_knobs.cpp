// pinlab — what the host offers a conformance run, and the host knobs a
// scenario's `config` changes (see host_knobs.h).
//
// Host code, not model code. The signal path is the delicate part: a run
// interrupted by ^C must not leave the machine in THP "always" or with
// gigabytes in a hugetlb pool, so every value a KnobSet saves is also
// copied into a fixed, preallocated table that a signal handler can walk
// with nothing but open/write/close.
#include "oracle/host_knobs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "oracle/host_doors.h"

namespace pl::oracle {

namespace {

constexpr const char* kThpDir = "/sys/kernel/mm/transparent_hugepage";
constexpr const char* kThpEnabled = "/sys/kernel/mm/transparent_hugepage/enabled";
constexpr const char* kThpZeroPage = "/sys/kernel/mm/transparent_hugepage/use_zero_page";

std::string pool_file(unsigned long kb, const char* name) {
    return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(kb) + "kB/" + name;
}

bool read_file(const std::string& path, std::string* out) {
    std::ifstream in(path);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
    while (!out->empty() && (out->back() == '\n' || out->back() == ' ')) out->pop_back();
    return true;
}

bool read_ulong(const std::string& path, unsigned long* v) {
    std::string s;
    if (!read_file(path, &s) || s.empty()) return false;
    char* end = nullptr;
    errno = 0;
    *v = std::strtoul(s.c_str(), &end, 10);
    return errno == 0 && end != s.c_str();
}

// /proc/meminfo MemAvailable, in kB; 0 when unknown.
unsigned long mem_available_kb() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    unsigned long v = 0;
    std::string unit;
    while (in >> key >> v) {
        std::getline(in, unit);
        if (key == "MemAvailable:") return v;
    }
    return 0;
}

// 0 or errno. sysfs takes the whole value in one write().
int write_file(const std::string& path, const std::string& value) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    const ssize_t n = ::write(fd, value.data(), value.size());
    const int e = n < 0 ? errno : (static_cast<size_t>(n) != value.size() ? EIO : 0);
    ::close(fd);
    return e;
}

// "always [madvise] never" -> "madvise" (mm/huge_memory.c enabled_show()).
std::string bracketed(const std::string& s) {
    const auto b = s.find('[');
    const auto e = s.find(']', b == std::string::npos ? 0 : b);
    if (b == std::string::npos || e == std::string::npos) return s;
    return s.substr(b + 1, e - b - 1);
}

// ---- the signal-time restore table -----------------------------------------
//
// Fixed-size, preallocated, lock-free: the handler may run on any thread at
// any moment, including in the middle of apply() or restore(). A slot is
// claimed (free -> filling), filled, then published (-> live); the handler
// writes only live slots. std::atomic, not sync::Atomic: sync::Atomic
// announces model scheduling points, which a signal handler must not run,
// and this is host code outside the model.

constexpr int kSlots = 32;
constexpr size_t kPathMax = 128;
constexpr size_t kValueMax = 64;
enum SlotState : int { kFree = 0, kFilling = 1, kLive = 2 };

struct Slot {
    std::atomic<int> state{kFree};
    const KnobSet* owner = nullptr;
    char path[kPathMax] = {};
    char value[kValueMax] = {};
    size_t value_len = 0;
};

Slot g_slots[kSlots];
std::atomic<int> g_live_sets{0};      // KnobSets with at least one live slot
std::atomic<pid_t> g_owner_pid{0};    // the process that saved the values
constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_old_actions[3];
bool g_installed[3] = {};

// Async-signal-safe: open, write, close, getpid, sigaction, raise only.
void restore_on_signal(int sig) {
    // A child forked after apply() inherits this handler and the table, but
    // the knobs are its parent's to put back.
    if (::getpid() == g_owner_pid.load()) {
        for (Slot& s : g_slots) {
            if (s.state.load() != kLive) continue;
            const int fd = ::open(s.path, O_WRONLY | O_CLOEXEC);
            if (fd < 0) continue;
            ssize_t n = ::write(fd, s.value, s.value_len);
            (void)n;
            ::close(fd);
        }
    }
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    ::sigaction(sig, &dfl, nullptr);
    ::raise(sig);  // pending until the handler returns (sig is blocked in it), then the default action
}

void install_handlers() {
    g_owner_pid.store(::getpid());
    for (int i = 0; i < 3; ++i) {
        struct sigaction old {};
        ::sigaction(kSignals[i], nullptr, &old);
        // A signal the program ignores (nohup's SIGHUP) stays ignored: it
        // will not end the run, so there is nothing to put back early.
        if (old.sa_handler == SIG_IGN) continue;
        struct sigaction sa {};
        sa.sa_handler = restore_on_signal;
        ::sigemptyset(&sa.sa_mask);
        for (int s : kSignals) ::sigaddset(&sa.sa_mask, s);  // one restore at a time
        if (::sigaction(kSignals[i], &sa, &g_old_actions[i]) == 0) g_installed[i] = true;
    }
}

void uninstall_handlers() {
    for (int i = 0; i < 3; ++i) {
        if (!g_installed[i]) continue;
        ::sigaction(kSignals[i], &g_old_actions[i], nullptr);
        g_installed[i] = false;
    }
}

bool owns_live_slot(const KnobSet* set) {
    for (Slot& s : g_slots)
        if (s.state.load() == kLive && s.owner == set) return true;
    return false;
}

// Publish (path, value) for the handler. false when the table is full or
// the strings do not fit (the value is still restored on the normal paths).
bool publish(const KnobSet* set, const std::string& path, const std::string& value) {
    if (path.size() >= kPathMax || value.size() >= kValueMax) return false;
    const bool first = !owns_live_slot(set);
    for (Slot& s : g_slots) {
        int expected = kFree;
        if (!s.state.compare_exchange_strong(expected, kFilling)) continue;
        s.owner = set;
        std::memcpy(s.path, path.c_str(), path.size() + 1);
        std::memcpy(s.value, value.data(), value.size());
        s.value_len = value.size();
        s.state.store(kLive);
        if (first && g_live_sets.fetch_add(1) == 0) install_handlers();
        return true;
    }
    return false;
}

void unpublish(const KnobSet* set) {
    bool had = false;
    for (Slot& s : g_slots) {
        if (s.state.load() != kLive || s.owner != set) continue;
        s.state.store(kFree);
        had = true;
    }
    if (had && g_live_sets.fetch_sub(1) == 1) uninstall_handlers();
}

// ---- /proc/mounts ------------------------------------------------------------

struct Mount {
    std::string dir;
    std::string type;
    bool ro = false;
};

// /proc/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            const std::string oct = s.substr(i + 1, 3);
            if (oct.find_first_not_of("01234567") == std::string::npos) {
                out.push_back(static_cast<char>(std::strtol(oct.c_str(), nullptr, 8)));
                i += 3;
                continue;
            }
        }
        out.push_back(s[i]);
    }
    return out;
}

std::vector<Mount> read_mounts() {
    std::vector<Mount> out;
    std::ifstream in("/proc/mounts");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string dev, dir, type, opts;
        if (!(ls >> dev >> dir >> type >> opts)) continue;
        Mount m{unescape(dir), type, false};
        std::istringstream os(opts);
        std::string o;
        while (std::getline(os, o, ','))
            if (o == "ro") m.ro = true;
        out.push_back(std::move(m));
    }
    return out;
}

bool under(const std::string& path, const std::string& mount_dir) {
    if (mount_dir == "/") return true;
    return path.compare(0, mount_dir.size(), mount_dir) == 0 &&
           (path.size() == mount_dir.size() || path[mount_dir.size()] == '/');
}

// The mount a directory lives on: the longest mount point above it, the
// last one listed when several are stacked on the same point.
const Mount* mount_of(const std::vector<Mount>& mounts, const std::string& dir) {
    char* real = ::realpath(dir.c_str(), nullptr);
    if (!real) return nullptr;
    const std::string path(real);
    std::free(real);
    const Mount* best = nullptr;
    for (const Mount& m : mounts)
        if (under(path, m.dir) && (!best || m.dir.size() >= best->dir.size())) best = &m;
    return best;
}

bool writable_dir(const std::string& dir) {
    struct stat st {};
    return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && ::access(dir.c_str(), W_OK | X_OK) == 0;
}

// `given`: the user's --fs TYPE=DIR, taken as is (they win over discovery).
std::map<std::string, std::string> find_fs_dirs(const std::map<std::string, std::string>& given,
                                                std::vector<std::string>* notes) {
    static const char* kTypes[] = {"ext4", "xfs", "btrfs", "tmpfs", "hugetlbfs"};
    const std::vector<Mount> mounts = read_mounts();
    std::vector<std::string> preferred;
    if (const char* t = std::getenv("TMPDIR"); t && *t) preferred.emplace_back(t);
    preferred.emplace_back("/tmp");
    preferred.emplace_back("/var/tmp");
    std::map<std::string, std::string> out = given;
    for (const char* type : kTypes) {
        if (out.count(type)) continue;
        std::vector<std::string> candidates;
        if (std::string(type) == "tmpfs") candidates.emplace_back("/dev/shm");
        else if (std::string(type) != "hugetlbfs") candidates = preferred;
        // Then every mount point of that type, in /proc/mounts order.
        for (const Mount& m : mounts)
            if (m.type == type) candidates.push_back(m.dir);
        for (const std::string& c : candidates) {
            const Mount* m = mount_of(mounts, c);
            if (!m || m->type != type || m->ro || !writable_dir(c)) continue;
            out[type] = c;
            break;
        }
        if (!out.count(type)) notes->push_back(std::string("no writable ") + type + " mount (--fs " + type + "=DIR)");
    }
    return out;
}

// ---- the probes ----------------------------------------------------------

// pagemap shows PFNs only to CAP_SYS_ADMIN (fs/proc/task_mmu.c pagemap_read()).
bool pfns_readable() {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    static_cast<volatile char*>(p)[0] = 1;
    bool ok = false;
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        uint64_t e = 0;
        const off_t off = static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / 4096 * sizeof e);
        if (::pread(fd, &e, sizeof e, off) == static_cast<ssize_t>(sizeof e))
            ok = (e >> 63) && (e & ((uint64_t{1} << 55) - 1)) != 0;
        ::close(fd);
    }
    ::munmap(p, 4096);
    return ok;
}

// A pool can serve a scenario if it has free pages or root may grow it. The
// file is not written here: only whether it could be.
bool pool_usable(unsigned long kb, std::vector<std::string>* notes) {
    const std::string nr = pool_file(kb, "nr_hugepages");
    const std::string name = std::to_string(kb) + " kB hugetlb pool";
    unsigned long n = 0, free_pages = 0;
    if (!read_ulong(nr, &n)) {
        notes->push_back("no " + name + " (" + nr + ")");
        return false;
    }
    read_ulong(pool_file(kb, "free_hugepages"), &free_pages);
    if (free_pages > 0 || ::access(nr.c_str(), W_OK) == 0) return true;
    notes->push_back(name + ": no free pages and " + nr + " is not writable (not root?)");
    return false;
}

}  // namespace

// Whether this kernel tracks soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): a page
// written after `echo 4 > /proc/self/clear_refs` shows PM_SOFT_DIRTY (bit 55)
// in pagemap. Without the option clearing is a no-op and the bit stays 0.
// (Clears this process's soft-dirty bits: nothing reads them.)
static bool soft_dirty_tracked() {
    const long page = ::sysconf(_SC_PAGESIZE);
    void* p = ::mmap(nullptr, static_cast<size_t>(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    bool tracked = false;
    static_cast<volatile char*>(p)[0] = 1;
    int fd = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        const bool cleared = ::write(fd, "4", 1) == 1;
        ::close(fd);
        static_cast<volatile char*>(p)[0] = 2;  // the write fault sets the bit again
        uint64_t entry = 0;
        int pm = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (cleared && pm >= 0 &&
            ::pread(pm, &entry, sizeof entry,
                    static_cast<off_t>(reinterpret_cast<uintptr_t>(p) / static_cast<uintptr_t>(page) * sizeof entry)) ==
                sizeof entry)
            tracked = (entry >> 55) & 1;
        if (pm >= 0) ::close(pm);
    }
    ::munmap(p, static_cast<size_t>(page));
    return tracked;
}

HostCaps discover_caps(const std::map<std::string, std::string>& fs_dirs) {
    HostCaps c;
    utsname u{};
    if (::uname(&u) == 0) c.kernel = u.release;

    c.root = ::geteuid() == 0 && pfns_readable();
    if (!c.root)
        c.notes.push_back(::geteuid() == 0 ? "root, but /proc/self/pagemap shows no PFNs"
                                           : "not root: no PFNs, kpageflags or sysfs knobs");

    const int64_t ring = doors::io_uring_setup(1);
    c.io_uring = ring > 0;
    if (c.io_uring)
        (void)doors::io_uring_exit(ring);
    else
        c.notes.push_back(std::string("io_uring unavailable: ") + std::strerror(static_cast<int>(-ring)) +
                          (ring == -EOPNOTSUPP ? " (pinlab built without liburing)" : ""));

    struct stat st {};
    c.thp = ::stat(kThpDir, &st) == 0 && S_ISDIR(st.st_mode);
    if (!c.thp) c.notes.push_back(std::string("no transparent hugepages (") + kThpDir + ")");

    c.hugetlb_2m = pool_usable(2048, &c.notes);
    c.hugetlb_1g = pool_usable(1048576, &c.notes);

    c.fs_dirs = find_fs_dirs(fs_dirs, &c.notes);

    c.soft_dirty = soft_dirty_tracked();
    if (!c.soft_dirty) c.notes.push_back("no soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY): clear_refs 4 is a no-op");

    for (const char* kind : {"pfnmap", "mixedmap"}) {
        std::string why;
        std::string what = doors::device_probe(kind, &why);
        if (what.empty())
            c.notes.push_back(std::string("no host ") + kind + " device: " + why);
        else
            c.devices[kind] = std::move(what);
    }
    return c;
}

// ---- KnobSet -------------------------------------------------------------------

KnobSet::KnobSet() = default;

KnobSet::~KnobSet() { restore(); }

Result<bool> KnobSet::apply(const HostKnobs& k, std::string* why) {
    auto refuse = [&](std::string w) -> Result<bool> {
        if (why) *why = std::move(w);
        return false;
    };
    // Validate everything before writing anything.
    if (k.thp && *k.thp != "always" && *k.thp != "madvise" && *k.thp != "never") return Error(EINVAL);

    // Write want unless the file already says so; the first value of each
    // file is saved (and published for the signal handler) before any write.
    auto set_file = [&](const std::string& path, const std::string& current, const std::string& want) -> int {
        if (current == want) return 0;
        bool known = false;
        for (const Saved& s : saved_) known = known || s.path == path;
        if (!known) {
            saved_.push_back({path, current});
            publish(this, path, current);
        }
        return write_file(path, want);
    };

    if (k.thp) {
        std::string raw;
        if (!read_file(kThpEnabled, &raw)) return refuse(std::string("no THP here (") + kThpEnabled + ")");
        if (int e = set_file(kThpEnabled, bracketed(raw), *k.thp))
            return refuse(std::string("cannot set THP to ") + *k.thp + ": " + kThpEnabled + ": " + std::strerror(e));
    }
    if (k.thp_use_zero_page) {
        std::string cur;
        if (!read_file(kThpZeroPage, &cur)) return refuse(std::string("no ") + kThpZeroPage);
        const std::string want = *k.thp_use_zero_page ? "1" : "0";
        if (int e = set_file(kThpZeroPage, cur, want))
            return refuse(std::string("cannot set use_zero_page: ") + kThpZeroPage + ": " + std::strerror(e));
    }
    // Grow a pool until it has `wanted` free pages; never shrink it (what is
    // there may be someone else's), restore() puts the original count back.
    auto grow = [&](unsigned long kb, unsigned long wanted) -> Result<bool> {
        const std::string nr_path = pool_file(kb, "nr_hugepages");
        const std::string free_path = pool_file(kb, "free_hugepages");
        unsigned long nr = 0, free_pages = 0;
        if (!read_ulong(nr_path, &nr) || !read_ulong(free_path, &free_pages))
            return refuse("no " + std::to_string(kb) + " kB hugetlb pool");
        // Growing a pool takes the memory at once: refuse a request that
        // would take more than half of what the machine has available, rather
        // than squeeze everything else on it.
        const unsigned long avail_kb = mem_available_kb();
        if (free_pages < wanted && avail_kb > 0 && (wanted - free_pages) > avail_kb / 2 / kb)
            return refuse("the " + std::to_string(kb) + " kB hugetlb pool would need " +
                          std::to_string((wanted - free_pages) * kb / 1024) + " MiB more, and only " +
                          std::to_string(avail_kb / 1024) + " MiB is available");
        // Two tries: pages freed or taken by others between the reads.
        for (int attempt = 0; attempt < 2 && free_pages < wanted; ++attempt) {
            const unsigned long target = nr + (wanted - free_pages);
            if (int e = set_file(nr_path, std::to_string(nr), std::to_string(target)))
                return refuse("cannot grow the " + std::to_string(kb) + " kB hugetlb pool: " + nr_path + ": " +
                              std::strerror(e));
            if (!read_ulong(nr_path, &nr) || !read_ulong(free_path, &free_pages)) break;
        }
        if (free_pages < wanted)
            return refuse("could reserve only " + std::to_string(free_pages) + " of " + std::to_string(wanted) + " " +
                          std::to_string(kb) + " kB huge pages");
        return true;
    };
    if (k.hugetlb_2m && *k.hugetlb_2m > 0) {
        auto r = grow(2048, *k.hugetlb_2m);
        if (!r.ok() || !*r) return r;
    }
    if (k.hugetlb_1g && *k.hugetlb_1g > 0) {
        auto r = grow(1048576, *k.hugetlb_1g);
        if (!r.ok() || !*r) return r;
    }
    return true;
}

void KnobSet::restore() {
    // Newest first: the pools shrink back before THP changes mode again.
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) (void)write_file(it->path, it->value);
    saved_.clear();
    unpublish(this);
}

}  // namespace pl::oracle
