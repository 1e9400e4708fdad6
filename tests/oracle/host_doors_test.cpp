// The host's pinning doors (src/oracle/host_doors.cpp), run in this test
// process itself: every door acts on the calling process. Each test asserts
// what the host kernel does, with the upstream function that decides it;
// a door the host lacks is a skip with the reason.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "oracle/host_doors.h"

namespace pl::oracle::doors {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t addr_of(const void* p) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)); }
char* ptr(uint64_t a) { return reinterpret_cast<char*>(a); }

bool has_flag(const std::string& vmflags, const std::string& flag) {
    std::istringstream in(vmflags);
    std::string f;
    while (in >> f)
        if (f == flag) return true;
    return false;
}

// An anonymous private mapping, unmapped at scope exit.
struct Anon {
    char* p = nullptr;
    size_t len = 0;
    explicit Anon(size_t n) : len(n) {
        void* m = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p = m == MAP_FAILED ? nullptr : static_cast<char*>(m);
    }
    ~Anon() {
        if (p) ::munmap(p, len);
    }
    Anon(const Anon&) = delete;
    Anon& operator=(const Anon&) = delete;
    uint64_t addr() const { return addr_of(p); }
};

// A mapping made by device_mmap(), unmapped at scope exit.
struct Device {
    int64_t ret;
    uint64_t len;
    Device(const std::string& kind, uint64_t n, int prot = PROT_READ | PROT_WRITE)
        : ret(device_mmap(kind, 0, n, prot, MAP_SHARED, 0)), len(n) {}
    ~Device() {
        if (ret > 0) ::munmap(ptr(static_cast<uint64_t>(ret)), len);
    }
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;
    uint64_t addr() const { return static_cast<uint64_t>(ret); }
};

// An unnamed file with `bytes` written and synced, on a disk file system
// ($TMPDIR, else /tmp), so O_DIRECT reads reach the block device.
int disk_tmpfile(const std::string& bytes, std::string* skip) {
    const char* t = std::getenv("TMPDIR");
    const std::string dir = t && *t ? t : "/tmp";
    const int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        *skip = "O_TMPFILE in " + dir + ": " + std::strerror(errno);
        return -1;
    }
    struct statfs sfs {};
    if (::fstatfs(fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC) {
        ::close(fd);
        *skip = dir + " is tmpfs, whose O_DIRECT copies without pinning: set TMPDIR to a disk file system";
        return -1;
    }
    if (::pwrite(fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()) || ::fsync(fd) != 0) {
        ::close(fd);
        *skip = "writing the test file failed";
        return -1;
    }
    return fd;
}

std::string pread_all(int fd, size_t len, off_t off = 0) {
    std::string s(len, '\0');
    const ssize_t n = ::pread(fd, s.data(), len, off);
    s.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return s;
}

std::string pattern(size_t n, char seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i % 23));
    return s;
}

// A ring, or a skip reason when the host (or this build) has no io_uring.
int64_t ring_or_skip(std::string* skip) {
    const int64_t r = io_uring_setup(8);
    if (r < 0) *skip = std::string("no io_uring here: ") + std::strerror(static_cast<int>(-r));
    return r;
}

// ---- io_uring ----------------------------------------------------------------

