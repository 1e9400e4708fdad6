/*
 * pin_tour.c — a driver author's first hour with pinlab's GUP: what
 * pin_user_pages() says yes and no to, and where the pins show up.
 *
 *   1. A VM_PFNMAP mapping (a device's remap_pfn_range()) cannot be pinned: -EFAULT.
 *   2. A long-term R/W pin of a shared ext4 mapping is refused (-EFAULT): the
 *      file system needs to write-protect its pages for writeback.
 *   3. The same on a memfd succeeds: shmem does no dirty tracking.
 *   4. A R/O pin taken before fork() stays coherent: the parent's later
 *      write reaches the pinned page (the child gets its own copy).
 *   5. Where the pins live: GUP_PIN_COUNTING_BIAS in a small folio's
 *      refcount, _pincount in a large one, and /proc/vmstat's
 *      nr_foll_pin_acquired / nr_foll_pin_released.
 *
 * Build against an installed pinlab:
 *   cc pin_tour.c $(pkg-config --cflags --libs pinlab)
 */
#include <pinlab/kapi.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, " [%s]\n", pl_last_error());         \
            failures++;                                          \
        }                                                        \
    } while (0)

#define PAGE 4096UL
#define HUGE (2UL << 20)

/* pin_user_pages() needs the caller to hold the mmap_lock for read. */
static long pin(struct task_struct *t, unsigned long addr, unsigned long n, unsigned int flags, struct page **pages) {
    mmap_read_lock(pl_task_mm(t));
    long r = pin_user_pages(addr, n, flags, pages);
    mmap_read_unlock(pl_task_mm(t));
    return r;
}

