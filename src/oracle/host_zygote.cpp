// pinlab — the zygote (see host_zygote.h).
#include "oracle/host_zygote.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "oracle/host_channel.h"
#include "oracle/host_worker.h"

namespace pl::oracle {

namespace {

// Default dispositions and an empty mask: the controller's handlers (the
// knob-restoring SIGINT/SIGTERM handler of host_knobs among them) must not
// run in a scenario process.
void reset_signals() {
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void close_fds_from(int first) {
    if (::syscall(SYS_close_range, first, ~0U, 0) == 0) return;
    for (int fd = first; fd < 4096; ++fd) ::close(fd);
}

// The controller is gone, and with it every worker's channel: they exit at
// EOF. Outlive them all (orphans included: we are their subreaper), so that
// each is reaped, then go. Bounded: SIGALRM's default action ends the wait.
[[noreturn]] void reap_and_exit() {
    ::alarm(10);
    // With SIGCHLD ignored, wait() returns -1 (ECHILD) only once no child is left.
    while (::wait(nullptr) >= 0 || errno == EINTR) {
    }
    ::_exit(0);
}

}  // namespace

void host_zygote_main(int chan, pid_t controller) {
    // Only the channel survives (on fd 3), besides stdin/stdout/stderr.
    if (chan != 3) {
        if (::dup2(chan, 3) < 0) ::_exit(1);
        chan = 3;
    }
    close_fds_from(4);
    reset_signals();
    // No PR_SET_PDEATHSIG: it fires when the *thread* that forked us exits,
    // and killing the zygote first would orphan its workers to an init that
    // may never reap them. The controller's death closes our channel (EOF)
    // and every worker's, which is enough. A controller gone already:
    if (::getppid() != controller) ::_exit(0);
    // Orphaned workers (a parent that exited before its fork child) are
    // reparented here rather than to an init that may never reap them; and
    // ignoring SIGCHLD reaps them all as they exit.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    ::signal(SIGCHLD, SIG_IGN);
    ::signal(SIGPIPE, SIG_IGN);
    try {
        for (;;) {
            ChannelRequest req;
            if (channel_recv_request(chan, &req, -1) < 0) reap_and_exit();  // the controller is gone
            ChannelReply rep;
            if (req.op != HostOp::spawn || req.fd < 0) {
                rep.ret = req.op != HostOp::spawn ? -ENOSYS : -EBADF;
            } else {
                pid_t pid = ::fork();
                if (pid == 0) {
                    ::close(chan);
                    host_worker_main(req.fd);
                }
                rep.ret = pid < 0 ? -errno : pid;
            }
            if (req.fd >= 0) ::close(req.fd);
            if (channel_send_reply(chan, rep, -1) < 0) ::_exit(0);
        }
    } catch (...) {
        ::_exit(1);
    }
}

}  // namespace pl::oracle
