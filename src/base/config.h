// pinlab — the kernel configuration: one line of space-separated key=value
// words, e.g. "era=v5.10 ram=8G thp=madvise arch.pte_special=off".
//
// Keys are stable: outside programs and scenario headers rely on them.
// Config::describe_keys() lists them with their defaults.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace pl {

// Historical behaviours switch on the era. Ordered: later eras compare greater.
enum class Era : uint8_t {
    v4_8,    // before the Dirty COW fix (FOLL_COW)
    v5_3,    // put_user_page() introduced
    v5_5,
    v5_8,
    v5_10,   // frame_vector: pin_user_pages_locked(), follow_pfn for VM_IO|VM_PFNMAP
    v5_11,   // (frame_vector unchanged: pin_user_pages_fast(FOLL_LONGTERM) came in v5.12, see v5_16)
    v5_16,   // frame_vector: pin_user_pages_fast(FOLL_LONGTERM), follow_pfn fallback
    v6_0,
    v6_4,    // last era with the vmas output array
    v6_5,
    current,
};

std::string_view era_name(Era e);

enum class ThpMode : uint8_t { always, madvise, never };

struct Config {
    Era era = Era::current;
    uint64_t ram = 4ULL << 30;           // bytes of simulated RAM
    uint64_t movable = 0;                 // bytes of it in ZONE_MOVABLE (top of RAM)
    uint64_t cma = 0;                     // bytes of MIGRATE_CMA pageblocks in ZONE_NORMAL
    uint64_t device_mem = 256ULL << 20;   // bytes of ZONE_DEVICE memory available to pgmaps
    uint64_t hugetlb_2m = 64;             // 2 MiB huge pages reserved at boot
    uint64_t hugetlb_1g = 1;              // 1 GiB huge pages reserved at boot
    ThpMode thp = ThpMode::always;
    bool thp_use_zero_page = true;        // /sys/kernel/mm/transparent_hugepage/use_zero_page
    bool arch_pte_special = true;         // CONFIG_ARCH_HAS_PTE_SPECIAL
    bool arch_gup_fast = true;            // CONFIG_HAVE_GUP_FAST (HAVE_FAST_GUP before v6.10)
    bool arch_pmd_special = true;         // CONFIG_ARCH_SUPPORTS_PMD_PFNMAP / pmd_special
    bool arch_pte_devmap = false;         // CONFIG_ARCH_HAS_PTE_DEVMAP (gone upstream since ~v6.17)
    // FOLL_SAME_FILE (Lorenzo Stoakes' vmas-removal series v1-v3, Apr 2023;
    // dropped in v4, never merged): off, GUP refuses the flag with a WARN.
    bool gup_foll_same_file = false;
    // dma-buf mmap lockdown proposed in seed 003 (Feb 2021, never merged):
    // WARN when an exporter's mmap leaves the VMA without VM_PFNMAP, and
    // refuse MAP_PRIVATE (COW) mappings of a dma-buf with -EINVAL.
    bool dmabuf_require_pfnmap = false;
    bool dmabuf_refuse_private = false;
    // debugfs fault_around_bytes: how much do_fault_around() maps around a
    // file read fault (rounded down to a power of two pages, at most a PTE
    // table); 4096 (one page) turns fault-around off.
    uint64_t fault_around_bytes = 65536;
    // The disk file systems' bdi read_ahead_kb (/sys/block/*/queue): the
    // mmap read-around window of a major file fault (do_sync_mmap_readahead())
    // is this many KiB; 0 reads only the faulting page.
    uint64_t readahead_kb = 128;
    // Protections of the lockless GUP-fast walk that a race scenario can
    // switch off (docs/FIDELITY.md, "Protections that can be switched off"):
    // gup_fast() gives up a FOLL_PIN walk when fork's write_protect_seq is
    // odd or moved (57efa1fe5957, v5.11; off by default before era v5.11);
    // page tables are freed after an RCU grace period, which GUP-fast's
    // walk blocks (upstream: IRQs off against the IPI or
    // MMU_GATHER_RCU_TABLE_FREE); gup_fast_pte_range() re-reads the PTE
    // after grabbing the folio.
    bool gup_fast_fork_seqcount = true;
    bool mm_pt_free_rcu = true;
    bool gup_fast_pte_recheck = true;

    bool era_at_least(Era e) const { return era >= e; }

    // Parses `text` on top of the defaults. Errors name the offending word.
    static Result<Config> parse(std::string_view text);
    // Applies one more key=value word; the message names it on error.
    Status set(std::string_view key, std::string_view value, std::string* why);

    // The canonical text form: every key, in a stable order.
    std::string to_string() const;
    // One line per key: "key  default  description".
    static std::vector<std::string> describe_keys();

    // Human-readable reason for the last parse error on this thread.
    static const std::string& last_error();
};

// "64", "4K", "8M", "2G", "1T" (binary units). Errors on overflow or junk.
Result<uint64_t> parse_size(std::string_view s);
std::string format_size(uint64_t bytes);

}  // namespace pl
