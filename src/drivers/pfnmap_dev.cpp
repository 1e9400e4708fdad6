// pinlab — "/dev/pfnmap": a device whose mmap maps its buffer with
// remap_pfn_range(), as perf's ring buffer or a frame buffer does: the VMA is
// VM_IO|VM_PFNMAP and every PTE is special, so GUP must refuse it.
#include "drivers/dev_buffer.h"
#include "drivers/devices.h"
#include "fs/file.h"
#include "mm/internal.h"

namespace pl {

namespace {

const PrepopulatedVmOps kVmOps("pfnmap");

class PfnmapFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        auto* buf = static_cast<DevBuffer*>(f.private_data);
        PL_TRY(buf->check_range(vma.pgoff, vma.nr_pages()));
        vma.ops = &kVmOps;
        pfn_t base = buf->kernel->mem->page_to_pfn(buf->folio->head()) + vma.pgoff;
        return remap_pfn_range(vma, vma.start, base, vma.end - vma.start);
    }
};

const PfnmapFops kFops;

}  // namespace

Result<File*> pfnmap_dev_open(Kernel& k) { return dev_buffer_open(k, kFops, "/dev/pfnmap"); }

}  // namespace pl
