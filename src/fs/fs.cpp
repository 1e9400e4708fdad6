// pinlab — the file entry points of the C API (open/creat, pread, pwrite,
// ftruncate, fallocate, fsync), dispatched per file system as the VFS
// dispatches through file_operations.
#include "fs/fs.h"

#include <string>

#include "fs/file.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "kernel/kernel.h"

namespace pl {

namespace {

const FileOperations* fops_for(FsKind fs) {
    switch (fs) {
    case FsKind::Ext4:
    case FsKind::Xfs:
    case FsKind::Btrfs: return &disk_file_operations(fs);
    case FsKind::Tmpfs:
    case FsKind::Memfd: return &shmem_file_operations();
    case FsKind::MemfdHugetlb:
    case FsKind::Hugetlbfs: return &hugetlbfs_file_operations();
    case FsKind::Fsdax: return &dax_file_operations();
    case FsKind::Secretmem: return &secretmem_file_operations();
    case FsKind::Device: break;
    }
    return nullptr;
}

bool is_disk(const Inode& inode) { return inode.traits().writeback && !inode.traits().dax; }

}  // namespace

Result<File*> file_create(Kernel& k, FsKind fs, uint64_t size) {
    const FileOperations* fops = fops_for(fs);
    if (!fops) return Error(EINVAL);
    if (size > MAX_FILE_SIZE) return Error(EFBIG);
    if (fs_traits(fs).hugetlb) size = (size + PMD_SIZE - 1) & PMD_MASK;
    Inode* inode = k.inode_new(fs);
    if (fs_traits(fs).hugetlb) inode->huge_size = HugeSize::Size2M;
    inode->size.store(size);
    std::string name = std::string(fs_traits(fs).name) + ":" + std::to_string(inode->ino);
    return new File(inode, fops, std::move(name));
}

Result<uint64_t> file_pread(File& f, void* buf, uint64_t len, uint64_t off) {
    Inode* inode = f.inode;
    if (!inode || inode->fs == FsKind::Device) return Error(EINVAL);
    if (len && !buf) return Error(EFAULT);
    const FsTraits& t = inode->traits();
    if (t.secretmem) return Error(EINVAL);  // no ->read_iter
    if (t.hugetlb) return hugetlbfs_read(*inode, buf, len, off);
    if (t.dax) return dax_read(*inode, buf, len, off);
    return filemap_read(*inode, buf, len, off);
}

Result<uint64_t> file_pwrite(File& f, const void* buf, uint64_t len, uint64_t off) {
    Inode* inode = f.inode;
    if (!inode || inode->fs == FsKind::Device) return Error(EINVAL);
    if (len && !buf) return Error(EFAULT);
    const FsTraits& t = inode->traits();
    if (t.secretmem || t.hugetlb) return Error(EINVAL);  // no ->write_iter
    if (t.dax) return dax_write(*inode, buf, len, off);
    return filemap_write(*inode, buf, len, off);
}

Status file_truncate(File& f, uint64_t size) {
    if (!f.inode || f.inode->fs == FsKind::Device) return Error(EINVAL);
    return inode_truncate(*f.inode, size);
}

Status file_fallocate(File& f, int mode, uint64_t off, uint64_t len) {
    if (!f.inode || f.inode->fs == FsKind::Device) return Error(ENODEV);
    return inode_fallocate(*f.inode, mode, off, len);
}

Status file_fsync(File& f) {
    Inode* inode = f.inode;
    if (!inode || inode->fs == FsKind::Device) return Error(EINVAL);
    if (inode->traits().dax) {
        dax_writeback(*inode);
        return ok_status();
    }
    if (is_disk(*inode)) return filemap_write_and_wait(*inode);
    if (inode->traits().secretmem) return Error(EINVAL);  // secretmem has no ->fsync: vfs_fsync() says EINVAL
    return ok_status();  // shmem, hugetlbfs: nothing to write back
}

Result<uint64_t> file_read_disk(File& f, void* buf, uint64_t len, uint64_t off) {
    Inode* inode = f.inode;
    if (!inode) return Error(EOPNOTSUPP);
    if (len && !buf) return Error(EFAULT);
    if (inode->traits().dax) return dax_read(*inode, buf, len, off);
    if (is_disk(*inode)) return disk_read(*inode, buf, len, off);
    return Error(EOPNOTSUPP);
}

}  // namespace pl
