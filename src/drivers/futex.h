// pinlab — futex keys: get_futex_key() (kernel/futex/core.c), the one GUP
// user of the futex code. The C API is in pinlab/kapi.h.
#pragma once

#include <cstdint>

namespace pl {

// union futex_key, as its `both` view: the kernel object the futex lives in
// (an mm, or an inode's sequence number), the page in it, and the offset
// in the page with the FUT_OFF_* kind bits.
struct FutexKey {
    uintptr_t ptr = 0;
    unsigned long word = 0;
    unsigned offset = 0;

    bool operator==(const FutexKey&) const = default;  // match_futex()
};

inline constexpr unsigned FUT_OFF_INODE = 1;    // a file, shmem or shared anonymous page
inline constexpr unsigned FUT_OFF_MMSHARED = 2;  // an anonymous page of a shared futex

}  // namespace pl