// io_uring/rsrc.c io_sqe_buffer_register() pins the iovec (FOLL_WRITE |
// FOLL_LONGTERM); io_uring/rw.c WRITE_FIXED/READ_FIXED move bytes between
// the file and the pinned pages.
TEST(HostDoorsTest, IoUringWriteFixedAndReadFixedGoThroughTheRegisteredBuffer) {
    std::string skip;
    const int64_t ring = ring_or_skip(&skip);
    if (ring < 0) GTEST_SKIP() << skip;
    const std::string data = pattern(2 * kPage, 'a');
    const int fd = disk_tmpfile(std::string(2 * kPage, '\0'), &skip);
    if (fd < 0) {
        io_uring_exit(ring);
        GTEST_SKIP() << skip;
    }
    Anon buf(2 * kPage);
    ASSERT_NE(buf.p, nullptr);
    std::memcpy(buf.p, data.data(), data.size());

    ASSERT_EQ(io_uring_register_buffers(ring, {{buf.addr(), 2 * kPage}}), 0);
    // buffer -> file: the file now holds the buffer's bytes.
    EXPECT_EQ(io_uring_rw_fixed(ring, true, fd, 0, buf.addr(), 2 * kPage, 0), static_cast<int64_t>(2 * kPage));
    EXPECT_EQ(pread_all(fd, 2 * kPage), data);
    // file -> buffer, into the second page only.
    ASSERT_EQ(::pwrite(fd, "fixed!", 6, 0), 6);
    EXPECT_EQ(io_uring_rw_fixed(ring, false, fd, 0, buf.addr() + kPage, 6, 0), 6);
    EXPECT_EQ(std::string(buf.p + kPage, 6), "fixed!");
    EXPECT_EQ(std::string(buf.p, 6), data.substr(0, 6));
    // io_import_fixed(): a range outside the registered buffer is -EFAULT.
    EXPECT_EQ(io_uring_rw_fixed(ring, false, fd, 0, buf.addr() + kPage, 2 * kPage, 0), -EFAULT);

    EXPECT_EQ(io_uring_unregister_buffers(ring), 0);
    // io_sqe_buffers_unregister(): nothing registered is -ENXIO.
    EXPECT_EQ(io_uring_unregister_buffers(ring), -ENXIO);
    EXPECT_EQ(io_uring_exit(ring), 0);
    EXPECT_EQ(io_uring_exit(ring), -EBADF);  // the handle is gone
    EXPECT_EQ(io_uring_register_buffers(ring, {{buf.addr(), kPage}}), -EBADF);
    ::close(fd);
}

// ---- vmsplice ------------------------------------------------------------------

// fs/splice.c vmsplice_to_pipe() → iov_iter_get_pages2(): the pipe holds
// FOLL_GET references to the user's pages, not copies. The page is
// AnonExclusive, so the later store reuses it (no COW: do_wp_page()'s
// reuse path), and the reader sees the bytes written after the splice.
TEST(HostDoorsTest, VmspliceHoldsThePageAndTheReaderSeesLaterWrites) {
    Anon a(kPage);
    ASSERT_NE(a.p, nullptr);
    std::memcpy(a.p, "before", 6);
    const int64_t pipe = pipe_new();
    ASSERT_GT(pipe, 0);
    EXPECT_EQ(vmsplice(pipe, a.addr(), 6), 6);
    std::memcpy(a.p, "AFTER!", 6);
    std::string out;
    EXPECT_EQ(pipe_read(pipe, 64, &out), 6);
    EXPECT_EQ(out, "AFTER!");
    // The read end is O_NONBLOCK and the write end stays open: empty is -EAGAIN.
    EXPECT_EQ(pipe_read(pipe, 64, &out), -EAGAIN);

    // The reference outlives the mapping: munmap does not take the bytes away.
    Anon b(kPage);
    std::memcpy(b.p, "kept", 4);
    EXPECT_EQ(vmsplice(pipe, b.addr(), 4), 4);
    ::munmap(b.p, kPage);
    b.p = nullptr;
    EXPECT_EQ(pipe_read(pipe, 64, &out), 4);
    EXPECT_EQ(out, "kept");
    EXPECT_EQ(pipe_close(pipe), 0);
    EXPECT_EQ(pipe_close(pipe), -EBADF);
}

// GUP without FOLL_WRITE on a never-touched anonymous page maps the shared
// zero page (mm/gup.c follow_page_pte()/faultin_page() read fault); the
// later store faults in a fresh page, so the pipe still holds zeros.
TEST(HostDoorsTest, VmspliceOfAnUntouchedPageKeepsTheZeroPage) {
    Anon a(kPage);
    ASSERT_NE(a.p, nullptr);
    const int64_t pipe = pipe_new();
    ASSERT_GT(pipe, 0);
    EXPECT_EQ(vmsplice(pipe, a.addr(), 4), 4);
    std::memcpy(a.p, "zzzz", 4);
    std::string out;
    EXPECT_EQ(pipe_read(pipe, 4, &out), 4);
    EXPECT_EQ(out, std::string(4, '\0'));
    pipe_close(pipe);
}

