// pinlab — struct task_struct: a process with one address space.
#pragma once

#include <memory>
#include <vector>

#include "base/sync/atomic.h"
#include "base/sync/spinlock.h"

namespace pl {

class Kernel;
class MmStruct;

class Task {
public:
    Task(Kernel& k, int pid, MmStruct* mm);
    ~Task();
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;

    Kernel& kernel;
    const int pid;
    // The thread group (the leader's pid): its own pid for a process, the
    // leader's for a thread made by do_clone_thread(). Threads share `mm`.
    int tgid;
    MmStruct* mm;  // holds an mm_users reference; null after exit
    bool is_thread() const { return tgid != pid; }

    // Pending signals: SIGKILL is fatal (fatal_signal_pending); any other is
    // not (signal_pending), which only FOLL_INTERRUPTIBLE waits honour.
    sync::Atomic<bool> fatal_signal{false};
    sync::Atomic<bool> other_signal{false};
    bool fatal_signal_pending() const { return fatal_signal.load(); }
    bool signal_pending() const { return fatal_signal.load() || other_signal.load(); }

    // RLIMIT_MEMLOCK (bytes) and the counters charged against it by the
    // drivers that pin for long: io_uring charges the user (user->locked_vm,
    // __io_account_mem()), vfio type1 the mm (mm->locked_vm, vfio_lock_acct()).
    // The model has one user per task and keeps both on the task, so each
    // thread of a group has its own counters (docs/FIDELITY.md, threads).
    // The default is upstream's MLOCK_LIMIT (8 MiB since v5.16); CAP_IPC_LOCK
    // (off) lifts the limit, as capable(CAP_IPC_LOCK) does for both drivers.
    static constexpr unsigned long kDefaultMemlock = 8UL << 20;
    sync::Atomic<unsigned long> rlimit_memlock{kDefaultMemlock};
    sync::Atomic<bool> cap_ipc_lock{false};
    sync::Atomic<unsigned long> user_locked_vm{0};  // pages (io_uring)
    sync::Atomic<unsigned long> locked_vm{0};       // pages (vfio type1)
    sync::Atomic<unsigned long> pinned_vm{0};       // pages (ib_umem: mm->pinned_vm)

    // ptrace access as process_vm_readv/writev check it (mm_access() with
    // PTRACE_MODE_ATTACH_REALCREDS), reduced to what the model knows: the pid
    // of the task this one was forked from (0: none; Yama's ancestor walk),
    // and whether tasks outside its ancestry may attach to this one. On by
    // default: every model task is root, and a root caller (same uid,
    // CAP_SYS_PTRACE) may attach to anything. Off stands for a caller
    // without CAP_SYS_PTRACE under Yama's ptrace_scope=1.
    sync::Atomic<int> parent_pid{0};
    sync::Atomic<bool> ptrace_allowed{true};

    // The task's file table, reduced to the driver objects that pin (an
    // io_uring ring, a vfio container): do_exit() closes them in
    // exit_files(), after exit_mm(), and closing releases their pins. An
    // object closed by its user first removes itself. `close` runs as the
    // exiting task, which is still alive then.
    struct OpenFile {
        void* obj;
        void (*close)(void* obj);
    };
    void files_add(void* obj, void (*close)(void*));
    void files_remove(void* obj);
    std::vector<OpenFile> files_take();

private:
    sync::Spinlock files_lock_;
    std::vector<OpenFile> files_ PL_GUARDED_BY(files_lock_);
};

// do_exit()'s exit_files(): closes every object in t's file table.
void exit_files(Task* t);

// Charges `delta` pages (negative: uncharges) to `counter` of `t`, refusing
// with -ENOMEM a charge that would pass RLIMIT_MEMLOCK unless the task has
// CAP_IPC_LOCK (__io_account_mem(), vfio_lock_acct()). 0 on success.
int task_account_locked(Task& t, sync::Atomic<unsigned long>& counter, long delta);

// t is still one of k's tasks (drivers whose objects may outlive their task,
// when a caller closes them after exit, check before touching it).
bool task_alive(Kernel& k, const Task* t);

// `current`: the task whose mm this thread's non-remote calls use.
Task* current();
void set_current(Task* t);

// Runs the enclosed calls in task t's context (`current` = t, as a syscall
// t entered would), restoring the previous task on exit. Drivers use it for
// calls made on behalf of the task that owns their object.
class AsTask {
public:
    explicit AsTask(Task* t) : saved_(current()) { set_current(t); }
    ~AsTask() { set_current(saved_); }
    AsTask(const AsTask&) = delete;
    AsTask& operator=(const AsTask&) = delete;

private:
    Task* saved_;
};

}  // namespace pl
