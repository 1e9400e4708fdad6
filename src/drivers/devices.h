// pinlab — character devices reachable through pl_dev_open().
#pragma once

#include <string_view>

#include "base/result.h"

namespace pl {

class Kernel;
class File;

// Opens a device by name: "pfnmap" or "mixedmap". -ENODEV for others.
Result<File*> dev_open(Kernel& k, std::string_view name);

// The devices themselves (one file each).
Result<File*> pfnmap_dev_open(Kernel& k);
Result<File*> mixedmap_dev_open(Kernel& k);

// Size of each device's buffer.
inline constexpr unsigned kDevBufferOrder = 8;  // 1 MiB

}  // namespace pl
