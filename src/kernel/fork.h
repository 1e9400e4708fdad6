// pinlab — fork() and exit().
#pragma once

#include "base/result.h"

namespace pl {

class Task;
class MmStruct;

// fork(): a new task whose address space copies the parent's.
Result<Task*> do_fork(Task& parent);
// clone(CLONE_VM|CLONE_THREAD): a new task in t's thread group sharing t's mm
// (one more mm_users reference), with t's RLIMIT_MEMLOCK and capabilities.
Result<Task*> do_clone_thread(Task& t);
// exit(): releases the task's mm (the last user tears it down). The Task
// object stays until Kernel::task_free().
void exit_task_mm(Task* t);
// exit_mmap(): unmaps everything (called on the last mmput()).
void exit_mmap(MmStruct& mm);

}  // namespace pl
