// pinlab — the zygote: the small single-threaded process a HostSession forks
// first, from which every scenario process is forked (host_process.h).
//
// Forking workers from the zygote rather than from the controller keeps
// them free of the controller's threads, its model memory and its fds: a
// worker's address space and fd table are the zygote's, which holds nothing
// but its channel.
#pragma once

#include <sys/types.h>

namespace pl::oracle {

// The zygote's body, in the child of fork(): `chan` is its end of the
// controller's socketpair, `controller` the pid it was forked from. Closes
// every other fd, adopts orphaned workers (PR_SET_CHILD_SUBREAPER) and
// reaps them by ignoring SIGCHLD. At EOF on its channel (the controller is
// gone) it waits, bounded, for its workers to exit at their own EOF, then
// exits. Never returns.
[[noreturn]] void host_zygote_main(int chan, pid_t controller);

}  // namespace pl::oracle