// wait_for_space() with SPLICE_F_NONBLOCK: a full pipe (PIPE_DEF_BUFFERS
// pages, one page per buffer) splices what fits, then -EAGAIN.
TEST(HostDoorsTest, VmspliceIntoAFullPipeIsEagain) {
    constexpr uint64_t kBuffers = 16;  // PIPE_DEF_BUFFERS
    Anon a((kBuffers + 1) * kPage);
    ASSERT_NE(a.p, nullptr);
    std::memset(a.p, 'x', a.len);
    const int64_t pipe = pipe_new();
    ASSERT_GT(pipe, 0);
    EXPECT_EQ(vmsplice(pipe, a.addr(), a.len), static_cast<int64_t>(kBuffers * kPage));
    EXPECT_EQ(vmsplice(pipe, a.addr(), kPage), -EAGAIN);
    pipe_close(pipe);
}

TEST(HostDoorsTest, UnknownHandlesAreEbadf) {
    std::string out;
    EXPECT_EQ(vmsplice(123456, 0, 1), -EBADF);
    EXPECT_EQ(pipe_read(123456, 1, &out), -EBADF);
    EXPECT_EQ(pipe_close(123456), -EBADF);
    if (io_uring_setup(1) == -EOPNOTSUPP) GTEST_SKIP() << "built without liburing";
    EXPECT_EQ(io_uring_unregister_buffers(123456), -EBADF);
    EXPECT_EQ(io_uring_rw_fixed(123456, false, 0, 0, 0, 1, 0), -EBADF);
}

// ---- process_vm_readv/writev ---------------------------------------------------

// mm/process_vm_access.c process_vm_rw_core(): pin_user_pages_remote() on the
// target, here this very process.
TEST(HostDoorsTest, ProcessVmReadvAndWritevOfOwnMemory) {
    Anon src(kPage), dst(kPage);
    ASSERT_NE(src.p, nullptr);
    ASSERT_NE(dst.p, nullptr);
    std::memcpy(src.p, "remote", 6);
    EXPECT_EQ(process_vm_rw(false, ::getpid(), dst.addr(), src.addr(), 6), 6);
    EXPECT_EQ(std::string(dst.p, 6), "remote");
    std::memcpy(dst.p, "local!", 6);
    EXPECT_EQ(process_vm_rw(true, ::getpid(), dst.addr(), src.addr() + 100, 6), 6);
    EXPECT_EQ(std::string(src.p + 100, 6), "local!");
    // An unmapped remote range: nothing pinned, nothing copied, -EFAULT.
    Anon gone(kPage);
    const uint64_t hole = gone.addr();
    ::munmap(gone.p, kPage);
    gone.p = nullptr;
    EXPECT_EQ(process_vm_rw(false, ::getpid(), dst.addr(), hole, 6), -EFAULT);
}

// ---- O_DIRECT ------------------------------------------------------------------

// iomap_dio_rw() → bio_iov_iter_get_pages() → iov_iter_extract_pages():
// pin_user_pages_fast() on the buffer, unpinned at completion.
TEST(HostDoorsTest, DirectReadIntoAnAlignedBufferAndDirectWriteFromIt) {
    const std::string data = pattern(kPage, 'A');
    std::string skip;
    const int fd = disk_tmpfile(data, &skip);
    if (fd < 0) GTEST_SKIP() << skip;
    Anon buf(2 * kPage);
    ASSERT_NE(buf.p, nullptr);
    const int64_t r = direct_rw(false, fd, buf.addr(), kPage, 0);
    if (r == -EINVAL) {
        ::close(fd);
        GTEST_SKIP() << "this file system refuses O_DIRECT";
    }
    EXPECT_EQ(r, static_cast<int64_t>(kPage));
    EXPECT_EQ(std::string(buf.p, kPage), data);
    // Direct I/O wants the buffer aligned to the logical block size
    // (iomap_dio_bio_iter(): misaligned is -EINVAL).
    EXPECT_EQ(direct_rw(false, fd, buf.addr() + 1, kPage, 0), -EINVAL);
    // memory -> file at a block-aligned offset.
    std::memset(buf.p + kPage, 'w', kPage);
    EXPECT_EQ(direct_rw(true, fd, buf.addr() + kPage, kPage, static_cast<uint64_t>(kPage)),
              static_cast<int64_t>(kPage));
    EXPECT_EQ(pread_all(fd, kPage, static_cast<off_t>(kPage)), std::string(kPage, 'w'));
    // The fd itself was never made O_DIRECT: reopen_direct() opened anew.
    EXPECT_EQ(::fcntl(fd, F_GETFL) & O_DIRECT, 0);
    EXPECT_EQ(direct_rw(false, -1, buf.addr(), kPage, 0), -EBADF);
    ::close(fd);
}

