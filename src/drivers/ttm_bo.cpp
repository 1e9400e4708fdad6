// pinlab — TTM-like buffer objects: backing allocation, moves, release and
// the C API (upstream drivers/gpu/drm/ttm/ttm_bo.c, ttm_pool.c,
// ttm_bo_util.c). The fault handler is in ttm_bo_vm.cpp.
#include "drivers/ttm_bo.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/handle_registry.h"
#include "debug/pin_tracker.h"
#include "fs/file.h"
#include "fs/inode.h"
#include "kapi/kapi_internal.h"
#include "mm/internal.h"
#include "mm/physmem.h"
#include "pinlab/kapi.h"

namespace pl {

namespace {

constexpr pfn_t kNoPfn = ~pfn_t{0};

HandleRegistry<File>& registry() {
    static HandleRegistry<File> r;
    return r;
}

void bo_file_release(void* self) { static_cast<TtmBo*>(self)->release(); }

unsigned floor_log2(unsigned long v) { return 63u - static_cast<unsigned>(__builtin_clzl(v)); }

// Model-side file operations: ->mmap only (ttm_bo_mmap_obj()).
class TtmBoFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        TtmBo* bo = static_cast<TtmBo*>(f.private_data);
        return ttm_bo_mmap(*bo, vma);
    }
};
const TtmBoFops kFops;

}  // namespace

Result<TtmBo*> TtmBo::create(Kernel& k, uint64_t size, TtmPlacement placement, TtmBoOptions opts) {
    if (size == 0 || size > (uint64_t{1} << 40)) return Error(EINVAL);
    const unsigned long nr = static_cast<unsigned long>((size + PAGE_SIZE - 1) >> PAGE_SHIFT);
    auto* bo = new TtmBo(k, nr, opts);
    auto chunks = bo->alloc_backing(placement);
    if (!chunks) {
        delete bo;
        return chunks.error();
    }
    bo->chunks_ = std::move(*chunks);
    bo->placement_ = placement;
    return bo;
}

// ttm_pool_alloc(): system pages come in the largest order that still fits
// the remaining size (capped at 2 MiB here; upstream at MAX_ORDER - 1), each
// failed order retried one lower, without direct compaction (__GFP_NORETRY),
// as ttm_pool_alloc_page() asks. Upstream deliberately clears __GFP_COMP
// there; the model's allocator only makes compound blocks (see FIDELITY.md).
// VRAM is one range of device memory.
Result<std::vector<TtmChunk>> TtmBo::alloc_backing(TtmPlacement p) const {
    PhysMem& mem = *kernel.mem;
    std::vector<TtmChunk> out;
    if (p == TtmPlacement::Vram) {
        PL_TRY_ASSIGN(pfn_t base, mem.iomem_alloc(nr_pages));
        out.push_back({base, nr_pages, nullptr});
        return out;
    }
    unsigned long left = nr_pages;
    while (left) {
        unsigned order = std::min<unsigned>(PMD_ORDER, floor_log2(left));
        Folio* f = nullptr;
        for (;;) {
            gfp_t gfp = GFP_USER | __GFP_COMP | (order ? (__GFP_NORETRY | __GFP_NOWARN) : 0);
            auto r = mem.alloc_folio(order, gfp);
            if (r) {
                f = *r;
                break;
            }
            if (order == 0) break;
            --order;
        }
        if (!f) {
            for (TtmChunk& c : out) {
                kernel.ref_note(c.folio, -1);
                mem.folio_put(c.folio);
            }
            return Error(ENOMEM);
        }
        kernel.ref_note(f, 1);  // the bo's own reference (ttm_tt->pages[])
        out.push_back({mem.page_to_pfn(f->head()), f->nr_pages(), f});
        left -= f->nr_pages();
    }
    return out;
}

// ttm_pool_free() / ttm_resource_free(). TTM gives system pages back with
// __free_pages(), which only drops the reference TTM itself holds: a GET or
// PIN that GUP took through a PFN entry keeps the frame alive (and the device
// using it keeps writing into a page the bo no longer owns). The pin tracker
// reports each folio that still has PINs.
void TtmBo::free_backing(std::vector<TtmChunk>& chunks, TtmPlacement p, const char* where, const char* how) {
    PhysMem& mem = *kernel.mem;
    for (TtmChunk& c : chunks) {
        if (p == TtmPlacement::Vram) {
            mem.iomem_free(c.pfn, c.nr);
            continue;
        }
        if (pin_track_pins(c.folio) > 0) pin_track_moved(kernel, c.folio, c.folio->head(), where, how);
        kernel.ref_note(c.folio, -1);
        mem.folio_put(c.folio);
    }
    chunks.clear();
}

