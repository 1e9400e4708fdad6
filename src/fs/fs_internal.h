// pinlab — private interfaces between the file systems (src/fs) and the page
// cache code (mm/filemap.cpp, mm/shmem.cpp, mm/secretmem.cpp,
// mm/truncate.cpp, mm/page_writeback.cpp). Not for use outside those files.
#pragma once

#include <algorithm>
#include <cstdint>

#include "base/result.h"
#include "fs/fs_type.h"
#include "mm/vm_flags.h"
#include "mm/physmem.h"

namespace pl {

class Inode;
class AddressSpace;
class FileOperations;
class VmOperations;
class Folio;

// fallocate() modes.
inline constexpr int FALLOC_FL_KEEP_SIZE = 0x01;
inline constexpr int FALLOC_FL_PUNCH_HOLE = 0x02;

// The largest file the model accepts (MAX_LFS_FILESIZE).
inline constexpr uint64_t MAX_FILE_SIZE = (1ULL << 62);

inline constexpr pgoff_t size_to_pages(uint64_t size) { return (size + PAGE_SIZE - 1) >> PAGE_SHIFT; }

// The part of [off, off + len) below EOF: what a read may return.
inline uint64_t clamp_to_eof(uint64_t size, uint64_t off, uint64_t len) {
    return off >= size ? 0 : std::min(len, size - off);
}

// One piece of a byte range that lies inside a single page.
struct PageChunk {
    pgoff_t index;    // page index in the file
    unsigned offset;  // offset in that page
    unsigned len;     // bytes in this piece
    uint64_t done;    // bytes of the range before this piece
};

// Calls fn(chunk) for each page-sized piece of [off, off + len) in order; fn
// returns false to stop. Returns the bytes of the pieces fn accepted.
template <typename Fn>
uint64_t for_each_page_chunk(uint64_t off, uint64_t len, Fn&& fn) {
    uint64_t done = 0;
    while (done < len) {
        uint64_t pos = off + done;
        PageChunk c{pos >> PAGE_SHIFT, static_cast<unsigned>(pos & ~PAGE_MASK), 0, done};
        c.len = static_cast<unsigned>(std::min<uint64_t>(PAGE_SIZE - c.offset, len - done));
        if (!fn(c)) break;
        done += c.len;
    }
    return done;
}

// ---- fs/inode.cpp ---------------------------------------------------------------------
// The folio covering `index` with a reference, and its first index; null if none.
Folio* mapping_get_folio(AddressSpace& m, pgoff_t index, pgoff_t* first);

// ---- fs/disk_fs.cpp -------------------------------------------------------------------
const FileOperations& disk_file_operations(FsKind fs);

// ---- fs/dax.cpp -------------------------------------------------------------------------
const FileOperations& dax_file_operations();
Result<uint64_t> dax_read(Inode& inode, void* buf, uint64_t len, uint64_t off);
Result<uint64_t> dax_write(Inode& inode, const void* buf, uint64_t len, uint64_t off);
// The block (page) of `index` with a reference; allocated when `alloc`.
// 0 or VM_FAULT_OOM / VM_FAULT_SIGBUS (no block and !alloc).
vm_fault_t dax_get_block(Inode& inode, pgoff_t index, bool alloc, Folio** out);
// Zeroes [from, to) (bytes, within allocated blocks only).
void dax_zero_range(Inode& inode, uint64_t from, uint64_t to);
// Frees the blocks of [first, last) (page indices).
void dax_free_blocks(Inode& inode, pgoff_t first, pgoff_t last);
// fsync: write-protects and cleans the dirty blocks' shared mappings.
void dax_writeback(Inode& inode);
// Inode teardown: frees every block and, when nothing else holds one, the pgmap.
void dax_inode_teardown(Inode& inode);

// ---- mm/filemap.cpp ---------------------------------------------------------------------
// How a missing folio is created.
enum class CreateMode : uint8_t {
    Fault,     // within EOF, under invalidate_lock (shared), which it takes itself
    Write,     // caller holds i_rwsem for write: may lie beyond EOF, no EOF check
    Locked,    // caller holds invalidate_lock for write (truncate's partial pages)
};
// Finds or creates the page-cache folio at index of a page-cache inode
// (disk, shmem, secretmem), with a reference. `major` (optional) is set when
// the folio had to be read from the backing store.
// 0, VM_FAULT_SIGBUS (beyond EOF), VM_FAULT_OOM.
vm_fault_t filemap_get_or_create(Inode& inode, pgoff_t index, CreateMode mode, Folio** out, bool* major = nullptr);
Result<uint64_t> filemap_read(Inode& inode, void* buf, uint64_t len, uint64_t off);
Result<uint64_t> filemap_write(Inode& inode, const void* buf, uint64_t len, uint64_t off);
Result<uint64_t> hugetlbfs_read(Inode& inode, void* buf, uint64_t len, uint64_t off);
Result<uint64_t> disk_read(Inode& inode, void* buf, uint64_t len, uint64_t off);
// The filemap vm_operations of a disk file system (has page_mkwrite).
const VmOperations& filemap_vm_ops(FsKind fs);

// ---- mm/shmem.cpp -----------------------------------------------------------------------
const FileOperations& shmem_file_operations();
// A zeroed, swap-backed folio for index (GFP_HIGHUSER_MOVABLE).
Result<Folio*> shmem_alloc_folio(Inode& inode);
// fallocate(mode 0) on shmem: preallocates the pages of [off, off+len).
Status shmem_fallocate(Inode& inode, uint64_t off, uint64_t len);

// ---- mm/secretmem.cpp ---------------------------------------------------------------------
const FileOperations& secretmem_file_operations();
Result<Folio*> secretmem_alloc_folio(Inode& inode);

// ---- mm/truncate.cpp ----------------------------------------------------------------------
Status inode_truncate(Inode& inode, uint64_t size);
Status inode_fallocate(Inode& inode, int mode, uint64_t off, uint64_t len);
// Removes every folio of the page cache (inode teardown).
void truncate_inode_pages_final(Inode& inode);

// ---- mm/page_writeback.cpp ----------------------------------------------------------------
// filemap_write_and_wait(): writes back every dirty folio.
Status filemap_write_and_wait(Inode& inode);
// Clears PG_dirty of a folio (truncation or writeback), with the accounting.
// Returns whether it was dirty.
bool folio_clear_dirty_accounted(Folio* folio);

}  // namespace pl
