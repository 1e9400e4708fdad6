// pinlab — a pipe filled by vmsplice(): the pipe buffers hold references
// (FOLL_GET) to user pages until a reader consumes them (fs/splice.c
// vmsplice_to_pipe(), iter_to_pipe(); fs/pipe.c pipe_read()). The C API is in
// pinlab/kapi.h.
#pragma once

#include <deque>

#include "base/sync/rwsem.h"

struct page;

namespace pl {

class Kernel;

// struct pipe_buffer with user_page_pipe_buf_ops: a page reference and the
// bytes of it not yet read.
struct PipeBuffer {
    page* pg = nullptr;
    unsigned offset = 0;
    unsigned len = 0;
};

// struct pipe_inode_info, reduced to its ring of buffers.
struct Pipe {
    static constexpr unsigned kDefBuffers = 16;  // PIPE_DEF_BUFFERS
    Kernel* kernel = nullptr;
    sync::Rwsem mutex;  // pipe->mutex (pipe_lock()): write side only
    std::deque<PipeBuffer> bufs PL_GUARDED_BY(mutex);
};

}  // namespace pl
