/*
 * pin_leaks.c — the two mistakes seed 004 worried about, caught by pinlab's
 * pin tracker ("how do we make sure this is the case and will remain the case?"):
 *
 *   1. releasing a pin_user_pages_fast() page with put_page() instead of
 *      unpin_user_page(): a "put_page_on_pinned" report naming the page and
 *      the call that pinned it;
 *   2. forgetting to unpin before the process exits: a "leak" report naming
 *      the owner, and the frame quarantined so that a device that might still
 *      DMA into it can never hit a reused page.
 *
 * Build against an installed pinlab:
 *   cc pin_leaks.c $(pkg-config --cflags --libs pinlab)
 */
#include <pinlab/kapi.h>

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fprintf(stderr, "\n");                               \
            failures++;                                          \
        }                                                        \
    } while (0)

#define PAGE 4096UL

/* The newest report of `kind`, or NULL. */
static const char *last_report(struct pl_kernel *k, const char *kind) {
    const char *found = NULL;
    for (int i = 0; i < pl_warning_count(k, NULL); i++) {
        const char *line = pl_warning_text(k, i);
        if (line && strstr(line, kind)) found = line;
    }
    return found;
}

int main(void) {
    struct pl_kernel *k = pl_kernel_new("ram=256M hugetlb_2m=0 hugetlb_1g=0");
    if (!k) {
        fprintf(stderr, "pl_kernel_new: %s\n", pl_last_error());
        return 1;
    }
    struct task_struct *t = pl_task_new(k);
    pl_set_current(t);
    long a = pl_mmap(t, 0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
    CHECK(a > 0 && pl_memset(t, (unsigned long)a, 0x5a, 2 * PAGE) == (long)(2 * PAGE), "map");

    /* 1. The wrong release call. */
    struct page *p = NULL;
    CHECK(pin_user_pages_fast((unsigned long)a, 1, FOLL_WRITE, &p) == 1, "pin");
    put_page(p); /* wrong: this page was pinned, not got */
    CHECK(pl_warning_count(k, "put_page_on_pinned") == 1, "one put_page_on_pinned report, got %d",
          pl_warning_count(k, "put_page_on_pinned"));
    const char *r = last_report(k, "put_page_on_pinned");
    CHECK(r && strstr(r, "pin_user_pages_fast"), "the report names the pinning call: %s", r ? r : "(none)");
    char pfn[32];
    snprintf(pfn, sizeof pfn, "%#lx", page_to_pfn(p));
    CHECK(r && strstr(r, pfn), "the report names the page (pfn %s): %s", pfn, r ? r : "(none)");
    printf("1. %s\n", r ? r : "(no report)");
    /* Repair what the mistake took, then release the pin properly. */
    get_page(p);
    unpin_user_page(p);

    /* The correct path, for contrast: nothing reported. */
    int before = pl_warning_count(k, NULL);
    struct page *ok[2];
    CHECK(pin_user_pages_fast((unsigned long)a, 2, FOLL_WRITE, ok) == 2, "pin again");
    unpin_user_pages_dirty_lock(ok, 2, true);
    CHECK(pl_warning_count(k, NULL) == before, "correct code raises no report");
    CHECK(pl_pin_balance(k, NULL) == 0, "no pin outstanding (%ld)", pl_pin_balance(k, NULL));
    pl_exit(t);

    /* 2. The forgotten unpin: a process pins and exits. */
    struct task_struct *leaker = pl_task_new(k);
    pl_set_current(leaker);
    long b = pl_mmap(leaker, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
    CHECK(b > 0 && pl_write(leaker, (unsigned long)b, "dma target", 11) == 11, "leaker map");
    struct page *lp = NULL;
    CHECK(pin_user_pages_fast((unsigned long)b, 1, FOLL_WRITE | FOLL_LONGTERM, &lp) == 1, "leaker pin");
    pl_set_current(NULL);
    pl_exit(leaker); /* no unpin_user_page(lp) */
    CHECK(pl_warning_count(k, "leak") >= 1, "a leak report at exit");
    r = last_report(k, "leak");
    CHECK(r && strstr(r, "pin_user_pages_fast"), "the leak names its owner: %s", r ? r : "(none)");
    CHECK(pl_nr_quarantined_pages(k) >= 1, "the leaked frame is quarantined (%lu)", pl_nr_quarantined_pages(k));
    CHECK(pl_pin_balance(k, "pin_user_pages_fast") == 1, "the leaked pin is still counted (%ld)",
          pl_pin_balance(k, "pin_user_pages_fast"));
    printf("2. %s\n", r ? r : "(no report)");
    printf("   quarantined frames: %lu\n", pl_nr_quarantined_pages(k));

    pl_kernel_free(k);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
