// pinlab — dma-buf: a buffer shared between devices, handed to userspace as a
// file whose mmap goes to the exporter (upstream drivers/dma-buf/dma-buf.c).
//
// Only what GUP can observe is modelled: the file, dma_buf_mmap_internal()'s
// checks and the exporter's ->mmap/->release. Attachments, sg tables, fences
// and reservation objects are not.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace pl {

class Kernel;
class File;
class Vma;
class DmaBuf;

// struct dma_buf_ops, reduced to the operations userspace reaches.
class DmaBufOps {
public:
    virtual ~DmaBufOps() = default;
    // ->mmap: called by dma_buf_mmap_internal() after its bounds check.
    virtual Status mmap(DmaBuf& buf, Vma& vma) const = 0;
    // ->release: the last reference to the dma-buf went (dma_buf_release()).
    virtual void release(DmaBuf& buf) const = 0;
    // The device's access to the buffer's backing store (a DMA engine, or the
    // exporter's vmap), byte offset `off`. -EINVAL outside the buffer.
    virtual Status device_access(DmaBuf& buf, uint64_t off, void* data, uint64_t len, bool write) const = 0;
};

// struct dma_buf
class DmaBuf {
public:
    Kernel* kernel = nullptr;
    uint64_t size = 0;               // bytes, page aligned (dma_heap_buffer_alloc() aligns)
    std::string exp_name;            // exporter name ("system", "cma", ...), for WARNs
    const DmaBufOps* ops = nullptr;
    void* priv = nullptr;            // the exporter's buffer
    File* file = nullptr;            // dmabuf->file: not a counted reference (the file owns the dma-buf)
};

// dma_buf_export() + dma_buf_fd(): a dma-buf file of `size` bytes. The file
// holds the dma-buf; its last fput() calls ops->release(). The returned file
// reference is the caller's (the "fd").
Result<File*> dma_buf_export(Kernel& k, const DmaBufOps& ops, const std::string& exp_name, uint64_t size, void* priv);

// is_dma_buf_file(): the dma-buf behind `f`, or null if `f` is not one.
DmaBuf* dma_buf_of_file(File* f);

}  // namespace pl
