// pinlab — a host process serving its channel (host_channel.h): the body of
// every HostProcess (host_process.h) after the zygote forks it.
//
// It executes one request at a time in its own address space: mmap and
// friends as raw Linux system calls, CPU loads and stores that turn
// SIGSEGV/SIGBUS into -EFAULT, /proc/self files, fork (the child serves a
// channel of its own), exit, and the pinning doors (host_doors.h). It holds
// nothing but what it is asked to create, and exits at EOF on its channel,
// so a controller that dies leaves no worker behind.
#pragma once

namespace pl::oracle {

// Serve `chan` until EOF or exit; never returns.
[[noreturn]] void host_worker_main(int chan);

}  // namespace pl::oracle
