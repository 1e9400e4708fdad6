#include "kernel/task.h"

namespace pl {

namespace {
thread_local Task* t_current = nullptr;
}

Task::Task(Kernel& k, int p, MmStruct* m) : kernel(k), pid(p), mm(m) {}
Task::~Task() = default;

Task* current() { return t_current; }
void set_current(Task* t) { t_current = t; }

}  // namespace pl
