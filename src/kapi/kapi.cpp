// pinlab — the kernel-style C API (include/pinlab/kapi.h): kernel names and
// negative errnos at the boundary, the model's C++ types inside.
#include "pinlab/kapi.h"

#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "debug/invariants.h"
#include "debug/pin_tracker.h"
#include "drivers/devices.h"
#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "gup/foll_flags.h"
#include "gup/gup_vmas_tracker.h"
#include "gup/longterm_pinnable.h"
#include "gup/pin_accounting.h"
#include "kapi/kapi_internal.h"
#include "kernel/fork.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/access_remote_vm.h"
#include "mm/internal.h"
#include "mm/mmap.h"
#include "mm/uaccess.h"

using namespace pl;

namespace {

thread_local std::string t_error;
// pl_pin_owner_begin()'s scopes on this thread, innermost last.
thread_local std::vector<std::unique_ptr<PinOwnerScope>> t_owner_scopes;

void set_error(std::string s) { t_error = std::move(s); }
void clear_error() { t_error.clear(); }

long fail(const char* fn, Error e, const std::string& what = {}) {
    set_error(std::string(fn) + ": " + std::string(errno_name(e.errnum)) + (what.empty() ? "" : " (" + what + ")"));
    return e.negative();
}

long einval(const char* fn, const char* arg) {
    set_error(std::string(fn) + ": invalid argument '" + arg + "'");
    return -EINVAL;
}

Kernel* K(pl_kernel* k) { return reinterpret_cast<Kernel*>(k); }
Task* T(task_struct* t) { return reinterpret_cast<Task*>(t); }
MmStruct* M(mm_struct* m) { return reinterpret_cast<MmStruct*>(m); }
Vma* V(vm_area_struct* v) { return reinterpret_cast<Vma*>(v); }
Page* P(page* p) { return reinterpret_cast<Page*>(p); }
Folio* F(folio* f) { return reinterpret_cast<Folio*>(f); }
File* FI(pl_file* f) { return reinterpret_cast<File*>(f); }
pl_kernel* CK(Kernel* k) { return reinterpret_cast<pl_kernel*>(k); }
task_struct* CT(Task* t) { return reinterpret_cast<task_struct*>(t); }
page* CP(Page* p) { return reinterpret_cast<page*>(p); }
pl_file* CF(File* f) { return reinterpret_cast<pl_file*>(f); }

template <typename R>
long result_long(const char* fn, const Result<R>& r) {
    if (!r) return fail(fn, r.error());
    clear_error();
    return static_cast<long>(*r);
}

long status_long(const char* fn, const Status& s) {
    if (!s) return fail(fn, s.error());
    clear_error();
    return 0;
}

// The kernel a page belongs to is not recorded in struct page; the C API
// keeps a registry of live kernels to map a page back to its PhysMem. Every
// unpin looks it up, from any thread: the memory-map ranges are published
// in fixed slots read without a lock (a registry past the slots falls back
// to the mutex-protected list).
constexpr size_t kKernelSlots = 64;
sync::Atomic<Kernel*> g_slots[kKernelSlots];
std::mutex g_kernels_mu;
std::vector<Kernel*> g_kernels;

void kernel_register(Kernel* k) {
    std::lock_guard g(g_kernels_mu);
    g_kernels.push_back(k);
    for (auto& s : g_slots) {
        if (s.load(sync::memory_order_relaxed)) continue;
        s.store(k, sync::memory_order_release);
        return;
    }
}

void kernel_unregister(Kernel* k) {
    std::lock_guard g(g_kernels_mu);
    std::erase(g_kernels, k);
    for (auto& s : g_slots)
        if (s.load(sync::memory_order_relaxed) == k) s.store(nullptr, sync::memory_order_release);
}

Kernel* kernel_of_page(const Page* p) {
    for (auto& s : g_slots) {
        Kernel* k = s.load(sync::memory_order_acquire);
        if (k && k->mem->owns(p)) return k;
    }
    std::lock_guard g(g_kernels_mu);
    for (Kernel* k : g_kernels)
        if (k->mem->owns(p)) return k;
    return nullptr;
}


}  // namespace

// ---- shared with C entry points defined elsewhere (kapi/kapi_internal.h) ---------------
namespace pl {
Kernel* kapi_kernel_of_page(const Page* p) { return kernel_of_page(p); }
void kapi_set_error(std::string what) { set_error(std::move(what)); }
void kapi_clear_error() { clear_error(); }
}  // namespace pl

