#include "base/config.h"

#include <array>
#include <charconv>
#include <limits>

#include "base/units.h"

namespace pl {
namespace {

thread_local std::string t_last_error;

constexpr std::array<std::pair<Era, std::string_view>, 11> kEras{{
    {Era::v4_8, "v4.8"},   {Era::v5_3, "v5.3"},   {Era::v5_5, "v5.5"},  {Era::v5_8, "v5.8"},
    {Era::v5_10, "v5.10"}, {Era::v5_11, "v5.11"}, {Era::v5_16, "v5.16"}, {Era::v6_0, "v6.0"},
    {Era::v6_4, "v6.4"},   {Era::v6_5, "v6.5"},   {Era::current, "current"},
}};

std::string era_list() {
    std::string s;
    for (auto& [e, n] : kEras) s += (s.empty() ? "" : ", ") + std::string(n);
    return s;
}

Result<bool> parse_switch(std::string_view v) {
    if (v == "on" || v == "y" || v == "yes" || v == "1" || v == "true") return true;
    if (v == "off" || v == "n" || v == "no" || v == "0" || v == "false") return false;
    return Error(EINVAL);
}

struct KeyInfo {
    std::string_view key, description;
};

constexpr std::array<KeyInfo, 21> kKeys{{
    {"era", "kernel era whose historical behaviour is modelled"},
    {"ram", "simulated RAM (bytes; K/M/G/T suffixes)"},
    {"movable", "part of RAM placed in ZONE_MOVABLE (movablecore=)"},
    {"cma", "part of ZONE_NORMAL in MIGRATE_CMA pageblocks (cma=)"},
    {"device_mem", "ZONE_DEVICE memory available to pgmaps (fsdax, device-coherent, p2pdma)"},
    {"hugetlb_2m", "2 MiB hugetlb pages reserved at boot (hugepages=)"},
    {"hugetlb_1g", "1 GiB hugetlb pages reserved at boot"},
    {"thp", "transparent_hugepage/enabled: always, madvise or never"},
    {"thp.use_zero_page", "map the huge zero page on THP read faults"},
    {"arch.pte_special", "CONFIG_ARCH_HAS_PTE_SPECIAL: PTEs can be marked special"},
    {"arch.gup_fast", "CONFIG_HAVE_GUP_FAST: the lockless GUP-fast walk exists"},
    {"arch.pmd_special", "PMD/PUD leaves can be marked special (huge PFN maps)"},
    {"arch.pte_devmap", "CONFIG_ARCH_HAS_PTE_DEVMAP: devmap bit on PTE/PMD/PUD"},
    {"gup.foll_same_file", "FOLL_SAME_FILE (proposed Apr 2023, never merged): GUP fails unless all VMAs share vm_file"},
    {"dmabuf.require_pfnmap", "seed 003 (never merged): WARN when a dma-buf exporter's mmap does not set VM_PFNMAP"},
    {"dmabuf.refuse_private", "seed 003 thread (never merged): MAP_PRIVATE mmap of a dma-buf fails with -EINVAL"},
    {"fault_around_bytes", "debugfs fault_around_bytes: file read faults also map the cached pages of this aligned window (do_fault_around); 4K turns it off"},
    {"readahead_kb", "bdi read_ahead_kb of the disk file systems: a major file read fault reads this window around the page (do_sync_mmap_readahead); 0 reads just the page"},
    {"gup.fast_fork_seqcount", "a FOLL_PIN gup_fast() gives up while fork's copy_page_range() holds mm->write_protect_seq (57efa1fe5957, v5.11); default off before era v5.11 unless given; off: GUP-fast can pin a page fork is sharing (race examples/races/gup_fast_vs_fork.pin)"},
    {"mm.pt_free_rcu", "free_pgtables() frees page tables after an RCU grace period that GUP-fast's lockless walk holds off (IRQs off / MMU_GATHER_RCU_TABLE_FREE); off: freed at once (quarantined and poisoned, GUP-fast WARNs on reading one; examples/races/gup_fast_vs_munmap.pin)"},
    {"gup.fast_pte_recheck", "gup_fast_pte_range() re-reads the PTE after grabbing the folio and backs off if it changed; off: a pin can land on a folio migration just unmapped (examples/races/longterm_pin_vs_migration.pin)"},
}};

}  // namespace

std::string_view era_name(Era e) {
    for (auto& [era, n] : kEras)
        if (era == e) return n;
    return "?";
}

Result<uint64_t> parse_size(std::string_view s) {
    if (s.empty()) return Error(EINVAL);
    uint64_t shift = 0;
    switch (s.back()) {
        case 'K': case 'k': shift = 10; break;
        case 'M': case 'm': shift = 20; break;
        case 'G': case 'g': shift = 30; break;
        case 'T': case 't': shift = 40; break;
        default: break;
    }
    if (shift) s.remove_suffix(1);
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return Error(EINVAL);
    if (shift && v > (std::numeric_limits<uint64_t>::max() >> shift)) return Error(ERANGE);
    return v << shift;
}

std::string format_size(uint64_t b) {
    const char* units = "KMGT";
    int u = -1;
    while (b >= 1024 && (b % 1024) == 0 && u < 3) { b /= 1024; ++u; }
    return std::to_string(b) + (u >= 0 ? std::string(1, units[u]) : std::string());
}

Status Config::set(std::string_view key, std::string_view value, std::string* why) {
    auto fail = [&](std::string msg) -> Status {
        if (why) *why = std::move(msg);
        return Error(EINVAL);
    };
    auto size_key = [&](uint64_t& field) -> Status {
        auto r = parse_size(value);
        if (!r) return fail("bad size '" + std::string(value) + "' for key '" + std::string(key) +
                            "' (expected a number with an optional K, M, G or T suffix)");
        field = *r;
        return ok_status();
    };
    auto count_key = [&](uint64_t& field) -> Status {
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v, 10);
        if (value.empty() || ec != std::errc() || p != value.data() + value.size())
            return fail("bad count '" + std::string(value) + "' for key '" + std::string(key) + "'");
        field = v;
        return ok_status();
    };
    auto switch_key = [&](bool& field) -> Status {
        auto r = parse_switch(value);
        if (!r) return fail("bad value '" + std::string(value) + "' for key '" + std::string(key) +
                            "' (expected on or off)");
        field = *r;
        return ok_status();
    };

