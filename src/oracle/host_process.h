// pinlab — the host kernel as an oracle: real processes standing for a
// scenario's tasks (pinlab conform, src/oracle/conform.h).
//
// A HostSession owns everything a conformance run does to the host: a
// zygote process forked early (small, single-threaded, no model memory)
// from which each scenario task's process is forked, the files it creates
// (unlinked at once: O_TMPFILE or memfd), and the host knobs it changes for
// a scenario (THP mode, hugetlb pools), which it restores on every path.
// Each HostProcess is a real process serving one request at a time over a
// socketpair: its memory operations, CPU loads and stores, fork and exit
// are the kernel's own, so what it observes (return values, errno, bytes,
// /proc/PID/pagemap, /proc/kpageflags, /proc/vmstat) is ground truth.
//
// Values crossing this interface are Linux's: PROT_*, MAP_*, MADV_* and
// MREMAP_* numbers are those of <sys/mman.h> (pinlab's uapi.h uses the same
// numbers; tests/oracle checks it), results are >= 0 or -errno.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace pl::oracle {

class HostProcess;

// What one host operation returned: ret >= 0 on success (an address, a byte
// count, a handle) or -errno; bytes for the operations that read.
struct HostResult {
    int64_t ret = 0;
    std::string bytes;
};

// What a real process can see of one virtual page (fs/proc/task_mmu.c
// pagemap_read(), fs/proc/page.c kpageflags_read()).
struct HostPageInfo {
    bool present = false;     // PM_PRESENT (bit 63)
    bool swapped = false;     // PM_SWAP (bit 62)
    bool file = false;        // PM_FILE (bit 61): file page or shared anon
    bool exclusive = false;   // PM_MMAP_EXCLUSIVE (bit 56): mapped exactly once
    bool soft_dirty = false;  // PM_SOFT_DIRTY (bit 55)
    uint64_t pfn = 0;         // 0 unless the reader has CAP_SYS_ADMIN
    // /proc/kpageflags of pfn (root only): KPF_* bits, and the size of the
    // compound page it belongs to (1 for a small page), found by walking
    // KPF_COMPOUND_HEAD/TAIL.
    std::optional<uint64_t> kpageflags;
    uint64_t folio_nr_pages = 0;  // 0 when kpageflags is unknown
};

// What this host offers a scenario, found once per session.
struct HostCaps {
    std::string kernel;            // uname -r
    bool root = false;             // PFNs in pagemap, /proc/kpageflags, sysfs knobs
    bool io_uring = false;         // io_uring_setup() works here
    bool thp = false;              // /sys/kernel/mm/transparent_hugepage exists
    bool hugetlb_2m = false;       // the 2 MiB pool can be grown (or has free pages)
    bool hugetlb_1g = false;
    bool soft_dirty = false;       // CONFIG_MEM_SOFT_DIRTY: clear_refs 4 write-protects PTEs
    // A writable directory per file system type ("ext4", "xfs", "btrfs",
    // "tmpfs", "hugetlbfs"), from /proc/mounts or --fs TYPE=DIR.
    std::map<std::string, std::string> fs_dirs;
    // The host mappings standing for pinlab's devices, with the VmFlags the
    // kernel gave them (/proc/self/smaps), e.g. "pfnmap" -> "perf_event
    // ring buffer (io pf)"; absent when the host offers none.
    std::map<std::string, std::string> devices;
    std::vector<std::string> notes;  // why something is absent, for reports
};

// Host knobs a scenario's `config` asks for (only the keys that have one).
struct HostKnobs {
    std::optional<std::string> thp;            // "always" | "madvise" | "never"
    std::optional<bool> thp_use_zero_page;
    std::optional<unsigned long> hugetlb_2m;   // free pages wanted in the pool
    std::optional<unsigned long> hugetlb_1g;
};

class HostSession {
public:
    // Forks the zygote; call before the process grows (early in main()).
    // `fs_dirs` overrides/extends the directories found in /proc/mounts.
    // A session and its processes are used from one thread at a time.
    static Result<std::unique_ptr<HostSession>> create(const std::map<std::string, std::string>& fs_dirs = {});
    ~HostSession();  // kills and reaps every process, restores every knob
    HostSession(const HostSession&) = delete;
    HostSession& operator=(const HostSession&) = delete;

    const HostCaps& caps() const { return caps_; }

    // Serialises host runs between pinlab processes (flock on a lock file
    // in /tmp): counters and knobs are global. Held until release_host().
    Status acquire_host();
    void release_host();

    // Set the knobs for one scenario (saving the old values the first time);
    // an error says which knob could not be set (the scenario is skipped).
    Result<bool> apply_knobs(const HostKnobs& k, std::string* why);
    // Put every knob back as it was before the first apply_knobs().
    void restore_knobs();

    // A fresh process forked from the zygote: the zygote's own small
    // address space (the usual layout: scenario hints like `at 1G` are
    // free), SIGCHLD ignored so that its own children are reaped.
    Result<std::unique_ptr<HostProcess>> spawn();

