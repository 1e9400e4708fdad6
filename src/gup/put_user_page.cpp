// pinlab — put_user_page*() of v5.2-v5.5 (seed 004, John Hubbard's
// "put_user_pages(): miscellaneous call sites").
//
// Introduced by fc1d8e7cca2d ("mm: introduce put_user_page*(), placeholder
// versions", v5.2) so that every get_user_pages() caller would release its
// pages through a dedicated call before GUP references became separately
// tracked. Until then they were put_page() under another name: they released
// FOLL_GET references, and put_user_pages_dirty_lock() dirtied with
// set_page_dirty_lock() first. v5.4 (2d15eb31b50a) gave
// put_user_pages_dirty_lock() its make_dirty argument (v5.3 always dirtied;
// the model's v5.3 behaves as make_dirty = true did); v5.6 renamed the family
// to unpin_user_page*() and made it release FOLL_PIN pins, which is what
// src/gup/pin_accounting.cpp models.
//
// In a kernel of another era the functions do not exist: the model WARNs,
// names the replacement, and releases nothing.
#include <string>

#include "base/config.h"
#include "kapi/kapi_internal.h"
#include "kernel/kernel.h"
#include "mm/folio.h"
#include "mm/page.h"
#include "pinlab/kapi.h"

using namespace pl;

namespace {

Page* P(page* p) { return reinterpret_cast<Page*>(p); }

// The kernel of the first page of the array (all come from one GUP call).
Kernel* kernel_of(page** pages, unsigned long npages) {
    for (unsigned long i = 0; i < npages; i++)
        if (pages[i]) return kapi_kernel_of_page(P(pages[i]));
    return nullptr;
}

// Does `fn` exist in k's era? If not: WARN naming the replacement.
bool era_has_put_user_page(Kernel& k, const char* fn) {
    const Era era = k.cfg.era;
    if (era >= Era::v5_3 && era <= Era::v5_5) return true;
    const std::string name(fn);
    std::string what = name + "() does not exist in era " + std::string(era_name(era)) + ": ";
    if (era < Era::v5_3)
        what += "it arrived in v5.2; release get_user_pages() references with put_page()";
    else
        what += "renamed unpin_user_page*() in v5.6, which releases FOLL_PIN pins (pin_user_pages*()); "
                "release get_user_pages() references with put_page()";
    what += "; nothing was released";
    k.warn(fn, what);
    kapi_set_error(name + ": not in era " + std::string(era_name(era)));
    return false;
}

}  // namespace

extern "C" {

void put_user_page(page* p) {
    if (!p) return;
    Kernel* k = kapi_kernel_of_page(P(p));
    if (!k || !era_has_put_user_page(*k, "put_user_page")) return;
    ::put_page(p);  // the placeholder it was
}

void put_user_pages(page** pages, unsigned long npages) {
    if (!pages) return;
    Kernel* k = kernel_of(pages, npages);
    if (!k || !era_has_put_user_page(*k, "put_user_pages")) return;
    // Upstream loops over put_user_page(); a NULL entry would oops there.
    for (unsigned long i = 0; i < npages; i++)
        if (pages[i]) ::put_page(pages[i]);
}

void put_user_pages_dirty_lock(page** pages, unsigned long npages, bool make_dirty) {
    if (!pages) return;
    Kernel* k = kernel_of(pages, npages);
    if (!k || !era_has_put_user_page(*k, "put_user_pages_dirty_lock")) return;
    for (unsigned long i = 0; i < npages; i++) {
        if (!pages[i]) continue;
        // The head page carries PG_dirty; an already dirty page is left alone
        // (a race with clear_page_dirty_for_io() is harmless either way).
        page* head = reinterpret_cast<page*>(compound_head(P(pages[i])));
        if (make_dirty && !::PageDirty(head)) ::set_page_dirty_lock(head);
        ::put_page(head);
    }
}

}  // extern "C"
