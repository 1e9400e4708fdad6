#include "mm/pte.h"

#include <cstdio>

namespace pl::pte {

std::string describe(entry_t e) {
    if (none(e)) return "none";
    std::string s;
    auto add = [&](bool on, const char* name) {
        if (!on) return;
        if (!s.empty()) s += ' ';
        s += name;
    };
    char buf[32];
    if (is_swap(e)) {
        switch (swp_type(e)) {
            case SwpType::MigrationRead: s = "migration-read"; break;
            case SwpType::MigrationReadExclusive: s = "migration-read-exclusive"; break;
            case SwpType::MigrationWrite: s = "migration-write"; break;
            case SwpType::Hwpoison: s = "hwpoison"; break;
            default: s = "swap"; break;
        }
        add(soft_dirty(e), "soft_dirty");
        add(uffd_wp(e), "uffd_wp");
        std::snprintf(buf, sizeof buf, " pfn=%#llx", static_cast<unsigned long long>(pfn(e)));
        return s + buf;
    }
    if (is_table(e)) return "table";
    add(present(e), "present");
    add(write(e), "write");
    add(dirty(e), "dirty");
    add(young(e), "young");
    add(huge(e), "huge");
    add(special(e), "special");
    add(devmap(e), "devmap");
    add(soft_dirty(e), "soft_dirty");
    add(e & PROTNONE, "protnone");
    add(uffd_wp(e), "uffd_wp");
    std::snprintf(buf, sizeof buf, " pfn=%#llx", static_cast<unsigned long long>(pfn(e)));
    return s + buf;
}

}  // namespace pl::pte
