// pinlab — the error half of Result<T>: a positive Linux errno value.
//
// Inside the model every fallible function returns Result<T> (or Status); the
// kernel-style C API converts to the kernel's "negative errno" convention at
// the boundary (src/kapi).
#pragma once

#include <cerrno>
#include <string_view>

namespace pl {

// Kernel-internal errno values that <errno.h> does not define.
inline constexpr int ERESTARTSYS = 512;
inline constexpr int ENOTSUPP = 524;

struct Error {
    int errnum;  // positive, e.g. EFAULT

    constexpr explicit Error(int e) : errnum(e) {}
    constexpr int negative() const { return -errnum; }
    friend constexpr bool operator==(Error a, Error b) { return a.errnum == b.errnum; }
};

// "EFAULT", "EHWPOISON", ...; "E<number>" for values without a name.
std::string_view errno_name(int errnum);
// Inverse of errno_name; 0 when the name is unknown.
int errno_from_name(std::string_view name);

}  // namespace pl
