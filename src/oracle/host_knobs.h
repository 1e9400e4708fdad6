// pinlab — what the host offers a conformance run (HostCaps), and the host
// knobs a scenario's `config` maps to (THP mode, hugetlb pools), changed for
// the run and put back on every path: normal return, destructor, and
// SIGINT/SIGTERM/SIGHUP (the handler writes the saved values back and
// re-raises).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "oracle/host_process.h"

namespace pl::oracle {

// Probe the host once: uname, root, io_uring, THP sysfs, hugetlb pools,
// one writable directory per file system type (/proc/mounts; `fs_dirs`
// given by the user win; tmpfs prefers /dev/shm, disk file systems prefer
// $TMPDIR, /tmp, /var/tmp when they are of that type), and the devices
// (doors::device_probe).
HostCaps discover_caps(const std::map<std::string, std::string>& fs_dirs);

// The sysfs/procfs files behind HostKnobs:
//   /sys/kernel/mm/transparent_hugepage/enabled        (thp)
//   /sys/kernel/mm/transparent_hugepage/use_zero_page  (thp_use_zero_page)
//   /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages     (hugetlb_2m: grown until
//   /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages   free_hugepages >= wanted)
class KnobSet {
public:
    KnobSet();
    ~KnobSet();  // restore()
    KnobSet(const KnobSet&) = delete;
    KnobSet& operator=(const KnobSet&) = delete;

    // Set what `k` asks for; a file's first value is saved before its first
    // write. false with *why when a knob cannot be set (not root, the pool
    // cannot grow that far: "could reserve only 2 of 4 2048 kB huge pages",
    // or the growth would take more than half of MemAvailable). A pool is
    // only ever grown, never shrunk, until restore(). Error(EINVAL): a thp
    // mode other than "always", "madvise", "never".
    //
    // The saved values are also published to a fixed table that the
    // SIGINT/SIGTERM/SIGHUP handlers (installed while any KnobSet holds a
    // saved value; signals the program ignores are left alone) write back
    // with open/write/close before re-raising the signal with its default
    // action. Only the process that saved them restores: a child forked
    // meanwhile does not. Not for concurrent use from several threads.
    Result<bool> apply(const HostKnobs& k, std::string* why);
    // Write every saved value back (idempotent).
    void restore();

private:
    struct Saved {
        std::string path;
        std::string value;
    };
    std::vector<Saved> saved_;
};

}  // namespace pl::oracle
