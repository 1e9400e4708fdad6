/*
 * fork_cow.c — what a new user writes first: map anonymous, file, memfd and
 * hugetlb memory, write, fork, write again in both processes, and check that
 * each sees exactly what Linux promises:
 *   private mappings (anonymous, file MAP_PRIVATE, hugetlb): copy-on-write,
 *   each process keeps its own data after fork;
 *   shared mappings (file MAP_SHARED, memfd): one copy, both see every write,
 *   and the file itself holds the data.
 *
 * Build against an installed pinlab:
 *   cc fork_cow.c $(pkg-config --cflags --libs pinlab)
 */
#include <pinlab/kapi.h>

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, " [%s]\n", pl_last_error());   \
            failures++;                                    \
        }                                                  \
    } while (0)

static void put(struct task_struct *t, unsigned long addr, const char *s) {
    long r = pl_write(t, addr, s, strlen(s) + 1);
    CHECK(r == (long)strlen(s) + 1, "write '%s' at %#lx returned %ld", s, addr, r);
}

static void expect(struct task_struct *t, unsigned long addr, const char *want, const char *what) {
    char buf[64] = {0};
    long r = pl_read(t, addr, buf, strlen(want) + 1);
    CHECK(r == (long)strlen(want) + 1 && strcmp(buf, want) == 0, "%s: read '%s', expected '%s'", what, buf, want);
}

struct mapping {
    const char *name;
    unsigned long addr;
    int shared;
};

int main(void) {
    struct pl_kernel *k = pl_kernel_new("ram=1G hugetlb_2m=8");
    if (!k) {
        fprintf(stderr, "pl_kernel_new: %s\n", pl_last_error());
        return 1;
    }
    struct task_struct *parent = pl_task_new(k);
    const unsigned long len = 2UL << 20;

    struct pl_file *ext4 = pl_file_new(k, "ext4", len);
    struct pl_file *memfd = pl_file_new(k, "memfd", len);
    CHECK(ext4 && memfd, "pl_file_new");

    struct mapping maps[] = {
        {"anonymous", 0, 0},
        {"ext4 MAP_PRIVATE", 0, 0},
        {"ext4 MAP_SHARED", 0, 1},
        {"memfd MAP_SHARED", 0, 1},
        {"hugetlb anonymous", 0, 0},
    };
    maps[0].addr = (unsigned long)pl_mmap(parent, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, NULL, 0);
    maps[1].addr = (unsigned long)pl_mmap(parent, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, ext4, 0);
    maps[2].addr = (unsigned long)pl_mmap(parent, 0, len, PROT_READ | PROT_WRITE, MAP_SHARED, ext4, 0);
    maps[3].addr = (unsigned long)pl_mmap(parent, 0, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    maps[4].addr = (unsigned long)pl_mmap(parent, 0, len, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, NULL, 0);
    const int n = (int)(sizeof maps / sizeof maps[0]);
    for (int i = 0; i < n; i++) CHECK((long)maps[i].addr > 0, "mmap %s returned %ld", maps[i].name, (long)maps[i].addr);
    if (failures) return 1;

    /* The ext4 private mapping is written last, after the shared one, so it
     * copies what the file holds then. */
    for (int i = 0; i < n; i++) put(parent, maps[i].addr + 4096, "before fork");

    struct task_struct *child = pl_fork(parent);
    CHECK(child != NULL, "pl_fork");
    if (!child) return 1;

    for (int i = 0; i < n; i++) {
        expect(child, maps[i].addr + 4096, "before fork", maps[i].name);
        put(parent, maps[i].addr + 4096, "parent after fork");
    }
    for (int i = 0; i < n; i++) {
        if (maps[i].shared)
            expect(child, maps[i].addr + 4096, "parent after fork", maps[i].name);
        else
            expect(child, maps[i].addr + 4096, "before fork", maps[i].name);
        put(child, maps[i].addr + 8192, "child");
        if (maps[i].shared)
            expect(parent, maps[i].addr + 8192, "child", maps[i].name);
    }

    /* The shared file mapping's data reaches the file: through the page cache
     * at once, and onto the disk after fsync. */
    char buf[32] = {0};
    CHECK(pl_pread(ext4, buf, 18, 4096) == 18 && strcmp(buf, "parent after fork") == 0, "pread '%s'", buf);
    CHECK(pl_fsync(ext4) == 0, "fsync");
    memset(buf, 0, sizeof buf);
    CHECK(pl_file_read_disk(ext4, buf, 6, 8192) == 6 && strcmp(buf, "child") == 0, "disk holds '%s'", buf);

    /* Private anonymous pages are exclusive to their process again after the
     * writes broke COW. */
    struct page *pp = pl_virt_to_page(parent, maps[0].addr + 4096);
    struct page *cp = pl_virt_to_page(child, maps[0].addr + 4096);
    CHECK(pp && cp && pp != cp, "parent and child must map different frames");
    CHECK(pp && PageAnonExclusive(pp) && page_ref_count(pp) == 1, "parent page exclusive, refcount %d",
          pp ? page_ref_count(pp) : -1);

    CHECK(pl_kernel_check(k) == 0, "invariants");
    pl_exit(child);
    pl_exit(parent);
    pl_file_put(ext4);
    pl_file_put(memfd);
    CHECK(pl_kernel_check(k) == 0, "invariants after exit");
    pl_kernel_free(k);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("fork_cow: anonymous, file, memfd and hugetlb mappings behave as Linux does\n");
    return 0;
}
