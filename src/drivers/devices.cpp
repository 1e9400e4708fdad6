#include "drivers/devices.h"

namespace pl {

Result<File*> dev_open(Kernel& k, std::string_view name) {
    if (name == "pfnmap") return pfnmap_dev_open(k);
    if (name == "mixedmap") return mixedmap_dev_open(k);
    if (name == "iomem") return iomem_dev_open(k);
    return Error(ENODEV);
}

}  // namespace pl
