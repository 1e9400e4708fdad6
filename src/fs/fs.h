// pinlab — file-system operations behind the C API's files (read, write,
// truncate, fallocate, fsync) and the setup of internal files for shared
// anonymous and MAP_HUGETLB mappings.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "fs/fs_type.h"
#include "mm/physmem.h"

namespace pl {

class Kernel;
class File;
class Inode;
class Vma;
class FileOperations;
class VmOperations;

// ---- fs/*.cpp, mm/filemap.cpp, mm/shmem.cpp, mm/truncate.cpp ---------------------
// A new empty file of `size` bytes on file system `fs` (any FsKind but
// Device). hugetlb kinds round size up to the huge page size (2 MiB).
// Returns a File holding one reference.
Result<File*> file_create(Kernel& k, FsKind fs, uint64_t size);
// pread/pwrite through the page cache (fsdax: straight to its pages).
// Bytes transferred, or an error. Writes past EOF extend the file.
Result<uint64_t> file_pread(File& f, void* buf, uint64_t len, uint64_t off);
Result<uint64_t> file_pwrite(File& f, const void* buf, uint64_t len, uint64_t off);
// ftruncate()
Status file_truncate(File& f, uint64_t size);
// fallocate(): mode 0 or FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE.
Status file_fallocate(File& f, int mode, uint64_t off, uint64_t len);
// fsync(): write back every dirty folio.
Status file_fsync(File& f);
// The backing store's bytes (disk file systems and fsdax only; -EOPNOTSUPP else).
Result<uint64_t> file_read_disk(File& f, void* buf, uint64_t len, uint64_t off);
// shmem_zero_setup(): back a MAP_SHARED|MAP_ANONYMOUS VMA by a new tmpfs file.
Status shmem_zero_setup(Vma& vma);
// The vm_operations of shmem (tmpfs, memfd, shared anonymous).
const VmOperations& shmem_vm_ops();

// ---- mm/hugetlb.cpp, fs/hugetlbfs.cpp ------------------------------------------------
const FileOperations& hugetlbfs_file_operations();
// hugetlb_file_setup(): the internal hugetlbfs file behind MAP_HUGETLB|MAP_ANONYMOUS.
Result<File*> hugetlb_file_setup(Kernel& k, uint64_t size, HugeSize hs);
// Removes hugetlb folios of [first, last) (base-page indices) from the
// inode's page cache (unmapping them first) and gives back reservations.
void hugetlbfs_truncate_range(Inode& inode, pgoff_t first, pgoff_t last);
// fallocate(mode 0) on a hugetlb inode: allocate huge pages into the cache.
Status hugetlbfs_fallocate(Inode& inode, uint64_t off, uint64_t len);

}  // namespace pl
