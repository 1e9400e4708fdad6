// pinlab — a device's kernel buffer: physically contiguous RAM the driver
// allocates at open and frees at release, as a ring-buffer driver does.
#pragma once

#include "base/result.h"
#include "kernel/kernel.h"
#include "mm/folio.h"

namespace pl {

struct DevBuffer {
    Kernel* kernel = nullptr;
    Folio* folio = nullptr;  // 2^kDevBufferOrder pages; the driver's reference is in the ledger

    static Result<DevBuffer*> create(Kernel& k, unsigned order);
    static void release(void* self);  // File::private_release
    unsigned long nr_pages() const { return folio->nr_pages(); }
};

}  // namespace pl
