// pinlab — the insides of HostSession and HostProcess (host_process.h),
// shared by host_session.cpp and host_process.cpp; not for other users.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "oracle/host_channel.h"
#include "oracle/host_knobs.h"
#include "oracle/host_process.h"

namespace pl::oracle {

// How long the controller waits for one reply (or to send one request)
// before it kills the process and answers -ETIMEDOUT: generous, because a
// real operation (MADV_COLLAPSE, populating huge pages) may take a while.
inline constexpr int kReplyTimeoutMs = 30'000;
// How long teardown waits for a killed process to be gone.
inline constexpr int kTeardownTimeoutMs = 5'000;

struct HostSession::Impl {
    int zygote_chan = -1;
    pid_t zygote_pid = -1;
    // Live processes in creation order (a fork child after its parent), so
    // that teardown can kill children first and none is orphaned.
    std::vector<HostProcess::Impl*> live;
    struct File {
        int fd = -1;
        std::string fs;
    };
    std::map<int64_t, File> files;
    std::map<int64_t, int64_t> pipes;  // session pipes: write-end file id -> doors:: pipe handle
    int64_t next_file = 1;
    KnobSet knobs;
    int lock_fd = -1;

    int file_fd(int64_t id) const {
        auto it = files.find(id);
        return it == files.end() ? -1 : it->second.fd;
    }
    void forget(HostProcess::Impl* p);
};

struct HostProcess::Impl {
    HostSession::Impl* session = nullptr;  // null once the session is gone
    int chan = -1;                         // -1 once the process is gone
    pid_t pid = -1;
    int pidfd = -1;  // pidfd_open(pid): signals that cannot hit a reused pid
    // Session files this process (or the parent it was forked from) has
    // received; the rest are sent with their first use.
    std::set<int64_t> files_sent;

    Impl(HostSession::Impl* s, int channel, pid_t p);
    ~Impl();
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    // One request/reply. `attach_file`: the session file the operation uses
    // (sent along if this process has not seen it); `pass_fd`: a descriptor
    // for the operation itself (fork's channel). A broken channel: -EPIPE;
    // no reply within kReplyTimeoutMs: the process is killed, -ETIMEDOUT.
    HostResult call(HostOp op, std::initializer_list<int64_t> args, std::string bytes = {}, int64_t attach_file = 0,
                    int pass_fd = -1);
    // SIGKILL (if still there) and wait, bounded, until the channel is at
    // EOF and the pid is gone; then drop the channel.
    void terminate();
    // Wait (bounded) until the process has left the pid table.
    void wait_gone(int timeout_ms);
};

}  // namespace pl::oracle
