// build: -O1 -static -nostdlib -ffreestanding -fno-stack-protector -fno-builtin -fno-pie -no-pie
/* Performs a known number of each traced syscall, some of them failing on purpose, counts
 * them itself from the return values, and prints its own counts as one JSON line. Being
 * freestanding, it makes no other brk/mmap/munmap/mremap/mprotect/madvise call: the tracer's
 * counts for this process must equal these exactly. */
#include "freestanding.h"

enum { BRK, MMAP, MUNMAP, MREMAP, MPROTECT, MADVISE, KINDS };
static const char *names[KINDS] = {"brk", "mmap", "munmap", "mremap", "mprotect", "madvise"};
static u64 calls[KINDS], fails[KINDS];

static i64 call(int kind, i64 nr, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f) {
    i64 ret = sys6(nr, a, b, c, d, e, f);
    calls[kind]++;
    /* brk reports failure by returning the old break instead of the request. */
    int bad = kind == BRK ? (a != 0 && (u64)ret != a) : failed(ret);
    if (bad) fails[kind]++;
    return ret;
}

static u64 map_pages(u64 pages) {
    return (u64)call(MMAP, SYS_mmap, 0, pages * PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, (u64)-1, 0);
}

int main(int argc, char **argv) {
    u64 rounds = argc > 1 ? parse_u64(argv[1]) : 3;
    u64 start = (u64)call(BRK, SYS_brk, 0, 0, 0, 0, 0, 0);
    for (u64 i = 0; i < rounds; i++) {
        /* brk: grow by a few pages, shrink back, and one refused request below the heap. */
        call(BRK, SYS_brk, start + (i + 1) * 3 * PAGE, 0, 0, 0, 0, 0);
        call(BRK, SYS_brk, start, 0, 0, 0, 0, 0);
        call(BRK, SYS_brk, PAGE, 0, 0, 0, 0, 0);

        u64 a = map_pages(2);
        u64 b = map_pages(4);
        /* mmap failures: zero length (EINVAL) and a bad descriptor (EBADF). */
        call(MMAP, SYS_mmap, 0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, (u64)-1, 0);
        call(MMAP, SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, 12345, 0);

        call(MPROTECT, SYS_mprotect, a, PAGE, PROT_READ, 0, 0, 0);
        call(MPROTECT, SYS_mprotect, a + 1, PAGE, PROT_READ, 0, 0, 0); /* unaligned: EINVAL */

        ((volatile char *)b)[0] = 1;
        call(MADVISE, SYS_madvise, b, 4 * PAGE, MADV_DONTNEED, 0, 0, 0);
        call(MADVISE, SYS_madvise, b, PAGE, 12345, 0, 0, 0); /* unknown advice: EINVAL */
        call(MADVISE, SYS_madvise, b, 4 * PAGE, MADV_NOHUGEPAGE, 0, 0, 0); /* whole VMA: no split */

        u64 c = (u64)call(MREMAP, SYS_mremap, b, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, 0, 0);
        call(MREMAP, SYS_mremap, c + 1, PAGE, 2 * PAGE, 0, 0, 0); /* unaligned: EINVAL */

        call(MUNMAP, SYS_munmap, a, 2 * PAGE, 0, 0, 0, 0);
        call(MUNMAP, SYS_munmap, c, 8 * PAGE, 0, 0, 0, 0);
        call(MUNMAP, SYS_munmap, c + 1, PAGE, 0, 0, 0, 0); /* unaligned: EINVAL */
    }
    put("{");
    for (int k = 0; k < KINDS; k++) {
        put(k ? ",\"" : "\"");
        put(names[k]);
        put("\":{\"calls\":");
        put_u64(calls[k]);
        put(",\"failed\":");
        put_u64(fails[k]);
        put("}");
    }
    put("}\n");
    return 0;
}