pfn_t TtmBo::pfn_at(pgoff_t pgoff) const {
    if (pgoff >= nr_pages) return kNoPfn;
    pgoff_t at = 0;
    for (const TtmChunk& c : chunks_) {
        if (pgoff < at + c.nr) return c.pfn + (pgoff - at);
        at += c.nr;
    }
    return kNoPfn;
}

// Upstream only asks for physically contiguous pfns, so a PUD could span
// many separately allocated chunks that happen to be adjacent; the model's
// huge leaves map one folio (or one iomem range), so it asks for one chunk.
bool TtmBo::contiguous(pgoff_t pgoff, unsigned long nr) const {
    if (nr == 0 || pgoff + nr > nr_pages) return false;
    pgoff_t at = 0;
    for (const TtmChunk& c : chunks_) {
        if (pgoff < at + c.nr) return pgoff + nr <= at + c.nr;
        at += c.nr;
    }
    return false;
}

Status TtmBo::move(TtmPlacement to) {
    sync::WriteGuard g(resv);
    if (to == placement_) return ok_status();
    PL_TRY_ASSIGN(std::vector<TtmChunk> fresh, alloc_backing(to));
    // ttm_bo_unmap_virtual(): every user mapping goes first, so that the
    // next CPU access faults and finds the new placement.
    if (file) unmap_mapping_range(file->inode->mapping, 0, nr_pages, true);
    // ttm_move_memcpy(): page by page through the kernel mappings.
    PhysMem& mem = *kernel.mem;
    std::vector<TtmChunk> old = std::move(chunks_);
    chunks_ = std::move(fresh);
    std::array<unsigned char, PAGE_SIZE> buf{};
    pgoff_t at = 0;
    for (const TtmChunk& c : old) {
        for (unsigned long i = 0; i < c.nr; ++i, ++at) {
            if (!mem.read_frame(c.pfn + i, 0, buf.data(), PAGE_SIZE)) continue;
            if (std::all_of(buf.begin(), buf.end(), [](unsigned char b) { return b == 0; })) continue;
            (void)mem.write_frame(pfn_at(at), 0, buf.data(), PAGE_SIZE);
        }
    }
    const TtmPlacement from = placement_;
    placement_ = to;
    free_backing(old, from, "ttm_bo_move", to == TtmPlacement::Vram ? "moved to VRAM" : "moved to system memory");
    return ok_status();
}

Status TtmBo::access(uint64_t off, void* buf, uint64_t len, bool write) {
    if (off > uint64_t{nr_pages} << PAGE_SHIFT || len > (uint64_t{nr_pages} << PAGE_SHIFT) - off) return Error(EINVAL);
    if (len && !buf) return Error(EFAULT);
    sync::ReadGuard g(resv);
    PhysMem& mem = *kernel.mem;
    auto* p = static_cast<unsigned char*>(buf);
    while (len) {
        const unsigned in = static_cast<unsigned>(off & (PAGE_SIZE - 1));
        const unsigned n = static_cast<unsigned>(std::min<uint64_t>(len, PAGE_SIZE - in));
        const pfn_t pfn = pfn_at(off >> PAGE_SHIFT);
        Status s = write ? mem.write_frame(pfn, in, p, n) : mem.read_frame(pfn, in, p, n);
        if (!s) return s;
        p += n;
        off += n;
        len -= n;
    }
    return ok_status();
}

void TtmBo::release() {
    registry().remove(file);
    {
        sync::WriteGuard g(resv);
        free_backing(chunks_, placement_, "ttm_bo_release", "freed");
    }
    delete this;
}

TtmBo* ttm_bo_of_file(const File* f) {
    if (!registry().contains(f)) return nullptr;
    return static_cast<TtmBo*>(f->private_data);
}

