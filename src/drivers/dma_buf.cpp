// pinlab — dma-buf files (upstream drivers/dma-buf/dma-buf.c: dma_buf_export(),
// dma_buf_mmap_internal(), dma_buf_release()), with the two never-merged
// lockdowns of seed 003 behind config switches.
#include "drivers/dma_buf.h"

#include "fs/file.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/vma.h"

namespace pl {

namespace {

// dma_buf_fops: ->mmap is dma_buf_mmap_internal().
class DmaBufFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override;
};

const DmaBufFops kDmaBufFops;

// dma_buf_release() (the dentry's d_release, i.e. the file's last fput()):
// the exporter frees its buffer.
void dma_buf_release(void* self) {
    auto* buf = static_cast<DmaBuf*>(self);
    buf->ops->release(*buf);
    delete buf;
}

Status DmaBufFops::mmap(File& f, Vma& vma) const {
    DmaBuf* buf = dma_buf_of_file(&f);
    if (!buf) return Error(EINVAL);  // is_dma_buf_file()
    // "check for overflowing the buffer's size": the mapping must lie inside
    // the buffer (written so that a huge pgoff cannot wrap).
    const uint64_t buf_pages = buf->size >> PAGE_SHIFT;
    if (vma.pgoff > buf_pages || vma.nr_pages() > buf_pages - vma.pgoff) return Error(EINVAL);
    Kernel& k = *buf->kernel;
    // Seed 003 thread (Thomas Hellström, Jason Gunthorpe, Christian König):
    // COW mappings of device buffers make no sense and break VM_PFNMAP's
    // linear-pfn rule; refuse them as is_cow_mapping() (RDMA's
    // ib_core_uverbs tests !VM_SHARED, the same for mmap(2)'s flags).
    if (k.cfg.dmabuf_refuse_private && vma.is_cow_mapping()) return Error(EINVAL);
    Status ret = buf->ops->mmap(*buf, vma);
    // Seed 003 ("dma-buf: Require VM_PFNMAP vma for mmap"): the patch WARNs
    // after the exporter's mmap, whatever it returned, and still returns the
    // exporter's result: it reports, it does not refuse.
    if (k.cfg.dmabuf_require_pfnmap && !(vma.flags & VM_PFNMAP))
        k.warn("dma_buf_mmap_internal", "dma-buf: exporter " + buf->exp_name + " mmap did not set VM_PFNMAP");
    return ret;
}

}  // namespace

Result<File*> dma_buf_export(Kernel& k, const DmaBufOps& ops, const std::string& exp_name, uint64_t size, void* priv) {
    if (size == 0 || (size & (PAGE_SIZE - 1))) return Error(EINVAL);
    auto* buf = new DmaBuf;
    buf->kernel = &k;
    buf->size = size;
    buf->exp_name = exp_name;
    buf->ops = &ops;
    buf->priv = priv;
    // dma_buf_getfile(): an anonymous inode of the dmabuf pseudo file system;
    // the model's device inode has no page cache either.
    Inode* inode = k.inode_new(FsKind::Device);
    inode->size.store(size);
    auto* f = new File(inode, &kDmaBufFops, "dmabuf:" + exp_name);
    f->private_data = buf;
    f->private_release = &dma_buf_release;
    buf->file = f;
    return f;
}

DmaBuf* dma_buf_of_file(File* f) {
    if (!f || f->fops != &kDmaBufFops) return nullptr;
    return static_cast<DmaBuf*>(f->private_data);
}

}  // namespace pl