// ---- vm_flags_of -----------------------------------------------------------------

TEST(HostDoorsTest, VmFlagsOfAnAnonymousMapping) {
    Anon a(kPage);
    ASSERT_NE(a.p, nullptr);
    const std::string f = vm_flags_of(a.addr() + 10);
    EXPECT_TRUE(has_flag(f, "rd")) << f;
    EXPECT_TRUE(has_flag(f, "wr")) << f;
    EXPECT_FALSE(has_flag(f, "sh")) << f;
    EXPECT_FALSE(has_flag(f, "pf")) << f;
    ASSERT_EQ(::mprotect(a.p, kPage, PROT_READ), 0);
    EXPECT_FALSE(has_flag(vm_flags_of(a.addr()), "wr"));
    const uint64_t hole = a.addr();
    ::munmap(a.p, kPage);
    a.p = nullptr;
    EXPECT_EQ(vm_flags_of(hole), "");
}

// ---- devices -------------------------------------------------------------------

// Every GUP door on one device page: O_DIRECT read into it and write from
// it, io_uring registration, vmsplice, process_vm_readv/writev. Returns the
// results in that order (io_uring: 1 when the host has none).
struct DoorResults {
    int64_t direct_read, direct_write, io_uring_register, vmsplice, pvm_read, pvm_write;
};

DoorResults try_every_door(uint64_t addr, int fd) {
    DoorResults r{};
    r.direct_read = direct_rw(false, fd, addr, kPage, 0);
    r.direct_write = direct_rw(true, fd, addr, kPage, 0);
    const int64_t ring = io_uring_setup(4);
    r.io_uring_register = 1;
    if (ring > 0) {
        r.io_uring_register = io_uring_register_buffers(ring, {{addr, kPage}});
        if (r.io_uring_register == 0) io_uring_unregister_buffers(ring);
        io_uring_exit(ring);
    }
    const int64_t pipe = pipe_new();
    r.vmsplice = vmsplice(pipe, addr, kPage);
    pipe_close(pipe);
    Anon local(kPage);
    r.pvm_read = process_vm_rw(false, ::getpid(), local.addr(), addr, kPage);
    r.pvm_write = process_vm_rw(true, ::getpid(), local.addr(), addr, kPage);
    return r;
}

// perf_mmap() → map_range() → remap_pfn_range(): VM_PFNMAP|VM_IO, and GUP's
// check_vma_flags() refuses such a VMA with -EFAULT on every door (GUP-fast
// skips the special PTEs and falls back to the slow path, which refuses).
TEST(HostDoorsTest, PfnmapIsAPerfRingThatEveryGupDoorRefuses) {
    std::string why;
    if (device_probe("pfnmap", &why).empty()) GTEST_SKIP() << why;
    Device d("pfnmap", kPage);
    ASSERT_GT(d.ret, 0) << std::strerror(static_cast<int>(-d.ret));
    const std::string f = vm_flags_of(d.addr());
    EXPECT_TRUE(has_flag(f, "pf")) << f;
    EXPECT_TRUE(has_flag(f, "io")) << f;
    EXPECT_TRUE(has_flag(f, "sh")) << f;
    // Bytes 0..7 of the control page (version, compat_version) are the user's.
    std::memcpy(ptr(d.addr()), "mmio", 4);
    EXPECT_EQ(std::string(ptr(d.addr()), 4), "mmio");

    std::string skip;
    const int fd = disk_tmpfile(pattern(kPage, 'p'), &skip);
    if (fd < 0) GTEST_SKIP() << skip;
    const DoorResults r = try_every_door(d.addr(), fd);
    ::close(fd);
    EXPECT_EQ(r.direct_read, -EFAULT);
    EXPECT_EQ(r.direct_write, -EFAULT);
    if (r.io_uring_register != 1) {
        EXPECT_EQ(r.io_uring_register, -EFAULT);
    }
    EXPECT_EQ(r.vmsplice, -EFAULT);
    EXPECT_EQ(r.pvm_read, -EFAULT);
    EXPECT_EQ(r.pvm_write, -EFAULT);
    EXPECT_EQ(std::string(ptr(d.addr()), 4), "mmio");  // the refusals touched nothing
}

