// pinlab — vmsplice() into a pipe and the pipe's reader (fs/splice.c
// vmsplice_to_pipe(), wait_for_space(), iter_to_pipe(); lib/iov_iter.c
// iov_iter_get_pages2(); fs/pipe.c pipe_read()). The pages are taken with
// get_user_pages_fast() and no FOLL_WRITE: the iterator is a source, so
// iov_iter_get_pages2() asks only for FOLL_GET references. This is the setup
// of CVE-2020-29374: a read-only reference that must not see later writes of
// another process sharing the page.
#include "drivers/pipe_vmsplice.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "base/handle_registry.h"
#include "debug/pin_tracker.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

constexpr unsigned long kPageSize = 4096;

HandleRegistry<Pipe>& registry() {
    static HandleRegistry<Pipe> r;
    return r;
}
bool pipe_ok(const pl_pipe* p, const char* fn) {
    if (registry().contains(reinterpret_cast<const Pipe*>(p))) return true;
    kapi_set_error(std::string(fn) + ": invalid argument 'p'");
    return false;
}
Pipe* P(pl_pipe* p) { return reinterpret_cast<Pipe*>(p); }

// user_page_pipe_buf_ops.release == generic_pipe_buf_release(): put_page().
void release_buffer(const PipeBuffer& b) {
    PinOwnerScope owner("vmsplice", "pipe_buf_release");
    ::put_page(b.pg);
}

// Runs the GUP call as `t` (vmsplice() is a syscall of t: its fast GUP walks
// current->mm), restoring the thread's previous current afterwards.
class AsCurrent {
public:
    explicit AsCurrent(Task* t) : prev_(pl::current()) { pl::set_current(t); }
    ~AsCurrent() { pl::set_current(prev_); }
    AsCurrent(const AsCurrent&) = delete;
    AsCurrent& operator=(const AsCurrent&) = delete;

private:
    Task* prev_;
};

}  // namespace

extern "C" {

pl_pipe* pl_pipe_new(pl_kernel* k) {
    if (!k) {
        kapi_set_error("pl_pipe_new: invalid argument 'k'");
        return nullptr;
    }
    auto* p = new Pipe;
    p->kernel = reinterpret_cast<Kernel*>(k);
    registry().add(p);
    return reinterpret_cast<pl_pipe*>(p);
}

void pl_pipe_free(pl_pipe* pp) {
    if (!pipe_ok(pp, "pl_pipe_free")) return;
    Pipe* p = P(pp);
    registry().remove(p);
    {
        // free_pipe_info(): unread buffers are released.
        sync::WriteGuard g(p->mutex);
        for (const PipeBuffer& b : p->bufs) release_buffer(b);
        p->bufs.clear();
    }
    delete p;
}

long pl_vmsplice(task_struct* t, pl_pipe* pp, unsigned long addr, unsigned long len) {
    if (!t || !reinterpret_cast<Task*>(t)->mm) {
        kapi_set_error("pl_vmsplice: invalid argument 't'");
        return -EINVAL;
    }
    if (!pipe_ok(pp, "pl_vmsplice")) return -EINVAL;
    Pipe& p = *P(pp);
    // vmsplice(2): an empty iovec splices nothing.
    if (!len) return 0;
    // import_iovec(): a range wrapping around the address space is -EFAULT.
    if (addr + len < addr) return -EFAULT;
    Task* task = reinterpret_cast<Task*>(t);

    sync::WriteGuard g(p.mutex);
    // wait_for_space() with SPLICE_F_NONBLOCK: the model never sleeps.
    if (p.bufs.size() >= Pipe::kDefBuffers) return -EAGAIN;

    long done = 0;
    long err = 0;
    unsigned long cur = addr, left = len;
    PinOwnerScope owner("vmsplice", "iter_to_pipe");
    // iter_to_pipe(): take as many pages as there are free slots, one buffer
    // per page, until the iterator or the pipe is exhausted.
    while (left && p.bufs.size() < Pipe::kDefBuffers) {
        const unsigned long off = cur & (kPageSize - 1);
        const unsigned long span = (off + left + kPageSize - 1) / kPageSize;
        const unsigned long want = std::min<unsigned long>(span, Pipe::kDefBuffers - p.bufs.size());
        std::vector<page*> pages(want, nullptr);
        int n;
        {
            AsCurrent as(task);
            n = ::get_user_pages_fast(cur - off, static_cast<int>(want), 0, pages.data());
        }
        if (n <= 0) {
            err = n ? n : -EFAULT;
            break;
        }
        for (int i = 0; i < n; i++) {
            const unsigned long start = i == 0 ? off : 0;
            const unsigned long piece = std::min(kPageSize - start, left);
            p.bufs.push_back(PipeBuffer{pages[i], static_cast<unsigned>(start), static_cast<unsigned>(piece)});
            cur += piece;
            left -= piece;
            done += static_cast<long>(piece);
        }
    }
    // Bytes spliced if any, else the error (vmsplice_to_pipe()).
    return done ? done : err;
}

long pl_pipe_read(pl_pipe* pp, void* buf, unsigned long len) {
    if (!pipe_ok(pp, "pl_pipe_read")) return -EINVAL;
    if (!buf && len) {
        kapi_set_error("pl_pipe_read: invalid argument 'buf'");
        return -EINVAL;
    }
    Pipe& p = *P(pp);
    if (!len) return 0;
    sync::WriteGuard g(p.mutex);
    // pipe_read() on an empty pipe whose writer is open, O_NONBLOCK.
    if (p.bufs.empty()) return -EAGAIN;
    auto* out = static_cast<unsigned char*>(buf);
    unsigned long done = 0;
    while (done < len && !p.bufs.empty()) {
        PipeBuffer& b = p.bufs.front();
        const unsigned n = static_cast<unsigned>(std::min<unsigned long>(b.len, len - done));
        // copy_page_to_iter(): the bytes the page holds now, not at splice time.
        if (::pl_page_read(b.pg, b.offset, out + done, n) < 0) return done ? static_cast<long>(done) : -EFAULT;
        b.offset += n;
        b.len -= n;
        done += n;
        if (!b.len) {
            release_buffer(b);
            p.bufs.pop_front();
        }
    }
    return static_cast<long>(done);
}

unsigned pl_pipe_nr_bufs(pl_pipe* pp) {
    if (!pipe_ok(pp, "pl_pipe_nr_bufs")) return 0;
    Pipe& p = *P(pp);
    sync::WriteGuard g(p.mutex);
    return static_cast<unsigned>(p.bufs.size());
}

}  // extern "C"