    if (key == "era") {
        for (auto& [e, n] : kEras)
            if (n == value) { era = e; return ok_status(); }
        return fail("unknown era '" + std::string(value) + "' (known: " + era_list() + ")");
    }
    if (key == "ram") return size_key(ram);
    if (key == "movable") return size_key(movable);
    if (key == "cma") return size_key(cma);
    if (key == "device_mem") return size_key(device_mem);
    if (key == "hugetlb_2m") return count_key(hugetlb_2m);
    if (key == "hugetlb_1g") return count_key(hugetlb_1g);
    if (key == "thp") {
        if (value == "always") thp = ThpMode::always;
        else if (value == "madvise") thp = ThpMode::madvise;
        else if (value == "never") thp = ThpMode::never;
        else return fail("bad value '" + std::string(value) + "' for key 'thp' (expected always, madvise or never)");
        return ok_status();
    }
    if (key == "thp.use_zero_page") return switch_key(thp_use_zero_page);
    if (key == "arch.pte_special") return switch_key(arch_pte_special);
    if (key == "arch.gup_fast") return switch_key(arch_gup_fast);
    if (key == "arch.pmd_special") return switch_key(arch_pmd_special);
    if (key == "arch.pte_devmap") return switch_key(arch_pte_devmap);
    if (key == "gup.foll_same_file") return switch_key(gup_foll_same_file);
    if (key == "dmabuf.require_pfnmap") return switch_key(dmabuf_require_pfnmap);
    if (key == "dmabuf.refuse_private") return switch_key(dmabuf_refuse_private);
    if (key == "gup.fast_fork_seqcount") return switch_key(gup_fast_fork_seqcount);
    if (key == "mm.pt_free_rcu") return switch_key(mm_pt_free_rcu);
    if (key == "gup.fast_pte_recheck") return switch_key(gup_fast_pte_recheck);
    if (key == "fault_around_bytes") {
        // fault_around_bytes_set(): more than a PTE table's worth is -EINVAL.
        uint64_t v = 0;
        if (Status s = size_key(v); !s) return s;
        if (v / PAGE_SIZE > PTRS_PER_TABLE)
            return fail("fault_around_bytes " + std::string(value) + " is more than a page table maps (2M)");
        fault_around_bytes = v;
        return ok_status();
    }
    if (key == "readahead_kb") {
        // Like read_ahead_kb: KiB, turned into whole pages (ra_pages).
        uint64_t v = 0;
        if (Status s = count_key(v); !s) return s;
        if (v > 65536) return fail("readahead_kb " + std::string(value) + " is more than the model allows (65536)");
        readahead_kb = v;
        return ok_status();
    }
    return fail("unknown configuration key '" + std::string(key) + "'");
}

