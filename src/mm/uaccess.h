// pinlab — the CPU's loads and stores through a task's page tables.
#pragma once

#include "base/result.h"
#include "base/units.h"

namespace pl {

class MmStruct;

enum class Access : uint8_t { Read, Write };

// Copies len bytes between buf and the user range at addr, faulting (and
// COWing) as the hardware and the kernel's fault handler would. -EFAULT
// where the process would get SIGSEGV or SIGBUS, -ENOMEM when a fault ran
// out of memory. Nothing is partially reported: either all bytes moved or an
// error is returned (bytes before the failing page may have been written).
Status access_user(MmStruct& mm, vaddr_t addr, void* buf, uint64_t len, Access how);
// memset() through the page tables.
Status memset_user(MmStruct& mm, vaddr_t addr, int c, uint64_t len);

}  // namespace pl
