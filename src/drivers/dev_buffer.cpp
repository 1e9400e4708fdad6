#include "drivers/dev_buffer.h"

#include "drivers/devices.h"
#include "fs/file.h"
#include "fs/inode.h"

namespace pl {

Result<DevBuffer*> DevBuffer::create(Kernel& k, unsigned order) {
    PL_TRY_ASSIGN(Folio * f, k.mem->alloc_folio(order, GFP_KERNEL | __GFP_COMP));
    k.ref_note(f, 1);
    auto* b = new DevBuffer;
    b->kernel = &k;
    b->folio = f;
    return b;
}

void DevBuffer::release(void* self) {
    auto* b = static_cast<DevBuffer*>(self);
    b->kernel->ref_note(b->folio, -1);
    b->kernel->mem->folio_put(b->folio);
    delete b;
}

Status DevBuffer::check_range(pgoff_t pgoff, unsigned long nr) const {
    if (pgoff + nr < pgoff || pgoff + nr > nr_pages()) return Error(EINVAL);
    return ok_status();
}

Result<File*> dev_buffer_open(Kernel& k, const FileOperations& fops, const char* name) {
    PL_TRY_ASSIGN(DevBuffer * buf, DevBuffer::create(k, kDevBufferOrder));
    Inode* inode = k.inode_new(FsKind::Device);
    auto* f = new File(inode, &fops, name);
    f->private_data = buf;
    f->private_release = &DevBuffer::release;
    return f;
}

}  // namespace pl
