// pinlab — VMA flags (upstream values) and fault flags/results.
#pragma once

#include <cstdint>

namespace pl {

using vm_flags_t = uint64_t;

inline constexpr vm_flags_t VM_NONE = 0;
inline constexpr vm_flags_t VM_READ = 0x1;
inline constexpr vm_flags_t VM_WRITE = 0x2;
inline constexpr vm_flags_t VM_EXEC = 0x4;
inline constexpr vm_flags_t VM_SHARED = 0x8;
inline constexpr vm_flags_t VM_MAYREAD = 0x10;
inline constexpr vm_flags_t VM_MAYWRITE = 0x20;
inline constexpr vm_flags_t VM_MAYEXEC = 0x40;
inline constexpr vm_flags_t VM_MAYSHARE = 0x80;
inline constexpr vm_flags_t VM_GROWSDOWN = 0x100;
inline constexpr vm_flags_t VM_UFFD_MISSING = 0x200;
inline constexpr vm_flags_t VM_PFNMAP = 0x400;
inline constexpr vm_flags_t VM_UFFD_WP = 0x1000;
inline constexpr vm_flags_t VM_LOCKED = 0x2000;
inline constexpr vm_flags_t VM_IO = 0x4000;
inline constexpr vm_flags_t VM_SEQ_READ = 0x8000;
inline constexpr vm_flags_t VM_RAND_READ = 0x10000;
inline constexpr vm_flags_t VM_DONTCOPY = 0x20000;
inline constexpr vm_flags_t VM_DONTEXPAND = 0x40000;
inline constexpr vm_flags_t VM_LOCKONFAULT = 0x80000;
inline constexpr vm_flags_t VM_ACCOUNT = 0x100000;
inline constexpr vm_flags_t VM_NORESERVE = 0x200000;
inline constexpr vm_flags_t VM_HUGETLB = 0x400000;
inline constexpr vm_flags_t VM_SYNC = 0x800000;
inline constexpr vm_flags_t VM_WIPEONFORK = 0x2000000;
inline constexpr vm_flags_t VM_DONTDUMP = 0x4000000;
inline constexpr vm_flags_t VM_SOFTDIRTY = 0x8000000;
inline constexpr vm_flags_t VM_MIXEDMAP = 0x10000000;
inline constexpr vm_flags_t VM_HUGEPAGE = 0x20000000;
inline constexpr vm_flags_t VM_NOHUGEPAGE = 0x40000000;
inline constexpr vm_flags_t VM_MERGEABLE = 0x80000000;
inline constexpr vm_flags_t VM_SHADOW_STACK = 1ULL << 37;  // VM_HIGH_ARCH_5 on x86

inline constexpr vm_flags_t VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
inline constexpr vm_flags_t VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;

// enum fault_flag
inline constexpr unsigned FAULT_FLAG_WRITE = 1u << 0;
inline constexpr unsigned FAULT_FLAG_MKWRITE = 1u << 1;
inline constexpr unsigned FAULT_FLAG_ALLOW_RETRY = 1u << 2;
inline constexpr unsigned FAULT_FLAG_RETRY_NOWAIT = 1u << 3;
inline constexpr unsigned FAULT_FLAG_KILLABLE = 1u << 4;
inline constexpr unsigned FAULT_FLAG_TRIED = 1u << 5;
inline constexpr unsigned FAULT_FLAG_USER = 1u << 6;
inline constexpr unsigned FAULT_FLAG_REMOTE = 1u << 7;
inline constexpr unsigned FAULT_FLAG_INSTRUCTION = 1u << 8;
inline constexpr unsigned FAULT_FLAG_INTERRUPTIBLE = 1u << 9;
inline constexpr unsigned FAULT_FLAG_UNSHARE = 1u << 10;
inline constexpr unsigned FAULT_FLAG_ORIG_PTE_VALID = 1u << 11;

// vm_fault_t bits
using vm_fault_t = unsigned;
inline constexpr vm_fault_t VM_FAULT_OOM = 0x000001;
inline constexpr vm_fault_t VM_FAULT_SIGBUS = 0x000002;
inline constexpr vm_fault_t VM_FAULT_MAJOR = 0x000004;
// do_wp_page() broke COW or reused the page (gone upstream in v6.2). Only the
// v4.8 era reports it: its faultin_page() is the one reader (Dirty COW).
inline constexpr vm_fault_t VM_FAULT_WRITE = 0x000008;
inline constexpr vm_fault_t VM_FAULT_HWPOISON = 0x000010;
inline constexpr vm_fault_t VM_FAULT_HWPOISON_LARGE = 0x000020;
inline constexpr vm_fault_t VM_FAULT_SIGSEGV = 0x000040;
inline constexpr vm_fault_t VM_FAULT_NOPAGE = 0x000100;
inline constexpr vm_fault_t VM_FAULT_LOCKED = 0x000200;
inline constexpr vm_fault_t VM_FAULT_RETRY = 0x000400;
inline constexpr vm_fault_t VM_FAULT_FALLBACK = 0x000800;
inline constexpr vm_fault_t VM_FAULT_DONE_COW = 0x001000;
inline constexpr vm_fault_t VM_FAULT_COMPLETED = 0x004000;
inline constexpr vm_fault_t VM_FAULT_ERROR =
    VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON | VM_FAULT_HWPOISON_LARGE;

}  // namespace pl