    // Files live in the controller and are handed to a process on first
    // use (SCM_RIGHTS). `fs`: "tmpfs", "memfd", "memfd-hugetlb", "ext4",
    // "xfs", "btrfs", "hugetlbfs", ...; returns a file id >= 1 or -errno
    // (-EOPNOTSUPP: no such file system here, with *why).
    int64_t file_new(const std::string& fs, uint64_t size, std::string* why);
    HostResult file_pwrite(int64_t file, uint64_t off, const std::string& bytes);
    HostResult file_pread(int64_t file, uint64_t off, uint64_t len);  // len > 1 MiB: -EINVAL
    HostResult file_fsync(int64_t file);
    HostResult file_ftruncate(int64_t file, uint64_t size);
    HostResult file_fallocate(int64_t file, uint64_t off, uint64_t len);
    int file_fd(int64_t file) const;  // -1 if unknown

    // A pipe belongs to no task (as in the model): made here, its write end
    // is a session file handed to the tasks that vmsplice into it
    // (HostProcess::vmsplice_file), its read end read here. Returns the
    // file id of the write end, or -errno.
    int64_t pipe_new();
    HostResult pipe_read(int64_t pipe, uint64_t len);  // up to len bytes; -EAGAIN if empty
    // Drains what the pipe still holds (so its page references go now, as
    // the model's free does) and closes both ends here.
    HostResult pipe_close(int64_t pipe);

    // /proc/vmstat counter (absolute; callers take deltas).
    std::optional<uint64_t> vmstat(const std::string& name) const;
    // Wait until the pin counters stop moving (io_uring tears rings down
    // in a workqueue after close): unchanged for 20 ms, at most 1 s.
    void settle_pins();

    // Called by HostProcess; not for users.
    struct Impl;
    Impl& impl() { return *impl_; }

private:
    HostSession();
    HostCaps caps_;
    std::unique_ptr<Impl> impl_;
};

// One real process standing for a scenario task. Handles (rings, pipes,
// device files) are indexes into the process's own table, >= 1, inherited
// over fork like the fds behind them.
// Every call is one request and one reply; a process that died, or whose
// channel broke, answers -EPIPE from then on; one that does not answer
// within 30 s is killed and the call returns -ETIMEDOUT.
class HostProcess {
public:
    ~HostProcess();  // SIGKILL if still alive, then reaped
    pid_t pid() const;

    // fork(): the child, serving its own channel.
    Result<std::unique_ptr<HostProcess>> fork();
    // exit(): returns once the process is gone and its mm torn down.
    void exit();

    // ---- memory (mmap(2) etc. in this process) ----
    // file: a session file id (0: none); device: "" or "pfnmap"/"mixedmap":
    // the host's counterpart, created for this mapping, of length len.
    HostResult mmap(uint64_t addr, uint64_t len, int prot, int flags, int64_t file, uint64_t off,
                    const std::string& device = "");
    HostResult munmap(uint64_t addr, uint64_t len);
    HostResult mprotect(uint64_t addr, uint64_t len, int prot);
    HostResult madvise(uint64_t addr, uint64_t len, int advice);
    HostResult mremap(uint64_t old_addr, uint64_t old_len, uint64_t new_len, int flags, uint64_t new_addr);
    // The CPU's view: plain loads and stores, -EFAULT on SIGSEGV/SIGBUS.
    // Page by page in address order, as pl_read()/pl_write(): a fault part
    // way leaves the pages before it written and returns -EFAULT (no bytes
    // for a read). More than 64 MiB in one read or write: -E2BIG.
    HostResult read(uint64_t addr, uint64_t len);
    HostResult write(uint64_t addr, const std::string& bytes);
    HostResult memset(uint64_t addr, int byte, uint64_t len);
    HostResult clear_refs(int value);  // echo value > /proc/self/clear_refs
    HostResult set_rlimit_memlock(uint64_t bytes);
    // CAP_IPC_LOCK on or off in the effective set (tasks start without it,
    // as the model's do); -EPERM to raise it in a process that never had it.
    HostResult set_cap_ipc_lock(bool on);
    // VmLck / VmPin of /proc/PID/status, in pages.
    HostResult status_pages(const std::string& field);
    HostPageInfo page_info(uint64_t addr);

    // ---- the pinning doors ----
    HostResult io_uring_setup(unsigned entries);
    HostResult io_uring_register_buffers(int64_t ring, const std::vector<std::pair<uint64_t, uint64_t>>& iovecs);
    HostResult io_uring_unregister_buffers(int64_t ring);
    // IORING_OP_READ_FIXED / WRITE_FIXED on a session file, waited for.
    HostResult io_uring_rw_fixed(int64_t ring, bool write, int64_t file, int buf_index, uint64_t addr, uint64_t len,
                                 uint64_t off);
    HostResult io_uring_exit(int64_t ring);
    // vmsplice() into a session pipe (HostSession::pipe_new()).
    HostResult vmsplice_file(int64_t pipe_file, uint64_t addr, uint64_t len);
    HostResult process_vm_rw(bool write, pid_t target, uint64_t local, uint64_t remote, uint64_t len);
    // O_DIRECT read (file -> memory) or write, synchronous.
    HostResult direct_rw(bool write, int64_t file, uint64_t addr, uint64_t len, uint64_t off);

    struct Impl;

private:
    friend class HostSession;
    explicit HostProcess(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace pl::oracle
