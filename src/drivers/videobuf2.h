// pinlab — videobuf2 USERPTR buffers (drivers/media/common/videobuf2/):
// a vb2 queue with V4L2_MEMORY_USERPTR buffers, QBUF/DQBUF (videobuf2-core.c
// vb2_core_qbuf(), __prepare_userptr(), vb2_core_dqbuf()), the three
// allocators' get_userptr/put_userptr (videobuf2-vmalloc.c,
// videobuf2-dma-contig.c, videobuf2-dma-sg.c) and vb2_create_framevec() /
// vb2_destroy_framevec() (videobuf2-memops.c) over the frame vectors of
// src/gup/frame_vector.cpp. The C API is in pinlab/kapi.h.
#pragma once

#include <deque>
#include <vector>

#include "base/sync/rwsem.h"
#include "base/units.h"

struct frame_vector;

namespace pl {

class Kernel;
class Task;

// struct vb2_mem_ops: which allocator backs the queue.
enum class Vb2Memops : int { Vmalloc = 0, DmaContig = 1, DmaSg = 2 };

// enum dma_data_direction of the queue: capture devices write memory
// (DMA_FROM_DEVICE), output devices read it (DMA_TO_DEVICE).
enum class DmaDir : int { FromDevice, ToDevice };

// Is the device behind an IOMMU that maps any page list contiguously?
enum class DevIommu : bool { No = false, Yes = true };

// enum vb2_buffer_state, reduced to what USERPTR streaming reaches.
enum class Vb2State { Dequeued, Queued, Done };

// What get_userptr made of the user range: the allocators' private buffer
// (vb2_vmalloc_buf / vb2_dc_buf / vb2_dma_sg_buf), reduced to what the
// device's DMA and put_userptr need.
struct Vb2UserBuf {
    frame_vector* vec = nullptr;  // from vb2_create_framevec()
    unsigned long offset = 0;     // offset of the user address in its first page
    unsigned long size = 0;
    // The kernel-side mapping kind, which decides how put_userptr undoes it:
    // pages (sg table / vm_map_ram: dirtied for capture) or raw I/O PFNs
    // (dma_map_resource / ioremap: nothing to dirty).
    bool via_pages = false;
};

// struct vb2_buffer with one plane.
struct Vb2Buffer {
    unsigned index = 0;
    Vb2State state = Vb2State::Dequeued;
    unsigned long userptr = 0;    // planes[0].m.userptr
    unsigned long length = 0;     // planes[0].length
    unsigned long bytesused = 0;
    Vb2UserBuf* mem = nullptr;    // planes[0].mem_priv (kept across DQBUF)
};

// struct vb2_queue (plus the video device's open file it hangs off).
struct Vb2Queue {
    Kernel* kernel = nullptr;
    Task* task = nullptr;              // the opener; null once it has exited
    Vb2Memops memops = Vb2Memops::Vmalloc;
    DmaDir dir = DmaDir::FromDevice;
    DevIommu iommu = DevIommu::No;
    unsigned long sizeimage = 0;       // the format's plane size: min_length
    sync::Rwsem lock;                  // vdev->lock (a mutex: write only)
    std::vector<Vb2Buffer> bufs;
    std::deque<unsigned> queued;       // queued_list, in QBUF order
    std::deque<unsigned> done;         // done_list, in completion order
};

}  // namespace pl