Result<File*> ttm_bo_file_create(Kernel& k, uint64_t size, TtmPlacement placement, TtmBoOptions opts) {
    PL_TRY_ASSIGN(TtmBo * bo, TtmBo::create(k, size, placement, opts));
    Inode* inode = k.inode_new(FsKind::Device);
    auto* f = new File(inode, &kFops, "/dev/dri/ttm-bo");
    f->private_data = bo;
    f->private_release = &bo_file_release;
    bo->file = f;
    registry().add(f);
    return f;
}

}  // namespace pl

// ---------------------------------------------------------------------------
// C API
// ---------------------------------------------------------------------------

using namespace pl;

namespace {

TtmBo* bo_ok(pl_file* f, const char* fn) {
    TtmBo* bo = f ? ttm_bo_of_file(reinterpret_cast<File*>(f)) : nullptr;
    if (!bo) kapi_set_error(std::string(fn) + ": invalid argument 'bo' (not a live TTM buffer object)");
    return bo;
}

bool placement_ok(int p) { return p == PL_TTM_PL_SYSTEM || p == PL_TTM_PL_VRAM; }

}  // namespace

extern "C" {

pl_file* pl_ttm_bo_create(pl_kernel* k, unsigned long size, int placement, unsigned flags) {
    if (!k) {
        kapi_set_error("pl_ttm_bo_create: invalid argument 'k'");
        return nullptr;
    }
    if (!placement_ok(placement) || (flags & ~(PL_TTM_MIXEDMAP | PL_TTM_NO_HUGE | PL_TTM_PFN_MAP)) || size == 0) {
        kapi_set_error("pl_ttm_bo_create: -EINVAL: size 0, unknown placement or unknown flags");
        return nullptr;
    }
    TtmBoOptions o;
    o.mode = (flags & PL_TTM_MIXEDMAP) ? TtmMapMode::MixedMap : TtmMapMode::PfnMap;
    o.huge = (flags & PL_TTM_NO_HUGE) ? TtmHuge::Off : TtmHuge::On;
    o.huge_pfn = (flags & PL_TTM_PFN_MAP) ? TtmHugePfnFlags::DevMap : TtmHugePfnFlags::Dev;
    auto r = ttm_bo_file_create(*reinterpret_cast<Kernel*>(k), size,
                                placement == PL_TTM_PL_VRAM ? TtmPlacement::Vram : TtmPlacement::System, o);
    if (!r) {
        kapi_set_error("pl_ttm_bo_create: -" + std::string(errno_name(r.error().errnum)));
        return nullptr;
    }
    return reinterpret_cast<pl_file*>(*r);
}

int pl_ttm_bo_move(pl_file* f, int placement) {
    TtmBo* bo = bo_ok(f, "pl_ttm_bo_move");
    if (!bo || !placement_ok(placement)) return -EINVAL;
    Status s = bo->move(placement == PL_TTM_PL_VRAM ? TtmPlacement::Vram : TtmPlacement::System);
    return s ? 0 : s.error().negative();
}

int pl_ttm_bo_placement(pl_file* f) {
    TtmBo* bo = bo_ok(f, "pl_ttm_bo_placement");
    if (!bo) return -EINVAL;
    return bo->placement() == TtmPlacement::Vram ? PL_TTM_PL_VRAM : PL_TTM_PL_SYSTEM;
}

unsigned long pl_ttm_bo_pfn(pl_file* f, unsigned long pgoff) {
    TtmBo* bo = bo_ok(f, "pl_ttm_bo_pfn");
    if (!bo) return ~0UL;
    sync::ReadGuard g(bo->resv);
    return bo->pfn_at(pgoff);
}

long pl_ttm_bo_read(pl_file* f, unsigned long off, void* buf, unsigned long len) {
    TtmBo* bo = bo_ok(f, "pl_ttm_bo_read");
    if (!bo) return -EINVAL;
    Status s = bo->access(off, buf, len, false);
    return s ? static_cast<long>(len) : s.error().negative();
}

long pl_ttm_bo_write(pl_file* f, unsigned long off, const void* buf, unsigned long len) {
    TtmBo* bo = bo_ok(f, "pl_ttm_bo_write");
    if (!bo) return -EINVAL;
    Status s = bo->access(off, const_cast<void*>(buf), len, true);
    return s ? static_cast<long>(len) : s.error().negative();
}

void pl_ttm_bo_put(pl_file* f) {
    if (!bo_ok(f, "pl_ttm_bo_put")) return;
    pl_file_put(f);
}

}  // extern "C"
