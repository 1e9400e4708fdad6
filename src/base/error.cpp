#include "base/error.h"

#include <array>
#include <cstdio>
#include <utility>

namespace pl {
namespace {

constexpr std::array<std::pair<int, std::string_view>, 38> kNames{{
    {EPERM, "EPERM"},         {ENOENT, "ENOENT"},     {ESRCH, "ESRCH"},
    {EINTR, "EINTR"},         {EIO, "EIO"},           {ENXIO, "ENXIO"},
    {E2BIG, "E2BIG"},         {EBADF, "EBADF"},       {ECHILD, "ECHILD"},
    {EAGAIN, "EAGAIN"},       {ENOMEM, "ENOMEM"},     {EACCES, "EACCES"},
    {EFAULT, "EFAULT"},       {EBUSY, "EBUSY"},       {EEXIST, "EEXIST"},
    {ENODEV, "ENODEV"},       {EINVAL, "EINVAL"},     {ENFILE, "ENFILE"},
    {EMFILE, "EMFILE"},       {ETXTBSY, "ETXTBSY"},   {EFBIG, "EFBIG"},
    {ENOSPC, "ENOSPC"},       {ESPIPE, "ESPIPE"},     {EROFS, "EROFS"},
    {EMLINK, "EMLINK"},       {EPIPE, "EPIPE"},       {ERANGE, "ERANGE"},
    {ENOSYS, "ENOSYS"},       {EOVERFLOW, "EOVERFLOW"}, {EOPNOTSUPP, "EOPNOTSUPP"},
    {EREMOTEIO, "EREMOTEIO"}, {EHWPOISON, "EHWPOISON"}, {ENOTTY, "ENOTTY"},
    {ENODATA, "ENODATA"},     {ETIMEDOUT, "ETIMEDOUT"}, {ENOTSUPP, "ENOTSUPP"},
    {ERESTARTSYS, "ERESTARTSYS"}, {EDEADLK, "EDEADLK"},
}};

}  // namespace

std::string_view errno_name(int errnum) {
    for (const auto& [value, name] : kNames)
        if (value == errnum) return name;
    // Unknown values keep a stable spelling without allocating per call.
    static thread_local char buf[16];
    std::snprintf(buf, sizeof buf, "E%d", errnum);
    return buf;
}

int errno_from_name(std::string_view name) {
    for (const auto& [value, n] : kNames)
        if (n == name) return value;
    return 0;
}

}  // namespace pl
