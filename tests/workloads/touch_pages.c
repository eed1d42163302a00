// build: -O1 -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin -fno-pie -no-pie
/* Maps N fresh anonymous pages (argv[1], decimal; no huge pages) and writes one byte to each:
 * N minor write faults. Freestanding, so with ASLR off (tracer run --no-aslr) every other
 * fault of the process repeats exactly from run to run, and the difference between two runs
 * with different N is exactly the difference in N. */
#include "freestanding.h"

int main(int argc, char **argv) {
    u64 pages = argc > 1 ? parse_u64(argv[1]) : 0;
    /* Always map (at least one page) so runs differ only in the pages touched. */
    u64 len = (pages ? pages : 1) * PAGE;
    i64 p = sys6(SYS_mmap, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 (u64)-1, 0);
    if (failed(p)) return 1;
    sys6(SYS_madvise, (u64)p, len, MADV_NOHUGEPAGE, 0, 0, 0);
    for (u64 i = 0; i < pages; i++) ((volatile char *)p)[i * PAGE] = 1;
    return 0;
}
