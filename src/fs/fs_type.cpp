#include "fs/fs_type.h"

#include <array>

namespace pl {
namespace {

// name, writeback, mkwrite, shmem, hugetlb, dax, secretmem
constexpr std::array<FsTraits, 10> kTraits{{
    {"ext4", true, true, false, false, false, false},
    {"xfs", true, true, false, false, false, false},
    {"btrfs", true, true, false, false, false, false},
    {"tmpfs", false, false, true, false, false, false},
    {"memfd", false, false, true, false, false, false},
    {"memfd-hugetlb", false, false, false, true, false, false},
    {"hugetlbfs", false, false, false, true, false, false},
    {"fsdax", true, true, false, false, true, false},
    {"secretmem", false, false, false, false, false, true},
    {"device", false, false, false, false, false, false},
}};

}  // namespace

const FsTraits& fs_traits(FsKind k) { return kTraits[static_cast<size_t>(k)]; }

Result<FsKind> fs_kind_from_name(std::string_view name) {
    for (size_t i = 0; i < kTraits.size(); ++i)
        if (kTraits[i].name == name && static_cast<FsKind>(i) != FsKind::Device) return static_cast<FsKind>(i);
    return Error(EINVAL);
}

}  // namespace pl
