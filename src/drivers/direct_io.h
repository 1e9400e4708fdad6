// pinlab — O_DIRECT reads and writes of a disk file: iomap_dio_rw()
// (fs/iomap/direct-io.c) with its one bio, bio_iov_iter_get_pages() and
// bio_release_pages() (block/bio.c), iov_iter_extract_pages() of a user
// buffer (lib/iov_iter.c). The C API is in pinlab/kapi.h.
#pragma once

#include <vector>

struct page;

namespace pl {

class Kernel;
class File;

enum class DioDir { Read, Write };

// struct iomap_dio and its bio: the pinned user pages of [addr, addr + len)
// and the file range they move to or from when the "device" runs.
struct Dio {
    Kernel* kernel = nullptr;
    File* file = nullptr;         // holds a reference until completion
    DioDir dir = DioDir::Read;
    unsigned long addr = 0;       // user address (first byte)
    unsigned long len = 0;        // bytes the bio moves
    unsigned long pos = 0;        // file offset
    unsigned long result = 0;     // what completion returns (a read is clamped to EOF)
    bool pinned = true;           // FOLL_PIN (v6.3 on), else FOLL_GET references
    std::vector<page*> pages;     // one pin (or reference) each; NULL: a page only holes land in
    std::vector<page*> again;     // second pins of pages that straddle an extent boundary
    // Read: file pages [pos >> PAGE_SHIFT, ...] that were holes at submission
    // (iomap_dio_hole_iter() zeroed their bytes then, without GUP).
    std::vector<bool> holes;
};

// The logical block size of the model's block devices: what O_DIRECT
// offsets, lengths and buffer addresses must be aligned to.
inline constexpr unsigned long kDioBlockSize = 512;

}  // namespace pl
