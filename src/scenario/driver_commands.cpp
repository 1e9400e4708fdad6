// pinlab scenarios — execution of the driver commands (see driver_commands.h).
// Every call goes through the public C API, as a program would; handles are
// checked here first, so a scenario can never hand the C API a bad pointer.
#include "scenario/driver_commands.h"

#include <sys/uio.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "pinlab/kapi.h"

namespace pl::scenario {

// The driver rows are one contiguous run of the Cmd enum (commands.h).
bool is_driver_command(Cmd cmd) { return cmd >= Cmd::io_uring_setup && cmd <= Cmd::vmas_flags; }

namespace {

enum class Kind : uint8_t { Ring, Container, Pipe, Queue, Dio, Umem, FutexKey, FrameVector };

const char* kind_name(Kind k) {
    switch (k) {
        case Kind::Ring: return "an io_uring ring";
        case Kind::Container: return "a vfio container";
        case Kind::Pipe: return "a pipe";
        case Kind::Queue: return "a videobuf2 queue";
        case Kind::Dio: return "an in-flight direct I/O";
        case Kind::Umem: return "an RDMA umem";
        case Kind::FutexKey: return "a futex key";
        case Kind::FrameVector: return "a frame vector";
    }
    return "a handle";
}

struct Handle {
    Kind kind;
    void* ptr = nullptr;     // null once closed
    pl_futex_key key{};      // FutexKey
};

[[noreturn]] void stop(SourceLoc loc, std::string msg) { throw DriverFail{loc, std::move(msg)}; }

}  // namespace

struct DriverCommands::State {
    std::vector<Handle> handles;             // id = index + 1
    std::vector<vm_area_struct*> vmas;      // the last v6_4_* call's vmas[]
    int owner_depth = 0;                     // pl_pin_owner_begin() scopes still open
};

DriverCommands::DriverCommands() : s_(std::make_unique<State>()) {}
DriverCommands::~DriverCommands() = default;

namespace {

class Exec {
public:
    Exec(const Call& c, task_struct* t, const DriverHost& h, DriverCommands::State& s) : c_(c), t_(t), h_(h), s_(s) {}

