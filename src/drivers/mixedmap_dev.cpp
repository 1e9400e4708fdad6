// pinlab — "/dev/mixedmap": a device whose mmap inserts its buffer's pages
// with vm_insert_page(), as io_uring's ring mmap or an AF_PACKET ring do: the
// VMA is VM_MIXEDMAP and the PTEs are normal, so GUP can reach the pages.
#include "drivers/dev_buffer.h"
#include "drivers/devices.h"
#include "fs/file.h"
#include "mm/internal.h"

namespace pl {

namespace {

const PrepopulatedVmOps kVmOps("mixedmap");

class MixedmapFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        auto* buf = static_cast<DevBuffer*>(f.private_data);
        PL_TRY(buf->check_range(vma.pgoff, vma.nr_pages()));
        vma.ops = &kVmOps;
        vma.flags |= VM_MIXEDMAP | VM_DONTEXPAND;
        for (unsigned long i = 0; i < vma.nr_pages(); ++i)
            PL_TRY(vm_insert_page(vma, vma.start + (i << PAGE_SHIFT), buf->folio->page(vma.pgoff + i)));
        return ok_status();
    }
};

const MixedmapFops kFops;

}  // namespace

Result<File*> mixedmap_dev_open(Kernel& k) { return dev_buffer_open(k, kFops, "/dev/mixedmap"); }

}  // namespace pl