Result<Config> Config::parse(std::string_view text) {
    Config c;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
        if (i >= text.size()) break;
        size_t j = i;
        while (j < text.size() && text[j] != ' ' && text[j] != '\t' && text[j] != '\n') ++j;
        std::string_view word = text.substr(i, j - i);
        size_t eq = word.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            t_last_error = "config word '" + std::string(word) + "' at column " + std::to_string(i + 1) +
                           " is not key=value";
            return Error(EINVAL);
        }
        std::string why;
        if (!c.set(word.substr(0, eq), word.substr(eq + 1), &why)) {
            t_last_error = why + " (config column " + std::to_string(i + 1) + ")";
            return Error(EINVAL);
        }
        i = j;
    }
    // Era-dependent defaults, unless the key was given: before v5.11 fork
    // had no write_protect_seq (57efa1fe5957).
    if (text.find("gup.fast_fork_seqcount=") == std::string_view::npos) c.gup_fast_fork_seqcount = c.era_at_least(Era::v5_11);
    // Cross-key checks.
    auto fail = [](std::string m) -> Result<Config> { t_last_error = std::move(m); return Error(EINVAL); };
    if (c.ram < (64ULL << 20) || c.ram % (2ULL << 20))
        return fail("ram must be a multiple of 2M and at least 64M (got " + format_size(c.ram) + ")");
    if (c.ram > (1ULL << 40)) return fail("ram larger than 1T is not supported (got " + format_size(c.ram) + ")");
    if (c.movable % (2ULL << 20) || c.movable >= c.ram)
        return fail("movable must be a multiple of 2M and smaller than ram");
    if (c.cma % (2ULL << 20) || c.cma + c.movable >= c.ram)
        return fail("cma must be a multiple of 2M and fit beside movable in ram");
    if (c.device_mem % (2ULL << 20) || c.device_mem > (1ULL << 40))
        return fail("device_mem must be a multiple of 2M and at most 1T");
    uint64_t normal = c.ram - c.movable;
    uint64_t huge = c.hugetlb_2m * (2ULL << 20) + c.hugetlb_1g * (1ULL << 30);
    if (c.hugetlb_2m > (1ULL << 20) || c.hugetlb_1g > 1024 || huge + (32ULL << 20) > normal) {
        // The default reserves a 1G page; shrink it silently on small machines
        // only when the user did not ask for it.
        if (text.find("hugetlb_1g=") == std::string_view::npos && c.hugetlb_1g) {
            c.hugetlb_1g = 0;
            huge = c.hugetlb_2m * (2ULL << 20);
        }
        if (text.find("hugetlb_2m=") == std::string_view::npos && huge + (32ULL << 20) > normal) {
            c.hugetlb_2m = 0;
            huge = c.hugetlb_1g * (1ULL << 30);
        }
        if (huge + (32ULL << 20) > normal)
            return fail("hugetlb_2m/hugetlb_1g reserve " + format_size(huge) +
                        ", more than ZONE_NORMAL can spare (" + format_size(normal) + ")");
    }
    return c;
}

std::string Config::to_string() const {
    std::string s;
    s += "era=" + std::string(era_name(era));
    s += " ram=" + format_size(ram);
    s += " movable=" + format_size(movable);
    s += " cma=" + format_size(cma);
    s += " device_mem=" + format_size(device_mem);
    s += " hugetlb_2m=" + std::to_string(hugetlb_2m);
    s += " hugetlb_1g=" + std::to_string(hugetlb_1g);
    s += std::string(" thp=") + (thp == ThpMode::always ? "always" : thp == ThpMode::madvise ? "madvise" : "never");
    s += std::string(" thp.use_zero_page=") + (thp_use_zero_page ? "on" : "off");
    s += std::string(" arch.pte_special=") + (arch_pte_special ? "on" : "off");
    s += std::string(" arch.gup_fast=") + (arch_gup_fast ? "on" : "off");
    s += std::string(" arch.pmd_special=") + (arch_pmd_special ? "on" : "off");
    s += std::string(" arch.pte_devmap=") + (arch_pte_devmap ? "on" : "off");
    s += std::string(" gup.foll_same_file=") + (gup_foll_same_file ? "on" : "off");
    s += std::string(" dmabuf.require_pfnmap=") + (dmabuf_require_pfnmap ? "on" : "off");
    s += std::string(" dmabuf.refuse_private=") + (dmabuf_refuse_private ? "on" : "off");
    s += " fault_around_bytes=" + format_size(fault_around_bytes);
    s += " readahead_kb=" + std::to_string(readahead_kb);
    s += std::string(" gup.fast_fork_seqcount=") + (gup_fast_fork_seqcount ? "on" : "off");
    s += std::string(" mm.pt_free_rcu=") + (mm_pt_free_rcu ? "on" : "off");
    s += std::string(" gup.fast_pte_recheck=") + (gup_fast_pte_recheck ? "on" : "off");
    return s;
}

std::vector<std::string> Config::describe_keys() {
    Config d;
    std::string canon = d.to_string();
    std::vector<std::string> out;
    for (auto& k : kKeys) {
        std::string def;
        auto pos = canon.find(std::string(k.key) + "=");
        if (pos != std::string::npos) {
            auto end = canon.find(' ', pos);
            def = canon.substr(pos + k.key.size() + 1, end == std::string::npos ? std::string::npos : end - pos - k.key.size() - 1);
        }
        out.push_back(std::string(k.key) + "  " + def + "  " + std::string(k.description));
    }
    return out;
}

const std::string& Config::last_error() { return t_last_error; }

}  // namespace pl
