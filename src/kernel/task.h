// pinlab — struct task_struct: a process with one address space.
#pragma once

#include <memory>

#include "base/sync/atomic.h"

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
    MmStruct* mm;  // holds an mm_users reference; null after exit

    // Pending signals: SIGKILL is fatal (fatal_signal_pending); any other is
    // not (signal_pending), which only FOLL_INTERRUPTIBLE waits honour.
    sync::Atomic<bool> fatal_signal{false};
    sync::Atomic<bool> other_signal{false};
    bool fatal_signal_pending() const { return fatal_signal.load(); }
    bool signal_pending() const { return fatal_signal.load() || other_signal.load(); }
};

// `current`: the task whose mm this thread's non-remote calls use.
Task* current();
void set_current(Task* t);

}  // namespace pl