// A child that is to die of SIGSEGV/SIGBUS must not have a sanitizer's
// handler turn the signal into an exit status.
void default_fault_signals() {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &sa, nullptr);
    ::sigaction(SIGBUS, &sa, nullptr);
}

// perf_mmap(): the ring is 1 + 2^n pages, MAP_SHARED, offset 0; the data
// pages are mapped read-only and perf_mmap_pfn_mkwrite() answers a store to
// any page but the first with SIGBUS.
TEST(HostDoorsTest, PfnmapFollowsPerfMmapRules) {
    std::string why;
    if (device_probe("pfnmap", &why).empty()) GTEST_SKIP() << why;
    {
        Device three("pfnmap", 3 * kPage);
        EXPECT_GT(three.ret, 0);
    }
    {
        Device four("pfnmap", 4 * kPage);
        EXPECT_EQ(four.ret, -EINVAL);
    }
    EXPECT_EQ(device_mmap("pfnmap", 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0), -EINVAL);
    Device d("pfnmap", 3 * kPage);
    ASSERT_GT(d.ret, 0);
    EXPECT_EQ(ptr(d.addr())[kPage], 0);  // data pages read as zeros: no event ever writes a record
    // VM_DONTCOPY: a fork child has no mapping there at all (SIGSEGV) ...
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        default_fault_signals();
        static_cast<volatile char*>(ptr(d.addr()))[0] = 1;
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGSEGV);
    // ... and a store to a data page of its own ring is SIGBUS.
    child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        default_fault_signals();
        const int64_t a = device_mmap("pfnmap", 0, 3 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
        if (a <= 0) ::_exit(1);
        static_cast<volatile char*>(ptr(static_cast<uint64_t>(a)))[0] = 1;  // page 0 is writable
        static_cast<volatile char*>(ptr(static_cast<uint64_t>(a)))[kPage] = 1;
        ::_exit(0);
    }
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
    EXPECT_EQ(WTERMSIG(status), SIGBUS);
    Anon local(kPage);
    EXPECT_EQ(process_vm_rw(true, ::getpid(), local.addr(), d.addr() + kPage, 1), -EFAULT);
}

// packet_mmap() (AF_PACKET ring) or io_uring_mmap(): vm_insert_page(s)
// make the VMA VM_MIXEDMAP over normal pages; check_vma_flags() lets it
// through and vm_normal_page() finds the pages, so every door succeeds,
// even FOLL_LONGTERM (the ring's pages are ordinary unmovable kernel pages).
TEST(HostDoorsTest, MixedmapPagesAreReachedByEveryGupDoor) {
    std::string why;
    const std::string what = device_probe("mixedmap", &why);
    if (what.empty()) GTEST_SKIP() << why;
    Device d("mixedmap", 2 * kPage);
    ASSERT_GT(d.ret, 0) << std::strerror(static_cast<int>(-d.ret));
    const std::string f = vm_flags_of(d.addr());
    EXPECT_TRUE(has_flag(f, "mm")) << f;
    EXPECT_FALSE(has_flag(f, "pf")) << f;
    EXPECT_EQ(std::string(ptr(d.addr()), 8), std::string(8, '\0'));  // zeroed, and nothing writes into it

    std::string skip;
    const std::string data = pattern(kPage, 'm');
    const int fd = disk_tmpfile(data, &skip);
    if (fd < 0) GTEST_SKIP() << skip;
    const DoorResults r = try_every_door(d.addr(), fd);
    EXPECT_EQ(r.direct_read, static_cast<int64_t>(kPage));
    EXPECT_EQ(r.direct_write, static_cast<int64_t>(kPage));
    if (r.io_uring_register != 1) {
        EXPECT_EQ(r.io_uring_register, 0);
    }
    EXPECT_EQ(r.vmsplice, static_cast<int64_t>(kPage));
    EXPECT_EQ(r.pvm_read, static_cast<int64_t>(kPage));
    EXPECT_EQ(r.pvm_write, static_cast<int64_t>(kPage));

    // The O_DIRECT read landed in the device pages, as the CPU sees them.
    std::memset(ptr(d.addr()), 0, kPage);
    EXPECT_EQ(direct_rw(false, fd, d.addr(), kPage, 0), static_cast<int64_t>(kPage));
    EXPECT_EQ(std::string(ptr(d.addr()), kPage), data);
    // And vmsplice hands the device page itself to the pipe.
    const int64_t pipe = pipe_new();
    EXPECT_EQ(vmsplice(pipe, d.addr() + kPage, 3), 3);
    std::memcpy(ptr(d.addr() + kPage), "dev", 3);
    std::string out;
    EXPECT_EQ(pipe_read(pipe, 3, &out), 3);
    EXPECT_EQ(out, "dev");
    pipe_close(pipe);
    ::close(fd);
}