int main(void) {
    struct pl_kernel *k = pl_kernel_new("ram=512M thp=always");
    if (!k) {
        fprintf(stderr, "pl_kernel_new: %s\n", pl_last_error());
        return 1;
    }
    struct task_struct *t = pl_task_new(k);
    pl_set_current(t); /* pin_user_pages() works on current->mm */
    struct page *pages[512];

    /* 1. VM_PFNMAP: check_vma_flags() refuses VM_IO|VM_PFNMAP. */
    struct pl_file *dev = pl_dev_open(k, "pfnmap");
    long dmap = pl_mmap(t, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
    CHECK(dmap > 0, "mmap of the pfnmap device");
    long r = pin(t, (unsigned long)dmap, 1, FOLL_WRITE, pages);
    CHECK(r == -EFAULT, "pin of VM_PFNMAP: %ld, expected -EFAULT", r);
    r = pin_user_pages_fast((unsigned long)dmap, 1, FOLL_WRITE, pages);
    CHECK(r == -EFAULT, "pin_user_pages_fast of VM_PFNMAP: %ld, expected -EFAULT", r);
    printf("1. VM_PFNMAP pin: %ld (-EFAULT)\n", r);

    /* 2. Shared ext4, R/W, long-term: writable_file_mapping_allowed() says no. */
    struct pl_file *ext4 = pl_file_new(k, "ext4", 4 * PAGE);
    long emap = pl_mmap(t, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ext4, 0);
    CHECK(emap > 0 && pl_memset(t, (unsigned long)emap, 'e', 4 * PAGE) == (long)(4 * PAGE), "ext4 map");
    r = pin(t, (unsigned long)emap, 4, FOLL_WRITE | FOLL_LONGTERM, pages);
    CHECK(r == -EFAULT, "R/W longterm pin of shared ext4: %ld, expected -EFAULT", r);
    r = pin_user_pages_fast((unsigned long)emap, 4, FOLL_WRITE | FOLL_LONGTERM, pages);
    CHECK(r == -EFAULT, "the same through GUP-fast: %ld, expected -EFAULT", r);
    /* A short-term pin (O_DIRECT-style) of the same pages is fine. */
    r = pin(t, (unsigned long)emap, 4, FOLL_WRITE, pages);
    CHECK(r == 4, "short-term R/W pin of shared ext4: %ld", r);
    if (r > 0) unpin_user_pages_dirty_lock(pages, (unsigned long)r, true);
    printf("2. shared ext4 R/W longterm pin: -EFAULT; short-term pin: ok\n");

    /* 3. memfd: shmem needs no writeback, so the long-term pin succeeds. */
    struct pl_file *memfd = pl_file_new(k, "memfd", 4 * PAGE);
    long mmap_ = pl_mmap(t, 0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    CHECK(mmap_ > 0, "memfd map");
    r = pin_user_pages_fast((unsigned long)mmap_, 4, FOLL_WRITE | FOLL_LONGTERM, pages);
    CHECK(r == 4, "R/W longterm pin of memfd: %ld, expected 4", r);
    if (r == 4) {
        /* The device writes; the process sees it through its mapping. */
        CHECK(pl_page_write(pages[2], 0, "dma!", 5) == 0, "device write");
        char buf[5] = {0};
        CHECK(pl_read(t, (unsigned long)mmap_ + 2 * PAGE, buf, 5) == 5 && strcmp(buf, "dma!") == 0,
              "the CPU sees the device's write: '%s'", buf);
        unpin_user_pages_dirty_lock(pages, 4, true);
    }
    printf("3. memfd R/W longterm pin: ok\n");

    /* 4. R/O pin, then fork, then the parent writes. */
    long amap = pl_mmap(t, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
    CHECK(amap > 0 && pl_write(t, (unsigned long)amap, "before", 7) == 7, "anon map");
    struct page *ro = NULL;
    r = pin_user_pages_fast((unsigned long)amap, 1, FOLL_LONGTERM, &ro);
    CHECK(r == 1, "R/O longterm pin: %ld", r);
    struct task_struct *child = pl_fork(t);
    CHECK(child != NULL, "fork");
    CHECK(pl_write(t, (unsigned long)amap, "after", 6) == 6, "parent write");
    char seen[8] = {0};
    if (ro) pl_page_read(ro, 0, seen, 6);
    CHECK(strcmp(seen, "after") == 0, "the pin sees the parent's later write: '%s'", seen);
    char childs[8] = {0};
    pl_read(child, (unsigned long)amap, childs, 7);
    CHECK(strcmp(childs, "before") == 0, "the child keeps its copy: '%s'", childs);
    CHECK(pl_virt_to_page(child, (unsigned long)amap) != ro, "the child does not map the pinned page");
    printf("4. R/O pin across fork sees the parent's write: '%s'; child has '%s'\n", seen, childs);
    pl_exit(child);

    /* 5. Where the pins are. A small folio: +1024 on _refcount per pin. */
    int ref0 = page_ref_count(ro);
    struct page *again = NULL;
    CHECK(pin_user_pages_fast((unsigned long)amap, 1, 0, &again) == 1 && again == ro, "second pin");
    CHECK(page_ref_count(ro) == ref0 + GUP_PIN_COUNTING_BIAS, "refcount %d, expected %d", page_ref_count(ro),
          ref0 + GUP_PIN_COUNTING_BIAS);
    CHECK(folio_maybe_dma_pinned(page_folio(ro)), "folio_maybe_dma_pinned");
    unpin_user_page(again);
    unpin_user_page(ro);
    CHECK(page_ref_count(pl_virt_to_page(t, (unsigned long)amap)) == 1, "back to the mapping's reference");

    /* A 2 MiB THP: +1 refcount and +1 _pincount per pinned subpage. */
    long tmap = pl_mmap(t, 0, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
    unsigned long thp = ((unsigned long)tmap + HUGE - 1) & ~(HUGE - 1);
    CHECK(pl_memset(t, thp, 1, HUGE) == (long)HUGE, "THP fault");
    struct folio *f = page_folio(pl_virt_to_page(t, thp));
    CHECK(folio_nr_pages(f) == 512, "a PMD-sized folio (%lu pages)", folio_nr_pages(f));
    int fref0 = folio_ref_count(f);
    unsigned long acq0 = pl_vmstat(k, "nr_foll_pin_acquired");
    r = pin_user_pages_fast(thp, 512, FOLL_WRITE, pages);
    CHECK(r == 512, "pin the whole THP: %ld", r);
    CHECK(pl_folio_pincount(f) == 512 && folio_ref_count(f) == fref0 + 512, "pincount %d, refcount %d (was %d)",
          pl_folio_pincount(f), folio_ref_count(f), fref0);
    CHECK(pl_vmstat(k, "nr_foll_pin_acquired") - acq0 == 512, "vmstat counts subpages");
    if (r > 0) unpin_user_pages(pages, (unsigned long)r);
    CHECK(pl_folio_pincount(f) == 0 && !folio_maybe_dma_pinned(f), "unpinned");
    unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired"), rel = pl_vmstat(k, "nr_foll_pin_released");
    CHECK(acq == rel, "nr_foll_pin_acquired %lu == nr_foll_pin_released %lu at rest", acq, rel);
    printf("5. THP pin: pincount 512, refcount +512; vmstat acquired=%lu released=%lu\n", acq, rel);

    CHECK(pl_kernel_check(k) == 0, "invariants");
    pl_file_put(dev);
    pl_file_put(ext4);
    pl_file_put(memfd);
    pl_kernel_free(k);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
