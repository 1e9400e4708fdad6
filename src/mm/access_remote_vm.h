// pinlab — access_process_vm() / __access_remote_vm() (mm/memory.c): how
// ptrace(PEEKDATA/POKEDATA) and /proc/PID/mem read and write another
// process's memory, one page at a time through GUP.
#pragma once

#include "mm/mm_struct.h"

namespace pl {

class Task;

// __access_remote_vm(): copies up to `len` bytes between `buf` and mm's
// [addr, addr+len), taking each page with get_user_pages_remote(gup_flags
// [|FOLL_WRITE when `write`]) under mmap_read_lock. Writes copy into the
// page and set_page_dirty_lock() it. Returns the bytes copied: it stops at
// the first page GUP refuses (0 when that is the first).
long access_remote_vm(MmStruct& mm, vaddr_t addr, void* buf, unsigned long len, unsigned gup_flags);

// access_process_vm(): the same on t's mm; 0 when t has none (exited).
long access_process_vm(Task& t, vaddr_t addr, void* buf, unsigned long len, unsigned gup_flags);

}  // namespace pl