extern "C" {

// ---- the kernel -----------------------------------------------------------------

pl_kernel* pl_kernel_new(const char* config) {
    auto cfg = Config::parse(config ? config : "");
    if (!cfg) {
        set_error("pl_kernel_new: bad configuration: " + Config::last_error());
        return nullptr;
    }
    auto k = Kernel::create(*cfg);
    if (!k) {
        set_error("pl_kernel_new: could not create the kernel: " + std::string(errno_name(k.error().errnum)));
        return nullptr;
    }
    Kernel* raw = k->release();
    kernel_register(raw);
    clear_error();
    return CK(raw);
}

void pl_kernel_free(pl_kernel* k) {
    if (!k) return;
    // The end of the run: every task exits (closing its rings and
    // containers), and pins still held then leak (each reported once).
    K(k)->exit_all_tasks();
    pin_track_leak_scan(*K(k), "pl_kernel_free");
    vmas_forget_kernel(*K(k));
    pin_track_forget_kernel(*K(k));
    kernel_unregister(K(k));
    delete K(k);
}

void pl_kernel_abandon(pl_kernel* k) {
    if (!k) return;
    vmas_forget_kernel(*K(k));
    pin_track_forget_kernel(*K(k));
    kernel_unregister(K(k));
}

int pl_pin_owner_begin(const char* owner, const char* site) {
    if (!owner) return static_cast<int>(einval("pl_pin_owner_begin", "owner"));
    // Records keep the strings' pointers: intern them for the process's life.
    static std::mutex mu;
    static std::set<std::string> names;
    const char* o;
    const char* s = nullptr;
    {
        std::lock_guard g(mu);
        o = names.insert(owner).first->c_str();
        if (site) s = names.insert(site).first->c_str();
    }
    t_owner_scopes.push_back(std::make_unique<PinOwnerScope>(o, s));
    clear_error();
    return 0;
}

int pl_pin_owner_end(void) {
    if (t_owner_scopes.empty()) {
        set_error("pl_pin_owner_end: -EINVAL: no pl_pin_owner_begin() is open on this thread");
        return -EINVAL;
    }
    t_owner_scopes.pop_back();
    clear_error();
    return 0;
}

const char* pl_last_error(void) { return t_error.c_str(); }

const char* pl_kernel_config(pl_kernel* k) { return k ? K(k)->config_text.c_str() : ""; }

int pl_kernel_check(pl_kernel* k) {
    if (!k) return static_cast<int>(einval("pl_kernel_check", "k"));
    std::string why;
    if (!check_invariants(*K(k), &why)) {
        set_error("invariant broken: " + why);
        return -1;
    }
    clear_error();
    return 0;
}

unsigned long pl_vmstat(pl_kernel* k, const char* name) {
    if (!k || !name) return 0;
    int64_t v = 0;
    if (!K(k)->vmstat.get(name, &v)) {
        set_error(std::string("pl_vmstat: unknown counter '") + name + "'");
        return 0;
    }
    return static_cast<unsigned long>(v);
}

int pl_warning_count(pl_kernel* k, const char* kind) {
    if (!k) return static_cast<int>(einval("pl_warning_count", "k"));
    clear_error();
    return static_cast<int>(K(k)->nr_reports(kind));
}

const char* pl_warning_text(pl_kernel* k, int index) {
    if (!k || index < 0) return nullptr;
    return K(k)->report_text(static_cast<size_t>(index));
}

long pl_pin_balance(pl_kernel* k, const char* owner) {
    if (!k) return einval("pl_pin_balance", "k");
    clear_error();
    return pin_track_balance(*K(k), owner);
}

unsigned long pl_nr_quarantined_pages(pl_kernel* k) { return k ? pin_track_quarantined_pages(*K(k)) : 0; }

const char* pl_dmesg(pl_kernel* k) {
    static thread_local std::string buf;
    buf = k ? K(k)->dmesg() : std::string();
    return buf.c_str();
}

unsigned long pl_nr_free_pages(pl_kernel* k) { return k ? K(k)->mem->nr_free_pages() : 0; }
unsigned long pl_nr_allocated_pages(pl_kernel* k) { return k ? K(k)->mem->nr_allocated_pages() : 0; }

// ---- tasks --------------------------------------------------------------------------

task_struct* pl_task_new(pl_kernel* k) {
    if (!k) {
        einval("pl_task_new", "k");
        return nullptr;
    }
    auto t = K(k)->task_new();
    if (!t) {
        fail("pl_task_new", t.error());
        return nullptr;
    }
    clear_error();
    return CT(*t);
}

task_struct* pl_fork(task_struct* parent) {
    if (!parent || !T(parent)->mm) {
        einval("pl_fork", "parent");
        return nullptr;
    }
    auto c = do_fork(*T(parent));
    if (!c) {
        fail("pl_fork", c.error());
        return nullptr;
    }
    clear_error();
    return CT(*c);
}

task_struct* pl_thread_new(task_struct* t) {
    if (!t || !T(t)->mm) {
        einval("pl_thread_new", "t");
        return nullptr;
    }
    auto th = do_clone_thread(*T(t));
    if (!th) {
        fail("pl_thread_new", th.error());
        return nullptr;
    }
    clear_error();
    return CT(*th);
}

void pl_exit(task_struct* t) {
    if (!t) return;
    Task* task = T(t);
    exit_task_mm(task);
    exit_files(task);
    Kernel& kern = task->kernel;
    pin_track_task_exit(kern, task->pid);
    kern.task_free(task);
    // The last task gone, no user is left to unpin: what is still pinned leaked.
    if (kern.tasks().empty()) pin_track_leak_scan(kern, "exit");
}

void pl_set_current(task_struct* t) { set_current(T(t)); }
task_struct* pl_current(void) { return CT(current()); }
mm_struct* pl_task_mm(task_struct* t) { return t ? reinterpret_cast<mm_struct*>(T(t)->mm) : nullptr; }
int pl_task_pid(task_struct* t) { return t ? T(t)->pid : -EINVAL; }

int pl_task_signal(task_struct* t, int sig) {
    if (!t) return static_cast<int>(einval("pl_task_signal", "t"));
    if (sig <= 0 || sig >= 65) return static_cast<int>(einval("pl_task_signal", "sig"));
    if (sig == SIGKILL) T(t)->fatal_signal.store(true);
    else T(t)->other_signal.store(true);
    return 0;
}

void pl_task_clear_signals(task_struct* t) {
    if (!t) return;
    T(t)->fatal_signal.store(false);
    T(t)->other_signal.store(false);
}

// ---- files --------------------------------------------------------------------------

pl_file* pl_file_new(pl_kernel* k, const char* fs, unsigned long size) {
    if (!k) return einval("pl_file_new", "k"), nullptr;
    if (!fs) return einval("pl_file_new", "fs"), nullptr;
    auto kind = fs_kind_from_name(fs);
    if (!kind) {
        set_error(std::string("pl_file_new: unknown file system '") + fs +
                  "' (expected ext4, xfs, btrfs, tmpfs, memfd, memfd-hugetlb, hugetlbfs, fsdax or secretmem)");
        return nullptr;
    }
    auto f = file_create(*K(k), *kind, size);
    if (!f) return fail("pl_file_new", f.error()), nullptr;
    clear_error();
    return CF(*f);
}

pl_file* pl_dev_open(pl_kernel* k, const char* device) {
    if (!k) return einval("pl_dev_open", "k"), nullptr;
    if (!device) return einval("pl_dev_open", "device"), nullptr;
    auto f = dev_open(*K(k), device);
    if (!f) {
        fail("pl_dev_open", f.error(), std::string("no device '") + device + "' (expected pfnmap, mixedmap or iomem)");
        return nullptr;
    }
    clear_error();
    return CF(*f);
}

pl_file* pl_file_get(pl_file* f) {
    if (f) FI(f)->get();
    return f;
}

void pl_file_put(pl_file* f) {
    if (f) FI(f)->put();
}

long pl_pread(pl_file* f, void* buf, unsigned long len, unsigned long off) {
    if (!f) return einval("pl_pread", "f");
    if (!buf && len) return einval("pl_pread", "buf");
    return result_long("pl_pread", file_pread(*FI(f), buf, len, off));
}

long pl_pwrite(pl_file* f, const void* buf, unsigned long len, unsigned long off) {
    if (!f) return einval("pl_pwrite", "f");
    if (!buf && len) return einval("pl_pwrite", "buf");
    return result_long("pl_pwrite", file_pwrite(*FI(f), buf, len, off));
}

int pl_ftruncate(pl_file* f, unsigned long size) {
    if (!f) return static_cast<int>(einval("pl_ftruncate", "f"));
    return static_cast<int>(status_long("pl_ftruncate", file_truncate(*FI(f), size)));
}

int pl_fallocate(pl_file* f, int mode, unsigned long off, unsigned long len) {
    if (!f) return static_cast<int>(einval("pl_fallocate", "f"));
    return static_cast<int>(status_long("pl_fallocate", file_fallocate(*FI(f), mode, off, len)));
}

int pl_fsync(pl_file* f) {
    if (!f) return static_cast<int>(einval("pl_fsync", "f"));
    return static_cast<int>(status_long("pl_fsync", file_fsync(*FI(f))));
}

unsigned long pl_file_size(pl_file* f) { return f ? FI(f)->inode->size.load() : 0; }

long pl_file_read_disk(pl_file* f, void* buf, unsigned long len, unsigned long off) {
    if (!f) return einval("pl_file_read_disk", "f");
    if (!buf && len) return einval("pl_file_read_disk", "buf");
    return result_long("pl_file_read_disk", file_read_disk(*FI(f), buf, len, off));
}

// ---- address-space system calls ---------------------------------------------------------

long pl_mmap(task_struct* t, unsigned long addr, unsigned long len, int prot, int flags, pl_file* f,
             unsigned long off) {
    if (!t || !T(t)->mm) return einval("pl_mmap", "t");
    return result_long("pl_mmap", do_mmap(*T(t)->mm, addr, len, prot, flags, FI(f), off));
}

int pl_munmap(task_struct* t, unsigned long addr, unsigned long len) {
    if (!t || !T(t)->mm) return static_cast<int>(einval("pl_munmap", "t"));
    MmStruct& mm = *T(t)->mm;
    sync::WriteGuard g(mm.mmap_lock);
    return static_cast<int>(status_long("pl_munmap", do_munmap(mm, addr, len)));
}

int pl_mprotect(task_struct* t, unsigned long addr, unsigned long len, int prot) {
    if (!t || !T(t)->mm) return static_cast<int>(einval("pl_mprotect", "t"));
    return static_cast<int>(status_long("pl_mprotect", do_mprotect(*T(t)->mm, addr, len, prot)));
}

int pl_madvise(task_struct* t, unsigned long addr, unsigned long len, int advice) {
    if (!t || !T(t)->mm) return static_cast<int>(einval("pl_madvise", "t"));
    return static_cast<int>(status_long("pl_madvise", do_madvise(*T(t)->mm, addr, len, advice)));
}

long pl_mremap(task_struct* t, unsigned long old_addr, unsigned long old_len, unsigned long new_len, int flags,
               unsigned long new_addr) {
    if (!t || !T(t)->mm) return einval("pl_mremap", "t");
    return result_long("pl_mremap", do_mremap(*T(t)->mm, old_addr, old_len, new_len, flags, new_addr));
}

int pl_clear_refs(task_struct* t, int value) {
    if (!t || !T(t)->mm) return static_cast<int>(einval("pl_clear_refs", "t"));
    return static_cast<int>(status_long("pl_clear_refs", do_clear_refs(*T(t)->mm, value)));
}

// ---- CPU view -------------------------------------------------------------------------------

long pl_write(task_struct* t, unsigned long addr, const void* buf, unsigned long len) {
    if (!t || !T(t)->mm) return einval("pl_write", "t");
    if (!buf && len) return einval("pl_write", "buf");
    Status s = access_user(*T(t)->mm, addr, const_cast<void*>(buf), len, Access::Write);
    if (!s) return fail("pl_write", s.error());
    clear_error();
    return static_cast<long>(len);
}

long pl_read(task_struct* t, unsigned long addr, void* buf, unsigned long len) {
    if (!t || !T(t)->mm) return einval("pl_read", "t");
    if (!buf && len) return einval("pl_read", "buf");
    Status s = access_user(*T(t)->mm, addr, buf, len, Access::Read);
    if (!s) return fail("pl_read", s.error());
    clear_error();
    return static_cast<long>(len);
}

long pl_memset(task_struct* t, unsigned long addr, int c, unsigned long len) {
    if (!t || !T(t)->mm) return einval("pl_memset", "t");
    Status s = memset_user(*T(t)->mm, addr, c, len);
    if (!s) return fail("pl_memset", s.error());
    clear_error();
    return static_cast<long>(len);
}

long pl_access_process_vm(task_struct* t, unsigned long addr, void* buf, unsigned long len, unsigned int gup_flags) {
    if (!t) return einval("pl_access_process_vm", "t");
    if (!buf && len) return einval("pl_access_process_vm", "buf");
    if (gup_flags & (FOLL_GET | FOLL_PIN | FOLL_LONGTERM)) return einval("pl_access_process_vm", "gup_flags");
    clear_error();
    return access_process_vm(*T(t), addr, buf, len, gup_flags);
}

// ---- device view ------------------------------------------------------------------------------

int pl_page_read(page* p, unsigned int off, void* buf, unsigned int len) {
    if (!p) return static_cast<int>(einval("pl_page_read", "p"));
    if (!buf && len) return static_cast<int>(einval("pl_page_read", "buf"));
    Kernel* k = kernel_of_page(P(p));
    if (!k) return static_cast<int>(einval("pl_page_read", "p"));
    return static_cast<int>(status_long("pl_page_read", k->mem->read_frame(k->mem->page_to_pfn(P(p)), off, buf, len)));
}

int pl_page_write(page* p, unsigned int off, const void* buf, unsigned int len) {
    if (!p) return static_cast<int>(einval("pl_page_write", "p"));
    if (!buf && len) return static_cast<int>(einval("pl_page_write", "buf"));
    Kernel* k = kernel_of_page(P(p));
    if (!k) return static_cast<int>(einval("pl_page_write", "p"));
    return static_cast<int>(
        status_long("pl_page_write", k->mem->write_frame(k->mem->page_to_pfn(P(p)), off, buf, len)));
}

// ---- inspection ---------------------------------------------------------------------------------

page* pl_virt_to_page(task_struct* t, unsigned long addr) {
    if (!t || !T(t)->mm) return einval("pl_virt_to_page", "t"), nullptr;
    MmStruct& mm = *T(t)->mm;
    sync::ReadGuard lock(mm.mmap_lock);
    Vma* vma = mm.vma_lookup(addr);
    if (!vma) return nullptr;
    sync::SpinGuard g(mm.page_table_lock);
    PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
    if (!leaf.slot || !pte::present(leaf.entry)) return nullptr;
    uint64_t span = 1ULL << level_shift(leaf.level);
    pfn_t pfn = pte::pfn(leaf.entry) + ((addr & (span - 1)) >> PAGE_SHIFT);
    if (leaf.level == PtLevel::Pte ? !vm_normal_page(*vma, addr & PAGE_MASK, leaf.entry)
                                   : !vm_normal_page_huge(*vma, addr & ~(span - 1), leaf.entry, leaf.level)) {
        // Special entries have no usable struct page; the zero pages do.
        Page* any = mm.kernel.mem->pfn_to_page(pfn);
        if (!any || !mm.kernel.mem->is_any_zero_folio(page_folio(any))) return nullptr;
        return CP(any);
    }
    return CP(mm.kernel.mem->pfn_to_page(pfn));
}

page* pl_pfn_to_page(pl_kernel* k, unsigned long pfn) { return k ? CP(K(k)->mem->pfn_to_page(pfn)) : nullptr; }

const char* pl_pte_describe(task_struct* t, unsigned long addr) {
    static thread_local std::string out;
    if (!t || !T(t)->mm) return "none";
    MmStruct& mm = *T(t)->mm;
    sync::SpinGuard g(mm.page_table_lock);
    PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
    if (!leaf.slot) return "none";
    const char* lvl = leaf.level == PtLevel::Pte ? "pte" : leaf.level == PtLevel::Pmd ? "pmd" : "pud";
    out = pte::describe(leaf.entry) + " level=" + lvl;
    return out.c_str();
}

int pl_migrate_page(task_struct* t, unsigned long addr) {
    if (!t || !T(t)->mm) return static_cast<int>(einval("pl_migrate_page", "t"));
    MmStruct& mm = *T(t)->mm;
    // The mm may go once the lock is dropped (the task exiting meanwhile);
    // migration needs only the kernel and our reference on the folio.
    Kernel& kern = mm.kernel;
    Folio* folio = nullptr;
    {
        sync::ReadGuard lock(mm.mmap_lock);
        Vma* vma = mm.vma_lookup(addr);
        if (!vma) return static_cast<int>(fail("pl_migrate_page", Error(EFAULT), "nothing mapped"));
        sync::SpinGuard g(mm.page_table_lock);
        PageTable::Leaf leaf = mm.pgtable.find_leaf(addr);
        if (!leaf.slot || !pte::present(leaf.entry))
            return static_cast<int>(fail("pl_migrate_page", Error(EFAULT), "nothing mapped"));
        uint64_t span = 1ULL << level_shift(leaf.level);
        Page* p = leaf.level == PtLevel::Pte ? vm_normal_page(*vma, addr & PAGE_MASK, leaf.entry)
                                             : vm_normal_page_huge(*vma, addr & ~(span - 1), leaf.entry, leaf.level);
        if (!p) return static_cast<int>(fail("pl_migrate_page", Error(EFAULT), "no normal page mapped"));
        folio = page_folio(p);
        if (!folio->ref_try_add(1)) return static_cast<int>(fail("pl_migrate_page", Error(EAGAIN)));
    }
    Status s = migrate_folio(kern, folio, GFP_HIGHUSER_MOVABLE, MigrateReason::Syscall);
    if (!s) {
        kern.mem->folio_put(folio);
        return static_cast<int>(fail("pl_migrate_page", s.error()));
    }
    clear_error();
    return 0;
}

long pl_compact_memory(pl_kernel* k) {
    if (!k) return einval("pl_compact_memory", "k");
    clear_error();
    return compact_memory(*K(k));
}

int pl_memory_failure(pl_kernel* k, unsigned long pfn) {
    if (!k) return static_cast<int>(einval("pl_memory_failure", "k"));
    return static_cast<int>(status_long("pl_memory_failure", memory_failure(*K(k), pfn)));
}

// ---- kernel names -------------------------------------------------------------------------------

folio* page_folio(page* p) { return p ? reinterpret_cast<folio*>(pl::page_folio(P(p))) : nullptr; }
page* folio_page(folio* f, unsigned long n) { return f ? CP(F(f)->page(n)) : nullptr; }

unsigned long page_to_pfn(page* p) {
    if (!p) return 0;
    Kernel* k = kernel_of_page(P(p));
    return k ? k->mem->page_to_pfn(P(p)) : 0;
}

unsigned long folio_nr_pages(folio* f) { return f ? F(f)->nr_pages() : 0; }
int page_ref_count(page* p) { return p ? pl::page_folio(P(p))->ref_count() : 0; }
int folio_ref_count(folio* f) { return f ? F(f)->ref_count() : 0; }
int page_mapcount(page* p) { return p ? pl::page_mapcount(P(p)) : 0; }
int folio_mapcount(folio* f) { return f ? F(f)->mapcount() : 0; }
int pl_folio_pincount(folio* f) { return f && F(f)->is_large() ? F(f)->pincount() : 0; }
int PageCompound(page* p) { return p && pl::page_folio(P(p))->is_large(); }
int PageAnonExclusive(page* p) {
    if (!p) return 0;
    Folio* f = pl::page_folio(P(p));
    // hugetlb keeps the flag on the head (PageAnonExclusive() redirects).
    return pl::PageAnonExclusive(f->is_hugetlb() ? f->head() : P(p));
}
int PageAnon(page* p) { return p && pl::page_folio(P(p))->is_anon(); }
int PageDirty(page* p) { return p && pl::page_folio(P(p))->is_dirty(); }
int PageWriteback(page* p) { return p && pl::page_folio(P(p))->is_writeback(); }
int PageHuge(page* p) { return p && pl::page_folio(P(p))->is_hugetlb(); }
int PageReserved(page* p) { return p && pl::page_folio(P(p))->is_reserved(); }
int is_zero_page(page* p) {
    if (!p) return 0;
    Kernel* k = kernel_of_page(P(p));
    return k && k->mem->is_any_zero_folio(pl::page_folio(P(p)));
}

void get_page(page* p) {
    if (!p) return;
    Folio* f = pl::page_folio(P(p));
    f->ref_add(1);
    if (Kernel* k = kernel_of_page(P(p))) k->ref_note(f, 1);
}

void put_page(page* p) {
    if (!p) return;
    Folio* f = pl::page_folio(P(p));
    Kernel* k = kernel_of_page(P(p));
    if (!k) return;
    // The pin tracker checks that this put has a reference to drop other
    // than a PIN's ("put_page_on_pinned"); it proceeds as upstream would.
    pin_track_put_page(*k, f, P(p));
    k->mem->folio_put(f);
}

void folio_get(folio* f) { get_page(f ? CP(F(f)->head()) : nullptr); }
void folio_put(folio* f) { put_page(f ? CP(F(f)->head()) : nullptr); }

void set_page_dirty_lock(page* p) {
    if (!p) return;
    Folio* f = pl::page_folio(P(p));
    FolioLockGuard g(f);
    folio_mark_dirty(f);
}

// ---- GUP helpers that need the page's kernel -------------------------------------------

int page_maybe_dma_pinned(page* p) { return p && pl::page_folio(P(p))->maybe_dma_pinned(); }

int folio_is_longterm_pinnable(folio* f) {
    Kernel* k = f ? kernel_of_page(F(f)->head()) : nullptr;
    if (!k) {
        einval("folio_is_longterm_pinnable", "folio");
        return 0;
    }
    clear_error();
    return pl::folio_is_longterm_pinnable(*k->mem, F(f));
}

void folio_add_pin(folio* cf) {
    if (!cf) return;
    Folio* f = F(cf);
    Kernel* k = kernel_of_page(f->head());
    if (!k || k->mem->is_zero_folio(f)) return;  // the 4 KiB zero page is never pinned; the huge one is
    // Only for a folio the caller has pinned already (WARN_ON_ONCE upstream).
    if (f->is_large() ? f->pincount() < 1 : f->ref_count() < GUP_PIN_COUNTING_BIAS)
        k->warn("folio_add_pin", "folio is not pinned");
    (void)try_grab_folio(*k, f, 1, FOLL_PIN);
}

int folio_add_pins(folio* cf, unsigned int pins) {
    if (!cf) return static_cast<int>(einval("folio_add_pins", "folio"));
    // More than _refcount can hold at GUP_PIN_COUNTING_BIAS per pin.
    constexpr unsigned kMaxPins = (1u << 21) - 1;
    if (pins > kMaxPins) return static_cast<int>(einval("folio_add_pins", "pins"));
    Folio* f = F(cf);
    Kernel* k = kernel_of_page(f->head());
    if (!k) return static_cast<int>(einval("folio_add_pins", "folio"));
    if (!f->maybe_dma_pinned()) k->warn("folio_add_pins", "folio is not pinned");
    Status s = try_grab_folio(*k, f, static_cast<int>(pins), FOLL_PIN);
    return static_cast<int>(status_long("folio_add_pins", s));
}

void mmap_read_lock(mm_struct* mm) {
    if (mm) pl::mmap_read_lock(*M(mm));
}
void mmap_read_unlock(mm_struct* mm) {
    if (!mm) return;
    vmas_lock_released(*M(mm));  // vmas[] this thread got under the lock now dangle
    pl::mmap_read_unlock(*M(mm));
}
void mmap_write_lock(mm_struct* mm) {
    if (mm) pl::mmap_write_lock(*M(mm));
}
void mmap_write_unlock(mm_struct* mm) {
    if (!mm) return;
    vmas_lock_released(*M(mm));
    pl::mmap_write_unlock(*M(mm));
}

vm_area_struct* vma_lookup(mm_struct* mm, unsigned long addr) {
    if (!mm) return nullptr;
    Vma* v = M(mm)->vma_lookup(addr);
    vmas_forget(v);  // a fresh pointer: no longer the stale vmas[] entry it may equal
    return reinterpret_cast<vm_area_struct*>(v);
}

// A VMA that vmas[] handed out (before v6.5) and whose mmap_lock hold has ended
// may be freed memory: refuse it (WARN, 0, pl_last_error) without touching it.
unsigned long pl_vma_start(vm_area_struct* v) {
    std::string why;
    if (!vmas_use_ok(v, "pl_vma_start", &why)) return set_error("pl_vma_start: " + why), 0;
    return v ? V(v)->start : 0;
}
unsigned long pl_vma_end(vm_area_struct* v) {
    std::string why;
    if (!vmas_use_ok(v, "pl_vma_end", &why)) return set_error("pl_vma_end: " + why), 0;
    return v ? V(v)->end : 0;
}
unsigned long pl_vma_flags(vm_area_struct* v) {
    std::string why;
    if (!vmas_use_ok(v, "pl_vma_flags", &why)) return set_error("pl_vma_flags: " + why), 0;
    return v ? V(v)->flags : 0;
}

}  // extern "C"
