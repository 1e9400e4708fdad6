// What the host offers (discover_caps) and the host knobs (KnobSet), on the
// machine the tests run on. Knob tests need root and put every file back
// exactly as it was; they skip with the reason elsewhere.
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "oracle/host_doors.h"
#include "oracle/host_knobs.h"

namespace pl::oracle {
namespace {

constexpr const char* kEnabled = "/sys/kernel/mm/transparent_hugepage/enabled";
constexpr const char* kZeroPage = "/sys/kernel/mm/transparent_hugepage/use_zero_page";
constexpr const char* kNr2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
constexpr const char* kFree2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

// The raw bytes of a file (sysfs: the whole value), or "" with ok=false.
std::string raw(const std::string& path, bool* ok = nullptr) {
    std::ifstream in(path);
    if (ok) *ok = static_cast<bool>(in);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

unsigned long number(const std::string& path) { return std::strtoul(raw(path).c_str(), nullptr, 10); }

bool is_root() { return ::geteuid() == 0; }

bool file_exists(const char* p) {
    struct stat st {};
    return ::stat(p, &st) == 0;
}

long fs_magic(const std::string& dir) {
    struct statfs s {};
    return ::statfs(dir.c_str(), &s) == 0 ? static_cast<long>(s.f_type) : -1;
}

bool mounted(const std::string& type, bool writable) {
    std::ifstream in("/proc/mounts");
    std::string dev, dir, t, opts, rest;
    while (in >> dev >> dir >> t >> opts) {
        std::getline(in, rest);
        if (t != type) continue;
        if (!writable || ("," + opts + ",").find(",ro,") == std::string::npos) return true;
    }
    return false;
}

bool has_note(const HostCaps& c, const std::string& word) {
    for (const std::string& n : c.notes)
        if (n.find(word) != std::string::npos) return true;
    return false;
}

// ---- discover_caps ---------------------------------------------------------------

TEST(HostKnobsTest, DiscoverCapsDescribesThisHost) {
    const HostCaps c = discover_caps({});
    utsname u{};
    ASSERT_EQ(::uname(&u), 0);
    EXPECT_EQ(c.kernel, u.release);
    // root: euid 0 and pagemap PFNs; a non-root run never claims it.
    if (!is_root()) {
        EXPECT_FALSE(c.root);
    }
    if (!c.root) {
        EXPECT_TRUE(has_note(c, "root") || has_note(c, "PFN"));
    }
    // io_uring: exactly whether a ring can be made here.
    const int64_t ring = doors::io_uring_setup(1);
    EXPECT_EQ(c.io_uring, ring > 0);
    if (ring > 0) doors::io_uring_exit(ring);
    if (!c.io_uring) {
        EXPECT_TRUE(has_note(c, "io_uring"));
    }
    EXPECT_EQ(c.thp, file_exists("/sys/kernel/mm/transparent_hugepage"));
    // hugetlb: the pool exists and root may grow it.
    if (is_root()) {
        EXPECT_EQ(c.hugetlb_2m, file_exists(kNr2M));
    }
    for (const auto& [kind, what] : c.devices) {
        EXPECT_TRUE(kind == "pfnmap" || kind == "mixedmap") << kind;
        EXPECT_NE(what.find("VmFlags"), std::string::npos) << what;
    }
    for (const char* kind : {"pfnmap", "mixedmap"}) {
        if (!c.devices.count(kind)) {
            EXPECT_TRUE(has_note(c, kind)) << kind;
        }
    }
}

// One writable directory per file system type, checked against statfs();
// types not mounted writable here are absent, with a note.
TEST(HostKnobsTest, DiscoverCapsFindsFileSystemDirectories) {
    const HostCaps c = discover_caps({});
    const std::pair<const char*, long> types[] = {{"ext4", EXT4_SUPER_MAGIC},
                                                  {"xfs", 0x58465342 /* XFS_SUPER_MAGIC */},
                                                  {"btrfs", BTRFS_SUPER_MAGIC},
                                                  {"tmpfs", TMPFS_MAGIC},
                                                  {"hugetlbfs", HUGETLBFS_MAGIC}};
    for (const auto& [type, magic] : types) {
        auto it = c.fs_dirs.find(type);
        if (it == c.fs_dirs.end()) {
            EXPECT_TRUE(has_note(c, type)) << type;
            continue;
        }
        EXPECT_EQ(fs_magic(it->second), magic) << type << " -> " << it->second;
        EXPECT_EQ(::access(it->second.c_str(), W_OK), 0) << it->second;
    }
    if (mounted("ext4", true)) {
        ASSERT_TRUE(c.fs_dirs.count("ext4")) << "ext4 is mounted read-write here";
        // Disk file systems prefer $TMPDIR, /tmp, /var/tmp when they are of that type.
        if (fs_magic("/tmp") == EXT4_SUPER_MAGIC && !std::getenv("TMPDIR")) {
            EXPECT_EQ(c.fs_dirs.at("ext4"), "/tmp");
        }
    }
    if (fs_magic("/dev/shm") == TMPFS_MAGIC && ::access("/dev/shm", W_OK) == 0) {
        ASSERT_TRUE(c.fs_dirs.count("tmpfs"));
        EXPECT_EQ(c.fs_dirs.at("tmpfs"), "/dev/shm");
    }
}

TEST(HostKnobsTest, UserGivenDirectoriesWin) {
    const HostCaps c = discover_caps({{"xfs", "/mnt/my-xfs"}, {"tmpfs", "/run/mine"}});
    EXPECT_EQ(c.fs_dirs.at("xfs"), "/mnt/my-xfs");
    EXPECT_EQ(c.fs_dirs.at("tmpfs"), "/run/mine");
    EXPECT_FALSE(has_note(c, "no writable xfs")) << "xfs was given";
}

// ---- KnobSet ----------------------------------------------------------------------

std::string current_zero_page() {
    std::string v = raw(kZeroPage);
    while (!v.empty() && v.back() == '\n') v.pop_back();
    return v;
}

TEST(HostKnobsTest, UseZeroPageRoundTripLeavesTheFileAsItWas) {
    if (!is_root()) GTEST_SKIP() << "needs root to write " << kZeroPage;
    bool ok = false;
    const std::string before = raw(kZeroPage, &ok);
    if (!ok) GTEST_SKIP() << "no " << kZeroPage;
    const bool was_on = current_zero_page() == "1";
    {
        KnobSet ks;
        HostKnobs k;
        k.thp_use_zero_page = !was_on;
        std::string why;
        auto r = ks.apply(k, &why);
        ASSERT_TRUE(r.ok());
        ASSERT_TRUE(*r) << why;
        EXPECT_EQ(current_zero_page(), was_on ? "0" : "1");
        // Applying again saves nothing new: restore still goes back to the first value.
        k.thp_use_zero_page = was_on;
        ASSERT_TRUE(*ks.apply(k, &why));
        k.thp_use_zero_page = !was_on;
        ASSERT_TRUE(*ks.apply(k, &why));
        ks.restore();
        EXPECT_EQ(raw(kZeroPage), before);
        ks.restore();  // idempotent
        EXPECT_EQ(raw(kZeroPage), before);
        // And the destructor restores too.
        ASSERT_TRUE(*ks.apply(k, &why));
        EXPECT_NE(raw(kZeroPage), before);
    }
    EXPECT_EQ(raw(kZeroPage), before);
}

// "always [madvise] never": the bracketed word is the mode. Asking for the
// mode already set writes nothing and saves nothing.
TEST(HostKnobsTest, ThpModeAlreadySetIsNotWritten) {
    bool ok = false;
    const std::string before = raw(kEnabled, &ok);
    if (!ok) GTEST_SKIP() << "no " << kEnabled;
    const auto b = before.find('['), e = before.find(']');
    ASSERT_NE(b, std::string::npos);
    ASSERT_NE(e, std::string::npos);
    KnobSet ks;
    HostKnobs k;
    k.thp = before.substr(b + 1, e - b - 1);
    std::string why;
    auto r = ks.apply(k, &why);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(*r) << why;  // no write, so no permission needed either
    ks.restore();
    EXPECT_EQ(raw(kEnabled), before);
}

TEST(HostKnobsTest, BadThpModeIsEinvalAndWritesNothing) {
    const std::string before = raw(kEnabled);
    KnobSet ks;
    HostKnobs k;
    k.thp = "sometimes";
    std::string why;
    auto r = ks.apply(k, &why);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Error(EINVAL));
    EXPECT_EQ(raw(kEnabled), before);
}

// Grow the 2 MiB pool until it has the free pages wanted, then put the
// original nr_hugepages back (hugetlb.c set_max_huge_pages()).
TEST(HostKnobsTest, HugetlbPoolGrowsAndRestoreLeavesItAsItWas) {
    if (!is_root()) GTEST_SKIP() << "needs root to write " << kNr2M;
    bool ok = false;
    const std::string before = raw(kNr2M, &ok);
    if (!ok) GTEST_SKIP() << "no 2 MiB hugetlb pool";
    const unsigned long wanted = number(kFree2M) + 2;
    {
        KnobSet ks;
        HostKnobs k;
        k.hugetlb_2m = wanted;
        std::string why;
        auto r = ks.apply(k, &why);
        ASSERT_TRUE(r.ok());
        if (!*r) {
            ks.restore();
            EXPECT_EQ(raw(kNr2M), before);
            EXPECT_NE(why.find("could reserve only"), std::string::npos) << why;
            GTEST_SKIP() << why;
        }
        EXPECT_GE(number(kFree2M), wanted);
        EXPECT_GE(number(kNr2M), std::strtoul(before.c_str(), nullptr, 10));
        // Asking for fewer never shrinks the pool.
        const unsigned long grown = number(kNr2M);
        k.hugetlb_2m = 1;
        ASSERT_TRUE(*ks.apply(k, &why));
        EXPECT_EQ(number(kNr2M), grown);
        ks.restore();
        EXPECT_EQ(raw(kNr2M), before);
    }
    EXPECT_EQ(raw(kNr2M), before);
}

// A pool request larger than half of MemAvailable is refused before any
// write: growing a pool takes the memory at once.
TEST(HostKnobsTest, AnOversizedPoolRequestIsRefusedWithoutWriting) {
    bool ok = false;
    const std::string before = raw(kNr2M, &ok);
    if (!ok) GTEST_SKIP() << "no 2 MiB hugetlb pool";
    KnobSet ks;
    HostKnobs k;
    k.hugetlb_2m = 1UL << 40;  // 2 EiB
    std::string why;
    auto r = ks.apply(k, &why);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(*r);
    EXPECT_NE(why.find("available"), std::string::npos) << why;
    EXPECT_EQ(raw(kNr2M), before);
}

// Without the right to write sysfs, apply() says which knob and why.
TEST(HostKnobsTest, UnprivilegedApplyIsRefusedWithAReason) {
    bool ok = false;
    const std::string before = raw(kZeroPage, &ok);
    if (!ok) GTEST_SKIP() << "no " << kZeroPage;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        if (is_root() && ::setresuid(65534, 65534, 65534) != 0) ::_exit(10);
        KnobSet ks;
        HostKnobs k;
        k.thp_use_zero_page = current_zero_page() != "1";
        std::string why;
        auto r = ks.apply(k, &why);
        if (!r.ok()) ::_exit(11);
        if (*r) ::_exit(12);
        ::_exit(why.find("use_zero_page") != std::string::npos && why.find(std::strerror(EACCES)) != std::string::npos
                    ? 0
                    : 13);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10 setresuid, 11 error, 12 applied, 13 reason";
    EXPECT_EQ(raw(kZeroPage), before);
}

// SIGTERM (likewise SIGINT, SIGHUP) while knobs are applied: the handler
// writes the saved values back, then the signal's default action ends the
// process, so the parent sees death by SIGTERM and the file as it was.
TEST(HostKnobsTest, SigtermRestoresTheKnobsAndStillKills) {
    if (!is_root()) GTEST_SKIP() << "needs root to write " << kZeroPage;
    bool ok = false;
    const std::string before = raw(kZeroPage, &ok);
    if (!ok) GTEST_SKIP() << "no " << kZeroPage;
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(fds[0]);
        ::signal(SIGTERM, SIG_DFL);
        KnobSet ks;
        HostKnobs k;
        k.thp_use_zero_page = current_zero_page() != "1";
        std::string why;
        auto r = ks.apply(k, &why);
        const char c = r.ok() && *r ? 'y' : 'n';
        if (::write(fds[1], &c, 1) != 1) ::_exit(10);
        ::pause();  // the parent's SIGTERM ends this
        ::_exit(11);
    }
    ::close(fds[1]);
    char c = 0;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    ::close(fds[0]);
    ASSERT_EQ(c, 'y');
    EXPECT_NE(raw(kZeroPage), before);  // applied in the child
    ASSERT_EQ(::kill(child, SIGTERM), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGTERM);
    EXPECT_EQ(raw(kZeroPage), before);
}

// A child forked after apply() inherits the handler, but the knobs are the
// parent's: the child's death must not put them back under the parent.
TEST(HostKnobsTest, AForkedChildsSignalLeavesTheParentsKnobs) {
    if (!is_root()) GTEST_SKIP() << "needs root to write " << kZeroPage;
    bool ok = false;
    const std::string before = raw(kZeroPage, &ok);
    if (!ok) GTEST_SKIP() << "no " << kZeroPage;
    struct sigaction old {};
    ASSERT_EQ(::sigaction(SIGTERM, nullptr, &old), 0);
    KnobSet ks;
    HostKnobs k;
    k.thp_use_zero_page = current_zero_page() != "1";
    std::string why;
    ASSERT_TRUE(*ks.apply(k, &why)) << why;
    struct sigaction during {};
    ASSERT_EQ(::sigaction(SIGTERM, nullptr, &during), 0);
    EXPECT_NE(during.sa_handler, old.sa_handler);  // the restoring handler is in place
    const std::string applied = raw(kZeroPage);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::raise(SIGTERM);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    EXPECT_EQ(raw(kZeroPage), applied);
    ks.restore();
    EXPECT_EQ(raw(kZeroPage), before);
    // Once nothing is saved, the handler is gone: SIGTERM's disposition is back.
    struct sigaction sa {};
    ASSERT_EQ(::sigaction(SIGTERM, nullptr, &sa), 0);
    EXPECT_EQ(sa.sa_handler, old.sa_handler);
}

}  // namespace
}  // namespace pl::oracle
