// pinlab — get_dump_page() (upstream mm/gup.c, CONFIG_ELF_CORE): the page a
// core dump writes for one user address, or NULL for a hole in the core file.
//
// FOLL_FORCE (also mappings the process may not read itself, e.g. PROT_NONE
// ones that are VM_MAYREAD), FOLL_DUMP (an anonymous hole or the zero page is
// a hole, never allocated), FOLL_GET (the dumper put_page()s it). No
// FOLL_UNLOCKABLE: the fault never drops the lock. `locked` follows
// __get_user_pages_locked(): 1 = the caller holds the mmap_lock for read and
// keeps it; 0 = taken and released here.
#include <cerrno>

#include "debug/pin_tracker.h"
#include "gup/foll_flags.h"
#include "gup/gup_slow.h"
#include "kernel/task.h"
#include "pinlab/kapi.h"

using namespace pl;

extern "C" {

page* get_dump_page(unsigned long addr, int* locked) {
    GupCallScope owner("get_dump_page");  // the pin tracker's default owner
    Task* t = current();
    if (!t || !t->mm || !locked) return nullptr;
    Page* p = nullptr;
    long ret = __get_user_pages_locked(*t->mm, addr, 1, &p, locked, FOLL_FORCE | FOLL_DUMP | FOLL_GET);
    return ret == 1 ? reinterpret_cast<page*>(p) : nullptr;
}

}  // extern "C"