    Value run();

private:
    const Expr& arg(size_t i) {
        if (i >= c_.args.size()) stop(c_.loc, "missing argument " + std::to_string(i + 1));
        return *c_.args[i];
    }
    int64_t integer(size_t i) {
        const Value v = h_.eval(arg(i));
        if (v.type != Type::Int && v.type != Type::Bool) stop(arg(i).loc, "expected an integer, got " + v.show());
        return v.i;
    }
    unsigned long ulong(size_t i) { return static_cast<unsigned long>(integer(i)); }
    unsigned u32(size_t i) {
        const unsigned long v = ulong(i);
        if (v > 0xffffffffUL) stop(arg(i).loc, std::to_string(v) + " does not fit the C API's unsigned int");
        return static_cast<unsigned>(v);
    }
    std::string string(size_t i) {
        const Value v = h_.eval(arg(i));
        if (v.type != Type::Str) stop(arg(i).loc, "expected a string, got " + v.show());
        return v.s;
    }
    pl_file* file(size_t i) {
        const Value v = h_.eval(arg(i));
        if (v.type != Type::File || !v.file) stop(arg(i).loc, "expected a file, got " + v.show());
        return v.file;
    }
    unsigned long length(size_t i) {
        const unsigned long n = ulong(i);
        if (n > kMaxBytes)
            stop(arg(i).loc, "read of " + std::to_string(n) + " bytes: at most " + std::to_string(kMaxBytes) +
                                 " per step in a scenario");
        return n;
    }
    bool opt(std::string_view name) const {
        for (const auto& [n, v] : c_.options)
            if (n == name) return true;
        return false;
    }
    // The live object behind handle argument i, of kind k.
    Handle& handle(size_t i, Kind k) {
        const int64_t id = integer(i);
        if (id < 1 || id > static_cast<int64_t>(s_.handles.size()))
            stop(arg(i).loc, std::to_string(id) + " is not " + kind_name(k) + " (no such handle)");
        Handle& hd = s_.handles[static_cast<size_t>(id - 1)];
        if (hd.kind != k) stop(arg(i).loc, "handle " + std::to_string(id) + " is " + kind_name(hd.kind) + ", not " + kind_name(k));
        if (!hd.ptr && k != Kind::FutexKey) stop(arg(i).loc, "handle " + std::to_string(id) + " (" + kind_name(k) + ") is closed");
        return hd;
    }
    template <class T>
    T* ptr(size_t i, Kind k) {
        return static_cast<T*>(handle(i, k).ptr);
    }
    Value mint(Kind k, void* p) {
        s_.handles.push_back({k, p, {}});
        return Value::integer(static_cast<int64_t>(s_.handles.size()));
    }
    Value created(Kind k, void* p, const char* what) {
        if (!p) stop(c_.loc, std::string(what) + " failed: " + pl_last_error());
        return mint(k, p);
    }
    Value bytes_or_errno(long r, std::string buf) {
        if (r < 0) return Value::integer(r);
        buf.resize(static_cast<size_t>(r));
        return Value::str(std::move(buf));
    }
    Value file_result(pl_file* f, const char* what) {
        if (!f) stop(c_.loc, std::string(what) + " failed: " + pl_last_error());
        h_.own_file(f);
        Value v;
        v.type = Type::File;
        v.file = f;
        return v;
    }
    void pages_out(std::vector<page*> pages) {
        if (c_.pages_out.empty()) return;
        Value list;
        list.type = Type::Pages;
        list.pages = std::move(pages);
        h_.set_var(c_.pages_out, std::move(list));
    }
    Value v6_4_gup();

    static constexpr unsigned long kMaxBytes = 1UL << 20;  // as kMaxReadBytes (interpreter.h)
    static constexpr unsigned long kMaxPages = 1UL << 18;

