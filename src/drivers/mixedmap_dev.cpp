// pinlab — "/dev/mixedmap": a device whose mmap inserts its buffer's pages
// with vm_insert_page(), as io_uring's ring mmap or an AF_PACKET ring do: the
// VMA is VM_MIXEDMAP and the PTEs are normal, so GUP can reach the pages.
#include "drivers/dev_buffer.h"
#include "drivers/devices.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "mm/internal.h"

namespace pl {

namespace {

class MixedmapVmOps final : public VmOperations {
public:
    const char* name() const override { return "mixedmap"; }
    vm_fault_t fault(VmFault&) const override { return VM_FAULT_SIGBUS; }
};

const MixedmapVmOps kVmOps;

class MixedmapFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        auto* buf = static_cast<DevBuffer*>(f.private_data);
        if (vma.pgoff + vma.nr_pages() > buf->nr_pages() || vma.pgoff + vma.nr_pages() < vma.pgoff)
            return Error(EINVAL);
        vma.ops = &kVmOps;
        vma.flags |= VM_MIXEDMAP | VM_DONTEXPAND;
        for (unsigned long i = 0; i < vma.nr_pages(); ++i)
            PL_TRY(vm_insert_page(vma, vma.start + (i << PAGE_SHIFT), buf->folio->page(vma.pgoff + i)));
        return ok_status();
    }
};

const MixedmapFops kFops;

}  // namespace

Result<File*> mixedmap_dev_open(Kernel& k) {
    PL_TRY_ASSIGN(DevBuffer * buf, DevBuffer::create(k, kDevBufferOrder));
    Inode* inode = k.inode_new(FsKind::Device);
    auto* f = new File(inode, &kFops, "/dev/mixedmap");
    f->private_data = buf;
    f->private_release = &DevBuffer::release;
    return f;
}

}  // namespace pl
