// pinlab — the file systems whose differences GUP cares about.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace pl {

enum class FsKind : uint8_t {
    Ext4,
    Xfs,
    Btrfs,
    Tmpfs,
    Memfd,
    MemfdHugetlb,
    Hugetlbfs,
    Fsdax,
    Secretmem,
    Device,  // a character device (drivers' mmap)
};

struct FsTraits {
    std::string_view name;
    bool writeback;   // dirty pages are written back to a backing store (mapping_can_writeback)
    bool mkwrite;     // vm_ops has page_mkwrite: shared writable mappings are dirty-tracked
    bool shmem;       // shmem/tmpfs semantics (swap-backed, no writeback)
    bool hugetlb;     // backed by hugetlb pages
    bool dax;         // S_DAX: mapped straight from ZONE_DEVICE pages, no page cache
    bool secretmem;   // memfd_secret
};

const FsTraits& fs_traits(FsKind k);
Result<FsKind> fs_kind_from_name(std::string_view name);

}  // namespace pl
