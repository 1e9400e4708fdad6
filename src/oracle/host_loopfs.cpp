// pinlab — loopback file systems for conformance runs (host_loopfs.h).
#include "oracle/host_loopfs.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

extern char** environ;

namespace pl::oracle {

namespace {

// Where the private tmpfs goes: a directory every Debian system has, covered
// only inside this process's mount namespace (so nothing is created on the
// host's file systems, not even an empty directory).
constexpr const char* kRoot = "/mnt";
// mkfs.xfs refuses file systems below 300 MiB; the image is sparse on tmpfs.
constexpr off_t kImageBytes = off_t{320} << 20;

std::mutex g_mu;
bool g_ns_ready = false;
std::map<std::string, std::string> g_dirs;  // type -> mount point

std::string err(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool private_namespace(std::string* why) {
    if (g_ns_ready) return true;
    if (::unshare(CLONE_NEWNS) != 0) {
        *why = err("unshare(CLONE_NEWNS)");
        return false;
    }
    // Keep our mounts from propagating back to the host's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        *why = err("making / private");
        return false;
    }
    if (::mount("pinlab-loopfs", kRoot, "tmpfs", MS_NOSUID | MS_NODEV, "size=2g,mode=0700") != 0) {
        *why = err("mounting a private tmpfs on /mnt");
        return false;
    }
    g_ns_ready = true;
    return true;
}

std::string find_mkfs(const std::string& type) {
    for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
        std::string p = std::string(dir) + "mkfs." + type;
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    return {};
}

bool run_quiet(const std::vector<std::string>& argv, std::string* why) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        *why = argv[0] + ": " + std::strerror(rc);
        return false;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        *why = argv[0] + " failed";
        return false;
    }
    return true;
}

// A free loop device bound to `image` (autoclear): its path, or empty. The
// device stays open in *lfd until the mount holds it: autoclear detaches a
// loop device as soon as nobody has it open.
std::string attach_loop(const std::string& image, int* lfd_out, std::string* why) {
    int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        *why = err("/dev/loop-control");
        return {};
    }
    const int n = ::ioctl(ctl, LOOP_CTL_GET_FREE);
    ::close(ctl);
    if (n < 0) {
        *why = err("LOOP_CTL_GET_FREE");
        return {};
    }
    const std::string dev = "/dev/loop" + std::to_string(n);
    int lfd = ::open(dev.c_str(), O_RDWR | O_CLOEXEC);
    int ifd = ::open(image.c_str(), O_RDWR | O_CLOEXEC);
    if (lfd < 0 || ifd < 0) {
        *why = err(lfd < 0 ? dev.c_str() : image.c_str());
        if (lfd >= 0) ::close(lfd);
        if (ifd >= 0) ::close(ifd);
        return {};
    }
    loop_config cfg{};
    cfg.fd = static_cast<unsigned>(ifd);
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    const int r = ::ioctl(lfd, LOOP_CONFIGURE, &cfg);
    const int e = errno;
    ::close(ifd);
    if (r != 0) {
        ::close(lfd);
        errno = e;
        *why = err("LOOP_CONFIGURE");
        return {};
    }
    *lfd_out = lfd;
    return dev;
}

}  // namespace

std::string loopfs_dir(const std::string& type, std::string* why) {
    std::string dummy;
    if (!why) why = &dummy;
    std::lock_guard<std::mutex> lock(g_mu);
    if (auto it = g_dirs.find(type); it != g_dirs.end()) return it->second;
    if (::geteuid() != 0) {
        *why = "making a " + type + " file system needs root";
        return {};
    }
    if (type == "hugetlbfs") {
        // No device: a private hugetlbfs mount (default huge page size).
        if (!private_namespace(why)) return {};
        const std::string dir = std::string(kRoot) + "/hugetlbfs";
        ::mkdir(dir.c_str(), 0700);
        if (::mount("pinlab-hugetlbfs", dir.c_str(), "hugetlbfs", MS_NOSUID | MS_NODEV, nullptr) != 0) {
            *why = err("mounting hugetlbfs");
            return {};
        }
        g_dirs[type] = dir;
        return dir;
    }
    const std::string mkfs = find_mkfs(type);
    if (mkfs.empty()) {
        *why = "no mkfs." + type + " (install " +
               std::string(type == "xfs" ? "xfsprogs" : type == "btrfs" ? "btrfs-progs" : "e2fsprogs") + ")";
        return {};
    }
    if (!private_namespace(why)) return {};
    const std::string image = std::string(kRoot) + "/" + type + ".img";
    const std::string dir = std::string(kRoot) + "/" + type;
    {
        int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || ::ftruncate(fd, kImageBytes) != 0) {
            *why = err("creating the image");
            if (fd >= 0) ::close(fd);
            return {};
        }
        ::close(fd);
    }
    std::vector<std::string> argv = {mkfs};
    if (type == "xfs" || type == "btrfs") argv.push_back("-f");
    if (type == "ext4") argv.insert(argv.end(), {"-F", "-q"});
    argv.push_back(image);
    if (!run_quiet(argv, why)) return {};
    int lfd = -1;
    const std::string dev = attach_loop(image, &lfd, why);
    if (dev.empty()) return {};
    ::mkdir(dir.c_str(), 0700);
    const int r = ::mount(dev.c_str(), dir.c_str(), type.c_str(), 0, nullptr);
    const int e = errno;
    ::close(lfd);  // the mount holds the device now (or, on failure, autoclear frees it)
    if (r != 0) {
        errno = e;
        *why = err(("mounting " + type).c_str());
        return {};
    }
    // The loop device holds the image open; its name can go.
    ::unlink(image.c_str());
    g_dirs[type] = dir;
    return dir;
}

}  // namespace pl::oracle
