// pinlab — character devices reachable through pl_dev_open().
#pragma once

#include <string_view>

#include "base/result.h"

namespace pl {

class Kernel;
class File;

// Opens a device by name: "pfnmap", "mixedmap" or "iomem". -ENODEV for others.
Result<File*> dev_open(Kernel& k, std::string_view name);

// The devices themselves (one file each).
Result<File*> pfnmap_dev_open(Kernel& k);
Result<File*> mixedmap_dev_open(Kernel& k);
Result<File*> iomem_dev_open(Kernel& k);  // I/O memory, no struct pages (videobuf2 tests)

// Size of each device's buffer.
inline constexpr unsigned kDevBufferOrder = 8;  // 1 MiB

}  // namespace pl