// A fork child shares the ring's pages (no VM_DONTCOPY on packet_mmap()).
TEST(HostDoorsTest, MixedmapIsSharedWithAForkChild) {
    std::string why;
    if (device_probe("mixedmap", &why).empty()) GTEST_SKIP() << why;
    Device d("mixedmap", kPage);
    ASSERT_GT(d.ret, 0);
    std::memcpy(ptr(d.addr()), "parent", 6);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const bool saw = std::memcmp(ptr(d.addr()), "parent", 6) == 0;
        std::memcpy(ptr(d.addr()), "child!", 6);
        ::_exit(saw ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(std::string(ptr(d.addr()), 6), "child!");
}

// Without CAP_NET_RAW, packet_create() refuses the socket (-EPERM) and the
// mixedmap device is io_uring's SQE array instead: still VM_MIXEDMAP.
TEST(HostDoorsTest, MixedmapWithoutCapNetRawIsIoUringsRing) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop CAP_NET_RAW from a full set";
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2] = {};
        if (::syscall(SYS_capget, &hdr, data) != 0) ::_exit(10);
        data[CAP_NET_RAW / 32].effective &= ~(1U << (CAP_NET_RAW % 32));
        if (::syscall(SYS_capset, &hdr, data) != 0) ::_exit(11);
        std::string why;
        const std::string what = device_probe("mixedmap", &why);
        if (what.find("io_uring") == std::string::npos) ::_exit(what.empty() ? 12 : 13);
        const int64_t a = device_mmap("mixedmap", 0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
        if (a <= 0) ::_exit(a == -ENODEV ? 14 : 15);
        if (!has_flag(vm_flags_of(static_cast<uint64_t>(a)), "mm")) ::_exit(16);
        std::memcpy(ptr(static_cast<uint64_t>(a)) + kPage, "sqe", 3);
        ::_exit(std::memcmp(ptr(static_cast<uint64_t>(a)) + kPage, "sqe", 3) == 0 ? 0 : 17);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 14) GTEST_SKIP() << "no io_uring for the fallback";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10 capget, 11 capset, 12 no device, 13 not io_uring, 15 mmap, "
                                         "16 not VM_MIXEDMAP, 17 bytes";
}

TEST(HostDoorsTest, DeviceProbeChecksTheVmaFlag) {
    std::string why;
    const std::string pfn = device_probe("pfnmap", &why);
    if (!pfn.empty()) {
        EXPECT_NE(pfn.find("perf_event"), std::string::npos) << pfn;
        EXPECT_NE(pfn.find(" pf"), std::string::npos) << pfn;
    } else {
        EXPECT_FALSE(why.empty());
    }
    why.clear();
    const std::string mixed = device_probe("mixedmap", &why);
    if (!mixed.empty()) {
        EXPECT_NE(mixed.find(" mm"), std::string::npos) << mixed;
    } else {
        EXPECT_FALSE(why.empty());
    }
    why.clear();
    EXPECT_EQ(device_probe("iomem", &why), "");
    EXPECT_NE(why.find("iomem"), std::string::npos) << why;
    EXPECT_EQ(device_mmap("iomem", 0, kPage, PROT_READ, MAP_SHARED, 0), -ENODEV);
    // packet_mmap(): a mapping must start at offset 0 of the ring.
    if (!mixed.empty()) {
        EXPECT_EQ(device_mmap("mixedmap", 0, kPage, PROT_READ, MAP_SHARED, kPage), -EINVAL);
    }
}

}  // namespace
}  // namespace pl::oracle::doors
