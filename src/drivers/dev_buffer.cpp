#include "drivers/dev_buffer.h"

namespace pl {

Result<DevBuffer*> DevBuffer::create(Kernel& k, unsigned order) {
    PL_TRY_ASSIGN(Folio * f, k.mem->alloc_folio(order, GFP_KERNEL | __GFP_COMP));
    k.ref_note(f, 1);
    auto* b = new DevBuffer;
    b->kernel = &k;
    b->folio = f;
    return b;
}

void DevBuffer::release(void* self) {
    auto* b = static_cast<DevBuffer*>(self);
    b->kernel->ref_note(b->folio, -1);
    b->kernel->mem->folio_put(b->folio);
    delete b;
}

}  // namespace pl
