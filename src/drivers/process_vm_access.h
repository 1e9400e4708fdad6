// pinlab — process_vm_readv()/process_vm_writev(): copies between the
// caller's address space and another task's, pinning the remote pages with
// pin_user_pages_remote() (mm/process_vm_access.c). The C API is in
// pinlab/kapi.h.
#pragma once

namespace pl {

class Task;

// How many pages one pin_user_pages_remote() call takes: the on-stack array
// (PVM_MAX_PP_ARRAY_COUNT) when the whole transfer fits in it, else the
// kmalloc'ed one of PVM_MAX_KMALLOC_PAGES bytes of page pointers.
inline constexpr unsigned long kPvmMaxPpArrayCount = 16;
inline constexpr unsigned long kPvmMaxKmallocPages = 4096 * 2;
inline constexpr unsigned long kPvmMaxPagesPerLoopKmalloc = kPvmMaxKmallocPages / sizeof(void*);

// The ptrace-style check of mm_access(PTRACE_MODE_ATTACH_REALCREDS): true
// when `caller` may read and write `target`'s memory.
bool ptrace_may_access(const Task& caller, const Task& target);

}  // namespace pl
