// pinlab — a device's kernel buffer: physically contiguous RAM the driver
// allocates at open and frees at release, as a ring-buffer driver does.
#pragma once

#include "base/result.h"
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/vm_ops.h"

namespace pl {

class FileOperations;
class File;

struct DevBuffer {
    Kernel* kernel = nullptr;
    Folio* folio = nullptr;  // 2^kDevBufferOrder pages; the driver's reference is in the ledger

    static Result<DevBuffer*> create(Kernel& k, unsigned order);
    static void release(void* self);  // File::private_release
    unsigned long nr_pages() const { return folio->nr_pages(); }
    // -EINVAL unless [pgoff, pgoff + nr) lies inside the buffer.
    Status check_range(pgoff_t pgoff, unsigned long nr) const;
};

// Opens a device file whose private data is a fresh DevBuffer.
Result<File*> dev_buffer_open(Kernel& k, const FileOperations& fops, const char* name);

// The vm_operations of a device that maps everything at mmap time: a fault
// can only mean an access the driver never mapped.
class PrepopulatedVmOps final : public VmOperations {
public:
    explicit PrepopulatedVmOps(const char* n) : name_(n) {}
    const char* name() const override { return name_; }
    vm_fault_t fault(VmFault&) const override { return VM_FAULT_SIGBUS; }

private:
    const char* name_;
};

}  // namespace pl
