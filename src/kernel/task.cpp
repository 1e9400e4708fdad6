#include "kernel/task.h"

#include <cerrno>
#include <utility>

#include "kernel/kernel.h"

namespace pl {

namespace {
thread_local Task* t_current = nullptr;
// A thread the explorer reuses starts its next model thread with no current
// task, as a fresh one would (sync::ThreadReuseHooks).
[[maybe_unused]] const bool kReuseHooks = sync::register_thread_reuse_hooks({nullptr, [] { t_current = nullptr; }});
}

Task::Task(Kernel& k, int p, MmStruct* m) : kernel(k), pid(p), tgid(p), mm(m) {}
Task::~Task() = default;

int task_account_locked(Task& t, sync::Atomic<unsigned long>& counter, long delta) {
    if (delta <= 0) {
        counter.fetch_sub(static_cast<unsigned long>(-delta));
        return 0;
    }
    const unsigned long limit = t.rlimit_memlock.load() >> 12;  // bytes → pages
    unsigned long cur = counter.load();
    for (;;) {
        const unsigned long want = cur + static_cast<unsigned long>(delta);
        if (!t.cap_ipc_lock.load() && want > limit) return -ENOMEM;
        if (counter.compare_exchange(cur, want)) return 0;
    }
}

void Task::files_add(void* obj, void (*close)(void*)) {
    sync::SpinGuard g(files_lock_);
    files_.push_back(OpenFile{obj, close});
}

void Task::files_remove(void* obj) {
    sync::SpinGuard g(files_lock_);
    std::erase_if(files_, [&](const OpenFile& f) { return f.obj == obj; });
}

std::vector<Task::OpenFile> Task::files_take() {
    sync::SpinGuard g(files_lock_);
    return std::exchange(files_, {});
}

void exit_files(Task* t) {
    // Newest first, as a close of the highest fd first would not matter here
    // but keeps teardown the reverse of setup.
    auto files = t->files_take();
    for (auto it = files.rbegin(); it != files.rend(); ++it) it->close(it->obj);
}

bool task_alive(Kernel& k, const Task* t) {
    if (!t) return false;
    for (Task* x : k.tasks())
        if (x == t) return true;
    return false;
}

Task* current() { return t_current; }
void set_current(Task* t) { t_current = t; }

}  // namespace pl
