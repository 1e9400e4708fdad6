// pinlab — "/dev/pfnmap": a device whose mmap maps its buffer with
// remap_pfn_range(), as perf's ring buffer or a frame buffer does: the VMA is
// VM_IO|VM_PFNMAP and every PTE is special, so GUP must refuse it.
#include "drivers/dev_buffer.h"
#include "drivers/devices.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

namespace {

class PfnmapVmOps final : public VmOperations {
public:
    const char* name() const override { return "pfnmap"; }
    // Everything is mapped at mmap time; a fault means an access outside it.
    vm_fault_t fault(VmFault&) const override { return VM_FAULT_SIGBUS; }
};

const PfnmapVmOps kVmOps;

class PfnmapFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        auto* buf = static_cast<DevBuffer*>(f.private_data);
        if (vma.pgoff + vma.nr_pages() > buf->nr_pages() || vma.pgoff + vma.nr_pages() < vma.pgoff)
            return Error(EINVAL);
        vma.ops = &kVmOps;
        pfn_t base = buf->kernel->mem->page_to_pfn(buf->folio->head()) + vma.pgoff;
        return remap_pfn_range(vma, vma.start, base, vma.end - vma.start);
    }
};

const PfnmapFops kFops;

}  // namespace

Result<File*> pfnmap_dev_open(Kernel& k) {
    PL_TRY_ASSIGN(DevBuffer * buf, DevBuffer::create(k, kDevBufferOrder));
    Inode* inode = k.inode_new(FsKind::Device);
    auto* f = new File(inode, &kFops, "/dev/pfnmap");
    f->private_data = buf;
    f->private_release = &DevBuffer::release;
    return f;
}

}  // namespace pl
