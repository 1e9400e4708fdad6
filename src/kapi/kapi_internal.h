// pinlab — what the C API (src/kapi/kapi.cpp) shares with C entry points that
// are defined next to the model code they drive (src/gup/put_user_page.cpp,
// src/gup/frame_vector.cpp): the page → kernel registry and pl_last_error().
#pragma once

#include <string>

namespace pl {

class Kernel;
struct Page;

// The live kernel (made by pl_kernel_new()) whose memory holds `p`; null if none.
Kernel* kapi_kernel_of_page(const Page* p);

// pl_last_error() of the calling thread.
void kapi_set_error(std::string what);
void kapi_clear_error();

}  // namespace pl
