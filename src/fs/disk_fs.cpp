// pinlab — ext4, xfs and btrfs: page-cache file systems with a backing
// store and writeback. Their differences do not matter to GUP; each has its
// own file_operations and vm_operations objects (named after upstream's)
// whose fault is filemap_fault() and whose ->page_mkwrite dirties the folio
// after waiting for writeback (stable pages).
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/fs_internal.h"
#include "fs/inode.h"
#include "mm/vma.h"
#include "mm/vm_ops.h"

namespace pl {

namespace {

// ext4_file_mmap() / xfs_file_mmap() / btrfs_file_mmap() without DAX.
class DiskFileOps final : public FileOperations {
public:
    explicit DiskFileOps(FsKind fs) : fs_(fs) {}
    Status mmap(File&, Vma& vma) const override {
        vma.ops = &filemap_vm_ops(fs_);
        return ok_status();
    }

private:
    FsKind fs_;
};

}  // namespace

const FileOperations& disk_file_operations(FsKind fs) {
    static const DiskFileOps ext4(FsKind::Ext4), xfs(FsKind::Xfs), btrfs(FsKind::Btrfs);
    switch (fs) {
    case FsKind::Xfs: return xfs;
    case FsKind::Btrfs: return btrfs;
    default: return ext4;
    }
}

}  // namespace pl
