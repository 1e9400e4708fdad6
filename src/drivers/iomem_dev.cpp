// pinlab — "/dev/iomem": a device whose mmap maps its I/O memory (a PCI BAR
// or a frame buffer's VRAM aperture: pfns without a struct page) with
// io_remap_pfn_range(), the "buffer from another device" that videobuf2's
// USERPTR path reached through raw PFNs. The VMA is VM_IO|VM_PFNMAP and
// pfn_valid() fails for every frame.
#include "drivers/devices.h"
#include "drivers/dev_buffer.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "mm/internal.h"
#include "mm/physmem.h"

namespace pl {

namespace {

// The device's aperture: allocated at open, returned at release.
struct IomemAperture {
    Kernel* kernel = nullptr;
    pfn_t base = 0;
    unsigned long nr = 0;

    static void release(void* self) {
        auto* a = static_cast<IomemAperture*>(self);
        a->kernel->mem->iomem_free(a->base, a->nr);
        delete a;
    }
};

const PrepopulatedVmOps kVmOps("iomem");

class IomemFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        auto* a = static_cast<IomemAperture*>(f.private_data);
        if (vma.pgoff + vma.nr_pages() < vma.pgoff || vma.pgoff + vma.nr_pages() > a->nr) return Error(EINVAL);
        vma.ops = &kVmOps;
        return remap_pfn_range(vma, vma.start, a->base + vma.pgoff, vma.end - vma.start);
    }
};

const IomemFops kFops;

}  // namespace

Result<File*> iomem_dev_open(Kernel& k) {
    const unsigned long nr = 1UL << kDevBufferOrder;
    PL_TRY_ASSIGN(pfn_t base, k.mem->iomem_alloc(nr));
    auto* a = new IomemAperture;
    a->kernel = &k;
    a->base = base;
    a->nr = nr;
    auto* f = new File(k.inode_new(FsKind::Device), &kFops, "/dev/iomem");
    f->private_data = a;
    f->private_release = &IomemAperture::release;
    return f;
}

}  // namespace pl
