#include "scenario/commands.h"

namespace pl::scenario {
namespace {

using A = Arg;
constexpr Arg kMmap[] = {A::Int, A::Prot, A::Share, A::Backing};
constexpr Arg kAddrLen[] = {A::Int, A::Int};
constexpr Arg kAddrLenProt[] = {A::Int, A::Int, A::Prot};
constexpr Arg kAddrLenInt[] = {A::Int, A::Int, A::Int};
constexpr Arg kMremap[] = {A::Int, A::Int, A::Int, A::Int};
constexpr Arg kWrite[] = {A::Int, A::Data};
constexpr Arg kAddr[] = {A::Int};
constexpr Arg kOpen[] = {A::Str, A::Int};
constexpr Arg kFileOffStr[] = {A::File, A::Int, A::Str};
constexpr Arg kFileOffLen[] = {A::File, A::Int, A::Int};
constexpr Arg kFile[] = {A::File};
constexpr Arg kFileInt[] = {A::File, A::Int};
constexpr Arg kGup[] = {A::Int, A::Int, A::Int};
constexpr Arg kPage[] = {A::Page};
constexpr Arg kPagesN[] = {A::Pages, A::Int};
constexpr Arg kPagesDirtyN[] = {A::Pages, A::Bool, A::Int};
constexpr Arg kPageNDirty[] = {A::Page, A::Int, A::Bool};
constexpr Arg kPages[] = {A::Pages};
constexpr Arg kPageN[] = {A::Page, A::Int};
constexpr Arg kAddrInt[] = {A::Int, A::Int};
constexpr Arg kDevRead[] = {A::Page, A::Int, A::Int};
constexpr Arg kDevWrite[] = {A::Page, A::Int, A::Str};

constexpr Option kMmapOpts[] = {{"at", true}, {"off", true}, {"populate", false}, {"fixed", false},
                                {"noreserve", false}, {"flags", true}};
constexpr Option kMremapOpts[] = {{"to", true}};

const CommandSpec kCommands[] = {
    {"mmap", Cmd::mmap, kMmap, 4, Type::Int, false, true, kMmapOpts,
     "mmap LEN PROT private|shared anon|shmem|memfd|hugetlb|file FS[:SIZE]|file F [at ADDR] [off N] [populate] "
     "[fixed] [noreserve] [flags MAP_...]"},
    {"munmap", Cmd::munmap, kAddrLen, 2, Type::Int, false, true, {}, "munmap ADDR LEN"},
    {"mprotect", Cmd::mprotect, kAddrLenProt, 3, Type::Int, false, true, {}, "mprotect ADDR LEN PROT"},
    {"madvise", Cmd::madvise, kAddrLenInt, 3, Type::Int, false, true, {}, "madvise ADDR LEN MADV_..."},
    {"mremap", Cmd::mremap, kMremap, 3, Type::Int, false, true, kMremapOpts,
     "mremap ADDR OLD_LEN NEW_LEN [MREMAP_...] [to ADDR]"},
    {"write", Cmd::write, kWrite, 2, Type::Int, false, true, {}, "write ADDR \"bytes\" | write ADDR fill BYTE LEN"},
    {"read", Cmd::read, kAddrLen, 2, Type::Any, false, true, {}, "read ADDR LEN"},
    {"memset", Cmd::memset, kAddrLenInt, 3, Type::Int, false, true, {}, "memset ADDR BYTE LEN"},
    {"migrate", Cmd::migrate, kAddr, 1, Type::Int, false, true, {}, "migrate ADDR"},
    {"compact", Cmd::compact, {}, 0, Type::Int, false, false, {}, "compact"},
    {"open", Cmd::open, kOpen, 2, Type::File, false, false, {}, "open FS SIZE   (FS: ext4 xfs btrfs tmpfs memfd ...)"},
    {"pwrite", Cmd::pwrite, kFileOffStr, 3, Type::Int, false, false, {}, "pwrite F OFF \"bytes\""},
    {"pread", Cmd::pread, kFileOffLen, 3, Type::Any, false, false, {}, "pread F OFF LEN"},
    {"fsync", Cmd::fsync, kFile, 1, Type::Int, false, false, {}, "fsync F"},
    {"ftruncate", Cmd::ftruncate, kFileInt, 2, Type::Int, false, false, {}, "ftruncate F SIZE"},
    {"read_disk", Cmd::read_disk, kFileOffLen, 3, Type::Any, false, false, {}, "read_disk F OFF LEN"},
    {"get_user_pages", Cmd::get_user_pages, kGup, 3, Type::Int, true, true, {}, "get_user_pages ADDR NR FLAGS [-> P]"},
    {"get_user_pages_fast", Cmd::get_user_pages_fast, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_fast ADDR NR FLAGS [-> P]"},
    {"get_user_pages_fast_only", Cmd::get_user_pages_fast_only, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_fast_only ADDR NR FLAGS [-> P]"},
    {"get_user_pages_unlocked", Cmd::get_user_pages_unlocked, kGup, 3, Type::Int, true, true, {},
     "get_user_pages_unlocked ADDR NR FLAGS [-> P]"},
    {"get_user_pages_remote", Cmd::get_user_pages_remote, kGup, 3, Type::Int, true, true, {},
     "T: get_user_pages_remote ADDR NR FLAGS [-> P]   (T's mm)"},
    {"pin_user_pages", Cmd::pin_user_pages, kGup, 3, Type::Int, true, true, {}, "pin_user_pages ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_fast", Cmd::pin_user_pages_fast, kGup, 3, Type::Int, true, true, {},
     "pin_user_pages_fast ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_unlocked", Cmd::pin_user_pages_unlocked, kGup, 3, Type::Int, true, true, {},
     "pin_user_pages_unlocked ADDR NR FLAGS [-> P]"},
    {"pin_user_pages_remote", Cmd::pin_user_pages_remote, kGup, 3, Type::Int, true, true, {},
     "T: pin_user_pages_remote ADDR NR FLAGS [-> P]   (T's mm)"},
    {"unpin_user_page", Cmd::unpin_user_page, kPage, 1, Type::Int, false, false, {}, "unpin_user_page P[i]"},
    {"unpin_user_pages", Cmd::unpin_user_pages, kPagesN, 1, Type::Int, false, false, {}, "unpin_user_pages P [N]"},
    {"unpin_user_pages_dirty_lock", Cmd::unpin_user_pages_dirty_lock, kPagesDirtyN, 2, Type::Int, false, false, {},
     "unpin_user_pages_dirty_lock P dirty|clean [N]"},
    {"unpin_user_page_range_dirty_lock", Cmd::unpin_user_page_range_dirty_lock, kPageNDirty, 3, Type::Int, false,
     false, {}, "unpin_user_page_range_dirty_lock P[i] N dirty|clean"},
    {"unpin_folio", Cmd::unpin_folio, kPage, 1, Type::Int, false, false, {}, "unpin_folio P[i]   (its folio)"},
    {"unpin_user_folio", Cmd::unpin_user_folio, kPageN, 2, Type::Int, false, false, {},
     "unpin_user_folio P[i] N   (N pins of its folio)"},
    {"folio_add_pin", Cmd::folio_add_pin, kPage, 1, Type::Int, false, false, {}, "folio_add_pin P[i]"},
    {"folio_add_pins", Cmd::folio_add_pins, kPageN, 2, Type::Int, false, false, {}, "folio_add_pins P[i] N"},
    {"get_dump_page", Cmd::get_dump_page, kAddr, 1, Type::Int, true, true, {},
     "get_dump_page ADDR [-> P]   (1: a page, 0: a hole)"},
    {"fixup_user_fault", Cmd::fixup_user_fault, kAddrInt, 2, Type::Int, false, true, {},
     "fixup_user_fault ADDR FAULT_FLAG_..."},
    {"put_user_page", Cmd::put_user_page, kPage, 1, Type::Int, false, false, {}, "put_user_page P[i]   (era v5.3, v5.5)"},
    {"put_user_pages", Cmd::put_user_pages, kPagesN, 1, Type::Int, false, false, {}, "put_user_pages P [N]"},
    {"put_user_pages_dirty_lock", Cmd::put_user_pages_dirty_lock, kPagesDirtyN, 2, Type::Int, false, false, {},
     "put_user_pages_dirty_lock P dirty|clean [N]"},
    {"put_page", Cmd::put_page, kPages, 1, Type::Int, false, false, {}, "put_page P[i] | put_page P (each page)"},
    {"get_page", Cmd::get_page, kPage, 1, Type::Int, false, false, {}, "get_page P[i]"},
    {"set_page_dirty_lock", Cmd::set_page_dirty_lock, kPage, 1, Type::Int, false, false, {},
     "set_page_dirty_lock P[i]"},
    {"device_read", Cmd::device_read, kDevRead, 3, Type::Any, false, false, {}, "device_read P[i] OFF LEN"},
    {"device_write", Cmd::device_write, kDevWrite, 3, Type::Int, false, false, {}, "device_write P[i] OFF \"bytes\""},
};

}  // namespace

const CommandSpec* find_command(std::string_view name) {
    for (const CommandSpec& c : kCommands)
        if (c.name == name) return &c;
    return nullptr;
}

std::span<const CommandSpec> all_commands() { return kCommands; }

}  // namespace pl::scenario