    const Call& c_;
    task_struct* t_;
    const DriverHost& h_;
    DriverCommands::State& s_;
};

// The v6.4 GUP calls with their vmas[] array (seed 002). The mmap_lock is
// held across the call only, as a caller that then drops it would: the
// entries are dangling by the time a later step reads them.
Value Exec::v6_4_gup() {
    const unsigned long start = ulong(0);
    const unsigned long nr = ulong(1);
    const unsigned flags = u32(2);
    if (nr > kMaxPages) stop(arg(1).loc, "nr_pages " + std::to_string(nr) + " does not fit the runner's arrays");
    std::vector<page*> pages(std::max(nr, 1UL), nullptr);
    std::vector<vm_area_struct*> vmas(std::max(nr, 1UL), nullptr);
    mm_struct* mm = pl_task_mm(t_);
    mmap_read_lock(mm);
    const long r = c_.spec->cmd == Cmd::v6_4_pin_user_pages
                       ? pl_v6_4_pin_user_pages(start, nr, flags, pages.data(), vmas.data())
                       : pl_v6_4_get_user_pages(start, nr, flags, pages.data(), vmas.data());
    mmap_read_unlock(mm);
    const size_t got = r > 0 ? static_cast<size_t>(std::min<long>(r, static_cast<long>(nr))) : 0;
    s_.vmas.assign(vmas.begin(), vmas.begin() + static_cast<long>(got));
    pages_out(std::vector<page*>(pages.begin(), pages.begin() + static_cast<long>(got)));
    return Value::integer(r);
}

Value Exec::run() {
    switch (c_.spec->cmd) {
        // ---- io_uring (io_uring/rsrc.c)
        case Cmd::io_uring_setup: {
            // io_uring_setup(2)'s own errors (-EINVAL entries, -ENOMEM over
            // RLIMIT_MEMLOCK) are results, as on the host; pl_last_error()
            // names the errno after the function's name.
            pl_io_uring* ring = pl_io_uring_setup(t_, u32(0));
            if (!ring) {
                const std::string_view why = pl_last_error();
                const size_t at = why.find(": -E");
                if (at != std::string_view::npos)
                    if (int e = errno_from_name(why.substr(at + 3, why.find(':', at + 3) - (at + 3))))
                        return Value::integer(-e);
            }
            return created(Kind::Ring, ring, "io_uring_setup");
        }
        case Cmd::io_uring_register_buffers: {
            auto* ring = ptr<pl_io_uring>(0, Kind::Ring);
            if (c_.args.size() % 2 == 0) stop(c_.loc, "io_uring_register_buffers takes ADDR LEN pairs");
            std::vector<iovec> iov;
            for (size_t i = 1; i + 1 < c_.args.size(); i += 2)
                iov.push_back({reinterpret_cast<void*>(ulong(i)), ulong(i + 1)});
            return Value::integer(
                pl_io_uring_register_buffers(ring, iov.data(), static_cast<unsigned>(iov.size())));
        }
        case Cmd::io_uring_unregister_buffers:
            return Value::integer(pl_io_uring_unregister_buffers(ptr<pl_io_uring>(0, Kind::Ring)));
        case Cmd::io_uring_read_fixed:
        case Cmd::io_uring_write_fixed: {
            auto* ring = ptr<pl_io_uring>(0, Kind::Ring);
            pl_file* f = file(1);
            const bool rd = c_.spec->cmd == Cmd::io_uring_read_fixed;
            return Value::integer(rd ? pl_io_uring_read_fixed(ring, f, u32(2), ulong(3), ulong(4), ulong(5))
                                     : pl_io_uring_write_fixed(ring, f, u32(2), ulong(3), ulong(4), ulong(5)));
        }
        case Cmd::io_uring_buffer_segments: {
            unsigned long seg = 0;
            return Value::integer(pl_io_uring_buffer_segments(ptr<pl_io_uring>(0, Kind::Ring), u32(1), &seg));
        }
        case Cmd::io_uring_exit: {
            Handle& hd = handle(0, Kind::Ring);
            pl_io_uring_exit(static_cast<pl_io_uring*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        // ---- vfio (drivers/vfio/vfio_iommu_type1.c)
        case Cmd::vfio_open: return created(Kind::Container, pl_vfio_open(t_), "vfio_open");
        case Cmd::vfio_map_dma: {
            auto* ct = ptr<pl_vfio_container>(0, Kind::Container);
            unsigned flags = 0;
            if (opt("read")) flags |= VFIO_DMA_MAP_FLAG_READ;
            if (opt("write")) flags |= VFIO_DMA_MAP_FLAG_WRITE;
            return Value::integer(pl_vfio_map_dma(ct, ulong(1), ulong(2), ulong(3), flags));
        }
        case Cmd::vfio_unmap_dma:
            return Value::integer(pl_vfio_unmap_dma(ptr<pl_vfio_container>(0, Kind::Container), ulong(1), ulong(2)));
        case Cmd::vfio_dma_read: {
            auto* ct = ptr<pl_vfio_container>(0, Kind::Container);
            std::string buf(length(2), '\0');
            const long r = pl_vfio_dma_read(ct, ulong(1), buf.data(), buf.size());
            return bytes_or_errno(r, std::move(buf));
        }
        case Cmd::vfio_dma_write: {
            auto* ct = ptr<pl_vfio_container>(0, Kind::Container);
            const std::string b = string(2);
            return Value::integer(pl_vfio_dma_write(ct, ulong(1), b.data(), b.size()));
        }
        case Cmd::vfio_close: {
            Handle& hd = handle(0, Kind::Container);
            pl_vfio_close(static_cast<pl_vfio_container*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        // ---- vmsplice (fs/splice.c) and process_vm_readv/writev (mm/process_vm_access.c)
        case Cmd::pipe: return created(Kind::Pipe, pl_pipe_new(h_.k), "pipe");
        case Cmd::vmsplice: {
            auto* p = ptr<pl_pipe>(0, Kind::Pipe);
            return Value::integer(pl_vmsplice(t_, p, ulong(1), ulong(2)));
        }
        case Cmd::pipe_read: {
            auto* p = ptr<pl_pipe>(0, Kind::Pipe);
            std::string buf(length(1), '\0');
            const long r = pl_pipe_read(p, buf.data(), buf.size());
            return bytes_or_errno(r, std::move(buf));
        }
        case Cmd::pipe_nr_bufs: return Value::integer(pl_pipe_nr_bufs(ptr<pl_pipe>(0, Kind::Pipe)));
        case Cmd::pipe_close: {
            Handle& hd = handle(0, Kind::Pipe);
            pl_pipe_free(static_cast<pl_pipe*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        case Cmd::process_vm_readv:
        case Cmd::process_vm_writev: {
            task_struct* target = h_.task(string(0), arg(0).loc);
            const bool rd = c_.spec->cmd == Cmd::process_vm_readv;
            return Value::integer(rd ? pl_process_vm_readv(t_, target, ulong(1), ulong(2), ulong(3))
                                     : pl_process_vm_writev(t_, target, ulong(1), ulong(2), ulong(3)));
        }
        case Cmd::ptrace_allowed: return Value::integer(pl_task_set_ptrace_allowed(t_, integer(0) != 0));
        // ---- RLIMIT_MEMLOCK accounting (mm/mlock.c, account_locked_vm())
        case Cmd::set_rlimit_memlock: return Value::integer(pl_task_set_rlimit_memlock(t_, ulong(0)));
        case Cmd::cap_ipc_lock: return Value::integer(pl_task_set_cap_ipc_lock(t_, integer(0) != 0));
        case Cmd::locked_vm: return Value::integer(static_cast<int64_t>(pl_task_locked_vm(t_, opt("user") ? 1 : 0)));
        case Cmd::pinned_vm: return Value::integer(static_cast<int64_t>(pl_task_pinned_vm(t_)));
        // ---- dma-buf heaps (drivers/dma-buf/heaps)
        case Cmd::dma_heap_alloc: {
            const std::string heap = string(0);
            return file_result(pl_dma_heap_alloc(h_.k, heap.c_str(), ulong(1), 0, 0), "dma_heap_alloc");
        }
        case Cmd::dma_buf_size: return Value::integer(static_cast<int64_t>(pl_dma_buf_size(file(0))));
        case Cmd::dma_buf_device_read: {
            pl_file* f = file(0);
            std::string buf(length(2), '\0');
            const long r = pl_dma_buf_device_read(f, ulong(1), buf.data(), buf.size());
            return bytes_or_errno(r, std::move(buf));
        }
        case Cmd::dma_buf_device_write: {
            pl_file* f = file(0);
            const std::string b = string(2);
            return Value::integer(pl_dma_buf_device_write(f, ulong(1), b.data(), b.size()));
        }
        // ---- TTM buffer objects (drivers/gpu/drm/ttm)
        case Cmd::ttm_bo_create: {
            if (opt("vram") && opt("system")) stop(c_.loc, "a bo is placed in system or vram, not both");
            unsigned flags = 0;
            if (opt("mixedmap")) flags |= PL_TTM_MIXEDMAP;
            if (opt("no_huge")) flags |= PL_TTM_NO_HUGE;
            if (opt("pfn_map")) flags |= PL_TTM_PFN_MAP;
            return file_result(pl_ttm_bo_create(h_.k, ulong(0), opt("vram") ? PL_TTM_PL_VRAM : PL_TTM_PL_SYSTEM, flags),
                               "ttm_bo_create");
        }
        case Cmd::ttm_bo_move: {
            if (opt("vram") == opt("system")) stop(c_.loc, "ttm_bo_move needs one placement: system or vram");
            return Value::integer(pl_ttm_bo_move(file(0), opt("vram") ? PL_TTM_PL_VRAM : PL_TTM_PL_SYSTEM));
        }
        case Cmd::ttm_bo_placement: return Value::integer(pl_ttm_bo_placement(file(0)));
        case Cmd::ttm_bo_pfn: return Value::integer(static_cast<int64_t>(pl_ttm_bo_pfn(file(0), ulong(1))));
        case Cmd::ttm_bo_read: {
            pl_file* f = file(0);
            std::string buf(length(2), '\0');
            const long r = pl_ttm_bo_read(f, ulong(1), buf.data(), buf.size());
            return bytes_or_errno(r, std::move(buf));
        }
        case Cmd::ttm_bo_write: {
            pl_file* f = file(0);
            const std::string b = string(2);
            return Value::integer(pl_ttm_bo_write(f, ulong(1), b.data(), b.size()));
        }
        case Cmd::ttm_bo_put: {
            pl_file* f = file(0);
            // The scenario's reference: dropping it twice would be a bad put
            // (and the file may be gone: ask nothing of it then).
            if (!h_.disown_file(f)) stop(arg(0).loc, "this bo's reference was already put");
            if (pl_ttm_bo_placement(f) < 0) {
                h_.own_file(f);
                stop(arg(0).loc, "not a TTM buffer object");
            }
            pl_ttm_bo_put(f);
            return Value::integer(0);
        }
        // ---- videobuf2 USERPTR (drivers/media/common/videobuf2)
        case Cmd::vb2_queue_new: {
            const int n_mem = opt("vmalloc") + opt("dma_contig") + opt("dma_sg");
            if (n_mem > 1) stop(c_.loc, "one of vmalloc, dma_contig, dma_sg");
            if (opt("capture") && opt("output")) stop(c_.loc, "capture or output, not both");
            const int memops = opt("dma_contig") ? PL_VB2_DMA_CONTIG : opt("dma_sg") ? PL_VB2_DMA_SG : PL_VB2_VMALLOC;
            const int type = opt("output") ? PL_VB2_OUTPUT : PL_VB2_CAPTURE;
            return created(Kind::Queue,
                           pl_vb2_queue_new(t_, memops, type, ulong(0), opt("iommu") ? PL_VB2_DEV_IOMMU : 0u),
                           "vb2_queue_new");
        }
        case Cmd::vb2_reqbufs: return Value::integer(pl_vb2_reqbufs(ptr<pl_vb2_queue>(0, Kind::Queue), u32(1)));
        case Cmd::vb2_qbuf:
            return Value::integer(pl_vb2_qbuf(ptr<pl_vb2_queue>(0, Kind::Queue), u32(1), ulong(2), ulong(3)));
        case Cmd::vb2_dqbuf: return Value::integer(pl_vb2_dqbuf(ptr<pl_vb2_queue>(0, Kind::Queue), nullptr));
        case Cmd::vb2_device_dma: {
            auto* q = ptr<pl_vb2_queue>(0, Kind::Queue);
            std::string b = string(1);
            return Value::integer(pl_vb2_device_dma(q, b.data(), b.size()));
        }
        case Cmd::vb2_queue_close: {
            Handle& hd = handle(0, Kind::Queue);
            pl_vb2_queue_free(static_cast<pl_vb2_queue*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        // ---- O_DIRECT (fs/iomap/direct-io.c)
        case Cmd::direct_read:
        case Cmd::direct_write: {
            pl_file* f = file(0);
            const bool rd = c_.spec->cmd == Cmd::direct_read;
            pl_dio* dio = nullptr;
            pl_dio** inflight = opt("inflight") ? &dio : nullptr;
            const long r = rd ? pl_direct_read(t_, f, ulong(1), ulong(2), ulong(3), inflight)
                              : pl_direct_write(t_, f, ulong(1), ulong(2), ulong(3), inflight);
            // In flight: the handle stands for the request (dio_complete
            // returns its bytes); an error started nothing.
            if (inflight && r >= 0 && dio) return mint(Kind::Dio, dio);
            return Value::integer(r);
        }
        case Cmd::dio_complete: {
            Handle& hd = handle(0, Kind::Dio);
            const long r = pl_dio_complete(static_cast<pl_dio*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(r);
        }
        // ---- RDMA umem (drivers/infiniband/core/umem.c)
        case Cmd::ib_umem_get: {
            int access = 0;
            if (opt("local_write")) access |= PL_IB_ACCESS_LOCAL_WRITE;
            if (opt("remote_write")) access |= PL_IB_ACCESS_REMOTE_WRITE;
            if (opt("remote_read")) access |= PL_IB_ACCESS_REMOTE_READ;
            if (opt("on_demand")) access |= PL_IB_ACCESS_ON_DEMAND;
            int err = 0;
            pl_ib_umem* u = pl_ib_umem_get(t_, ulong(0), ulong(1), access, &err);
            if (!u) return Value::integer(err < 0 ? err : -EINVAL);
            return mint(Kind::Umem, u);
        }
        case Cmd::ib_umem_release: {
            Handle& hd = handle(0, Kind::Umem);
            pl_ib_umem_release(static_cast<pl_ib_umem*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        case Cmd::ib_umem_dma_read: {
            auto* u = ptr<pl_ib_umem>(0, Kind::Umem);
            std::string buf(length(2), '\0');
            const long r = pl_ib_umem_dma_read(u, ulong(1), buf.data(), buf.size());
            return bytes_or_errno(r, std::move(buf));
        }
        case Cmd::ib_umem_dma_write: {
            auto* u = ptr<pl_ib_umem>(0, Kind::Umem);
            const std::string b = string(2);
            return Value::integer(pl_ib_umem_dma_write(u, ulong(1), b.data(), b.size()));
        }
        case Cmd::ib_umem_nents: return Value::integer(static_cast<int64_t>(pl_ib_umem_nents(ptr<pl_ib_umem>(0, Kind::Umem))));
        // ---- futex keys (kernel/futex/core.c get_futex_key())
        case Cmd::get_futex_key: {
            pl_futex_key key{};
            int flags = 0;
            if (opt("shared")) flags |= PL_FUTEX_SHARED;
            if (opt("read")) flags |= PL_FUTEX_READ;
            const int r = pl_get_futex_key(t_, ulong(0), flags, &key);
            if (r < 0) return Value::integer(r);
            s_.handles.push_back({Kind::FutexKey, nullptr, key});
            return Value::integer(static_cast<int64_t>(s_.handles.size()));
        }
        case Cmd::same_key: {
            const pl_futex_key a = handle(0, Kind::FutexKey).key;
            const pl_futex_key b = handle(1, Kind::FutexKey).key;
            return Value::boolean(pl_futex_key_equal(&a, &b) != 0);
        }
        // ---- frame vectors (mm/frame_vector.c; seed 000)
        case Cmd::frame_vector_create: {
            const unsigned n = u32(0);
            return created(Kind::FrameVector, frame_vector_create(n), "frame_vector_create");
        }
        case Cmd::get_vaddr_frames: {
            auto* vec = ptr<frame_vector>(0, Kind::FrameVector);
            const int r = get_vaddr_frames(ulong(1), u32(2), opt("write"), vec);
            std::vector<page*> pages;
            if (r > 0 && !vec->is_pfns) {
                page** pp = frame_vector_pages(vec);
                if (reinterpret_cast<uintptr_t>(pp) < static_cast<uintptr_t>(-4095))
                    pages.assign(pp, pp + frame_vector_count(vec));
            }
            pages_out(std::move(pages));
            return Value::integer(r);
        }
        case Cmd::put_vaddr_frames: put_vaddr_frames(ptr<frame_vector>(0, Kind::FrameVector)); return Value::integer(0);
        case Cmd::frame_vector_destroy: {
            Handle& hd = handle(0, Kind::FrameVector);
            frame_vector_destroy(static_cast<frame_vector*>(hd.ptr));
            hd.ptr = nullptr;
            return Value::integer(0);
        }
        case Cmd::frame_vector_is_pfns: return Value::boolean(ptr<frame_vector>(0, Kind::FrameVector)->is_pfns);
        case Cmd::frame_vector_got_ref: return Value::boolean(ptr<frame_vector>(0, Kind::FrameVector)->got_ref);
        case Cmd::frame_vector_nr_frames:
            return Value::integer(frame_vector_count(ptr<frame_vector>(0, Kind::FrameVector)));
        // ---- pin owners (the tracker's PinOwnerScope), devices, v6.4 vmas[]
        case Cmd::pin_owner_begin: {
            const std::string owner = string(0), site = string(1);
            const int r = pl_pin_owner_begin(owner.c_str(), site.c_str());
            if (r == 0) ++s_.owner_depth;
            return Value::integer(r);
        }
        case Cmd::pin_owner_end: {
            const int r = pl_pin_owner_end();
            if (r == 0 && s_.owner_depth > 0) --s_.owner_depth;
            return Value::integer(r);
        }
        case Cmd::dev_open: {
            const std::string name = string(0);
            return file_result(pl_dev_open(h_.k, name.c_str()), "dev_open");
        }
        case Cmd::v6_4_get_user_pages:
        case Cmd::v6_4_pin_user_pages: return v6_4_gup();
        case Cmd::vmas_start:
        case Cmd::vmas_flags: {
            const unsigned long i = ulong(0);
            if (i >= s_.vmas.size())
                stop(arg(0).loc, "index " + std::to_string(i) + " out of range: the last v6_4_* call filled " +
                                     std::to_string(s_.vmas.size()) + " vmas[] entries");
            vm_area_struct* v = s_.vmas[i];
            return Value::integer(static_cast<int64_t>(c_.spec->cmd == Cmd::vmas_start ? pl_vma_start(v) : pl_vma_flags(v)));
        }
        default: break;
    }
    stop(c_.loc, "not a driver command");
}

}  // namespace

Value DriverCommands::exec(const Call& c, task_struct* t, const DriverHost& host) {
    if (c.spec->uses_task && !t) stop(c.loc, std::string(c.spec->name) + " needs a task");
    return Exec(c, t, host, *s_).run();
}

void DriverCommands::release_all() {
    // Newest first, as a program unwinding its setup would.
    for (auto it = s_->handles.rbegin(); it != s_->handles.rend(); ++it) {
        Handle& hd = *it;
        if (!hd.ptr) continue;
        switch (hd.kind) {
            case Kind::Ring: pl_io_uring_exit(static_cast<pl_io_uring*>(hd.ptr)); break;
            case Kind::Container: pl_vfio_close(static_cast<pl_vfio_container*>(hd.ptr)); break;
            case Kind::Pipe: pl_pipe_free(static_cast<pl_pipe*>(hd.ptr)); break;
            case Kind::Queue: pl_vb2_queue_free(static_cast<pl_vb2_queue*>(hd.ptr)); break;
            case Kind::Dio: pl_dio_complete(static_cast<pl_dio*>(hd.ptr)); break;
            case Kind::Umem: pl_ib_umem_release(static_cast<pl_ib_umem*>(hd.ptr)); break;
            case Kind::FutexKey: break;
            case Kind::FrameVector: {
                auto* vec = static_cast<frame_vector*>(hd.ptr);
                if (vec->nr_frames) put_vaddr_frames(vec);
                frame_vector_destroy(vec);
                break;
            }
        }
        hd.ptr = nullptr;
    }
    while (s_->owner_depth > 0 && pl_pin_owner_end() == 0) --s_->owner_depth;
    s_->owner_depth = 0;
    s_->vmas.clear();
}

}  // namespace pl::scenario
