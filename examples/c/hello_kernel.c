/*
 * hello_kernel: the smallest pinlab program. Boots a simulated kernel with the
 * default configuration, prints it, checks that a bad configuration is refused
 * with a useful error, and tears the kernel down.
 *
 * Exit status: 0 on success, 1 on failure.
 */
#include <stdio.h>
#include <string.h>

#include <pinlab/kapi.h>

int main(void)
{
    struct pl_kernel *k = pl_kernel_new(NULL);
    if (!k) {
        fprintf(stderr, "hello_kernel: pl_kernel_new(NULL) failed: %s\n", pl_last_error());
        return 1;
    }

    const char *config = pl_kernel_config(k);
    if (!config || !*config) {
        fprintf(stderr, "hello_kernel: pl_kernel_config returned no configuration\n");
        pl_kernel_free(k);
        return 1;
    }
    printf("hello_kernel: booted a kernel: %s\n", config);

    struct pl_kernel *bad = pl_kernel_new("bogus=1");
    if (bad) {
        fprintf(stderr, "hello_kernel: pl_kernel_new(\"bogus=1\") accepted an unknown key\n");
        pl_kernel_free(bad);
        pl_kernel_free(k);
        return 1;
    }
    const char *err = pl_last_error();
    if (!err || !strstr(err, "bogus")) {
        fprintf(stderr, "hello_kernel: the error for \"bogus=1\" does not name the key: \"%s\"\n",
            err ? err : "(null)");
        pl_kernel_free(k);
        return 1;
    }
    printf("hello_kernel: \"bogus=1\" refused: %s\n", err);

    pl_kernel_free(k);
    return 0;
}
