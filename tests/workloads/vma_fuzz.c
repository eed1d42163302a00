// build: -O1 -g -D_GNU_SOURCE
/* Random VMA churn for the differential test of the tracer's VMA model against /proc/PID/maps.
 *
 * Usage: vma_fuzz SEED OPS CHECKPOINT_EVERY [FILE_DIR]      (FILE_DIR defaults to /tmp)
 *  - First prints "pid <pid>\n" on stdout and flushes it.
 *  - Setup: creates FILE_DIR/vma-fuzz-<pid>.dat (16 MiB, ftruncate), keeps it open O_RDWR and
 *    a second time O_RDONLY; reserves a 64 MiB ARENA with one mmap(NULL, 64 MiB, PROT_NONE,
 *    MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE); learns the break with sbrk(0).
 *  - Then OPS operations, each of a kind drawn (weighted) from a splitmix64 generator seeded
 *    with SEED, so a run is a pure function of the arguments (no rand(), no time):
 *      mmap MAP_FIXED anon private / anon shared / file private / file shared, and
 *      MAP_FIXED_NOREPLACE anon private (35% together), munmap 12%, mprotect 15%,
 *      mremap 12% (shrink in place, grow in place, MAYMOVE|FIXED move, MAYMOVE|FIXED|DONTUNMAP),
 *      madvise 10%, brk 8% (never below the setup break), non-fixed anon mmap / munmap of one
 *      of at most 16 remembered ones 5%, touch (write one byte to a writable arena page) 3%.
 *    Every fixed-address call (MAP_FIXED, munmap, mprotect, mremap, madvise) targets
 *    page-aligned ranges inside the arena only: start page in [0, arena pages), 1..64 pages,
 *    clipped to the arena end. Failures (EFAULT, EINVAL, ENOMEM, EEXIST, EACCES...) are
 *    expected and ignored. Half of the MAP_FIXED_NOREPLACE ranges start in a known hole and
 *    half of the in-place grows end where a hole follows, so that those can succeed at all.
 *    Non-fixed mmaps are placed by the kernel, which may choose a hole inside the arena;
 *    unmapping such a remembered mapping then also only touches the arena.
 *  - Checkpoints: after operation i (1-based) when i % CHECKPOINT_EVERY == 0 or i == OPS, the
 *    process raise(SIGSTOP)s and nothing is written to stdout before it; the test inspects it
 *    while it is in state 'T' and sends SIGCONT. So there are ceil(OPS / CHECKPOINT_EVERY)
 *    stops (CHECKPOINT_EVERY == 0: only the final one; OPS == 0: one stop after setup).
 *  - End: prints "done <OPS> ops\n" on stdout, closes and unlinks the file, prints a tally of
 *    successes/failures per operation kind on stderr, exits 0. Bad usage or a setup failure:
 *    message on stderr, exit 2.
 * Touches are guarded by our own per-page state of the arena (updated from the return values
 * of our calls, "unknown" whenever a failed call may have changed something) so that the
 * process never takes SIGSEGV/SIGBUS. After setup nothing calls malloc, so moving the break
 * cannot hurt the heap. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define ARENA_SIZE (64UL << 20)
#define FILE_SIZE (16UL << 20)
#define MAX_PAGES 64 /* longest range of one operation */
#define MAX_NONFIXED 16

/* Our view of one arena page: unmapped, unknown (never touched), or mapped = kind | prot. */
#define PS_UNMAPPED 0x00
#define PS_UNKNOWN 0xff
#define PS_PROT 0x07 /* PROT_READ | PROT_WRITE | PROT_EXEC */
#define PS_KIND 0x70
#define PS_ANON_PRIV 0x10
#define PS_ANON_SHARED 0x20
#define PS_FILE_PRIV 0x30
#define PS_FILE_SHARED 0x40    /* shared, through the O_RDWR fd */
#define PS_FILE_SHARED_RO 0x50 /* shared, through the O_RDONLY fd */

enum op {
    OP_ANON_PRIV, OP_ANON_SHARED, OP_FILE_PRIV, OP_FILE_SHARED, OP_NOREPLACE, OP_MUNMAP,
    OP_MPROTECT, OP_MREMAP_SHRINK, OP_MREMAP_GROW, OP_MREMAP_MOVE, OP_MREMAP_DONTUNMAP,
    OP_MADVISE, OP_BRK, OP_NONFIXED_MAP, OP_NONFIXED_UNMAP, OP_TOUCH, OP_COUNT
};
static const char *const op_names[OP_COUNT] = {
    "mmap_anon_private", "mmap_anon_shared", "mmap_file_private", "mmap_file_shared",
    "mmap_fixed_noreplace", "munmap", "mprotect", "mremap_shrink", "mremap_grow",
    "mremap_move", "mremap_dontunmap", "madvise", "brk", "mmap_nonfixed", "munmap_nonfixed",
    "touch"};
static unsigned long n_ok[OP_COUNT], n_fail[OP_COUNT];
static unsigned long nonfixed_in_arena; /* non-fixed mmaps the kernel put into an arena hole */

static uint64_t rng_state;
static size_t page_size, arena_pages;
static char *arena;
static uint8_t pstate[ARENA_SIZE / 4096];
static int fd_rw = -1, fd_ro = -1;
static char file_path[4096];
static char *init_brk, *cur_brk;
static struct { char *addr; size_t len; } nonfixed[MAX_NONFIXED];
static int n_nonfixed;

static void die(const char *what) {
    fprintf(stderr, "vma_fuzz: %s: %s\n", what, strerror(errno));
    if (fd_rw >= 0) unlink(file_path);
    exit(2);
}

static uint64_t rnd64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static size_t rnd(size_t n) { return n ? (size_t)(rnd64() % n) : 0; } /* [0, n) */

static char *A(size_t page) { return arena + page * page_size; }
static size_t B(size_t pages) { return pages * page_size; }
static void tally(enum op k, int ok) { ok ? n_ok[k]++ : n_fail[k]++; }
static void set_state(size_t p, size_t n, uint8_t st) { memset(pstate + p, st, n); }

static int random_prot(void) {
    static const int prots[] = {PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE,
                                PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC};
    return prots[rnd(5)];
}

/* A random arena range: start page in [0, arena_pages), 1..=64 pages, clipped to the end. */
static void pick_range(size_t *start, size_t *n) {
    *start = rnd(arena_pages);
    *n = 1 + rnd(MAX_PAGES);
    if (*start + *n > arena_pages) *n = arena_pages - *start;
}

/* From a random page on (wrapping), the first page p with ok(p); arena_pages if none. */
static size_t find_page(int (*ok)(size_t)) {
    size_t start = rnd(arena_pages);
    for (size_t i = 0; i < arena_pages; i++)
        if (ok((start + i) % arena_pages)) return (start + i) % arena_pages;
    return arena_pages;
}
static int known_mapped(size_t p) { return pstate[p] != PS_UNMAPPED && pstate[p] != PS_UNKNOWN; }
static int is_hole(size_t p) { return pstate[p] == PS_UNMAPPED; }
static int is_run_end(size_t p) { /* last page of a mapping, followed by a hole */
    return p + 1 < arena_pages && known_mapped(p) && pstate[p + 1] == PS_UNMAPPED;
}

/* A random range of exactly n pages that does not overlap [s, s+sn) (16 tries, then any). */
static size_t pick_dest(size_t s, size_t sn, size_t n) {
    size_t d = 0;
    for (int tries = 0; tries < 16; tries++) {
        d = rnd(arena_pages - n + 1);
        if (d + n <= s || s + sn <= d) break;
    }
    return d;
}

/* Pages added by growing a mapping whose last page had state `last`: only private anonymous
 * growth is safe to touch (file or shmem pages past the object's end would SIGBUS). */
static uint8_t grown_state(uint8_t last) {
    return (last != PS_UNKNOWN && (last & PS_KIND) == PS_ANON_PRIV) ? last : PS_UNKNOWN;
}

/* Sets the state of the arena pages that [addr, addr+len) overlaps. */
static int mark_overlap(char *addr, size_t len, uint8_t st) {
    char *lo = addr > arena ? addr : arena;
    char *hi = addr + len < arena + ARENA_SIZE ? addr + len : arena + ARENA_SIZE;
    if (lo >= hi) return 0;
    set_state((size_t)(lo - arena) / page_size, (size_t)(hi - lo) / page_size, st);
    return 1;
}

/* One MAP_FIXED(_NOREPLACE) mmap of pages [s, s+n); returns 1 on success. */
static int fixed_mmap(size_t s, size_t n, int prot, int flags, int fd, off_t off, uint8_t kind) {
    char *p = mmap(A(s), B(n), prot, flags, fd, off);
    if (p == A(s)) {
        set_state(s, n, (uint8_t)(kind | prot));
        return 1;
    }
    if (p != MAP_FAILED) /* NOREPLACE taken as a hint by an old kernel: undo it */
        mark_overlap(p, B(n), munmap(p, B(n)) == 0 ? PS_UNMAPPED : PS_UNKNOWN);
    else if (!(flags & MAP_FIXED_NOREPLACE)) /* a failed MAP_FIXED may have unmapped */
        set_state(s, n, PS_UNKNOWN);
    return 0;
}

static void op_mmap_anon(int shared) {
    size_t s, n;
    pick_range(&s, &n);
    int ok = fixed_mmap(s, n, random_prot(), (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS |
                        MAP_FIXED, -1, 0, shared ? PS_ANON_SHARED : PS_ANON_PRIV);
    tally(shared ? OP_ANON_SHARED : OP_ANON_PRIV, ok);
}

static off_t random_file_offset(size_t n) { return (off_t)B(rnd(FILE_SIZE / page_size - n + 1)); }

static void op_mmap_file_private(void) {
    size_t s, n;
    pick_range(&s, &n);
    tally(OP_FILE_PRIV, fixed_mmap(s, n, random_prot(), MAP_PRIVATE | MAP_FIXED, fd_rw,
                                   random_file_offset(n), PS_FILE_PRIV));
}

static void op_mmap_file_shared(void) {
    size_t s, n;
    pick_range(&s, &n);
    off_t off = random_file_offset(n);
    int ok;
    if (rnd(4) == 0) /* the read-only fd: PROT_READ, or PROT_WRITE which fails with EACCES */
        ok = fixed_mmap(s, n, rnd(3) ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                        fd_ro, off, PS_FILE_SHARED_RO);
    else
        ok = fixed_mmap(s, n, random_prot(), MAP_SHARED | MAP_FIXED, fd_rw, off, PS_FILE_SHARED);
    tally(OP_FILE_SHARED, ok);
}

static void op_mmap_noreplace(void) {
    size_t s, n, h;
    pick_range(&s, &n);
    if (rnd(2) && (h = find_page(is_hole)) < arena_pages) { /* half the time: start in a hole */
        s = h;
        if (s + n > arena_pages) n = arena_pages - s;
    }
    tally(OP_NOREPLACE, fixed_mmap(s, n, random_prot(), MAP_PRIVATE | MAP_ANONYMOUS |
                                   MAP_FIXED_NOREPLACE, -1, 0, PS_ANON_PRIV));
}

static void op_munmap(void) {
    size_t s, n;
    pick_range(&s, &n);
    int ok = munmap(A(s), B(n)) == 0;
    set_state(s, n, ok ? PS_UNMAPPED : PS_UNKNOWN);
    tally(OP_MUNMAP, ok);
}

static void op_mprotect(void) {
    size_t s, n;
    pick_range(&s, &n);
    int prot = random_prot();
    int ok = mprotect(A(s), B(n), prot) == 0;
    for (size_t p = s; p < s + n; p++) {
        if (!ok || pstate[p] == PS_UNMAPPED) /* failed (maybe half done), or we were wrong */
            pstate[p] = PS_UNKNOWN;
        else if (pstate[p] != PS_UNKNOWN)
            pstate[p] = (uint8_t)((pstate[p] & ~PS_PROT) | prot);
    }
    tally(OP_MPROTECT, ok);
}

static void op_mremap(void) {
    size_t s, n, d, nn;
    uint8_t tmp[2 * MAX_PAGES];
    char *r;
    pick_range(&s, &n);
    switch (rnd(4)) {
    case 0: /* (a) shrink in place: only unmaps the tail [s+nn, s+n) */
        if (n < 2 && s + 2 <= arena_pages) n = 2;
        nn = n < 2 ? n : 1 + rnd(n - 1);
        r = mremap(A(s), B(n), B(nn), 0);
        set_state(s + nn, n - nn, r == A(s) ? PS_UNMAPPED : PS_UNKNOWN);
        tally(OP_MREMAP_SHRINK, r == A(s));
        break;
    case 1: /* (b) grow in place, never past the arena end; a failure changes nothing */
        if (rnd(2) && (d = find_page(is_run_end)) < arena_pages) { /* half: end before a hole */
            size_t run = 1;
            while (run < MAX_PAGES && run <= d && pstate[d - run] == pstate[d]) run++;
            n = 1 + rnd(run);
            s = d + 1 - n;
        }
        nn = n + 1 + rnd(MAX_PAGES / 2);
        if (s + nn > arena_pages) nn = arena_pages - s;
        r = mremap(A(s), B(n), B(nn), 0);
        if (r == A(s)) set_state(s + n, nn - n, grown_state(pstate[s + n - 1]));
        tally(OP_MREMAP_GROW, r == A(s));
        break;
    case 2: /* (c) move (and resize) to a non-overlapping arena range */
        nn = 1 + rnd(MAX_PAGES);
        d = pick_dest(s, n, nn);
        r = mremap(A(s), B(n), B(nn), MREMAP_MAYMOVE | MREMAP_FIXED, A(d));
        if (r == A(d)) {
            for (size_t i = 0; i < nn; i++)
                tmp[i] = i < n ? pstate[s + i] : grown_state(pstate[s + n - 1]);
            set_state(s, n, PS_UNMAPPED);
            memcpy(pstate + d, tmp, nn);
        } else { /* MREMAP_FIXED may unmap the destination before checking the source */
            set_state(s, n, PS_UNKNOWN);
            set_state(d, nn, PS_UNKNOWN);
        }
        tally(OP_MREMAP_MOVE, r == A(d));
        break;
    default: /* (d) move a copy, leaving the source mapped (but emptied) */
        d = pick_dest(s, n, n);
        r = mremap(A(s), B(n), B(n), MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, A(d));
        if (r == A(d)) {
            memcpy(tmp, pstate + s, n);
            memcpy(pstate + d, tmp, n);
        } else {
            set_state(s, n, PS_UNKNOWN);
            set_state(d, n, PS_UNKNOWN);
        }
        tally(OP_MREMAP_DONTUNMAP, r == A(d));
        break;
    }
}

static void op_madvise(void) {
    static const int advice[] = {MADV_DONTNEED, MADV_FREE,     MADV_NORMAL,
                                 MADV_RANDOM,   MADV_WILLNEED, MADV_DONTFORK,
                                 MADV_DOFORK,   MADV_NOHUGEPAGE, MADV_HUGEPAGE};
    size_t s, n;
    pick_range(&s, &n);
    tally(OP_MADVISE, madvise(A(s), B(n), advice[rnd(sizeof advice / sizeof advice[0])]) == 0);
}

static void op_brk(void) {
    char *target;
    if (rnd(2))
        target = cur_brk + B(rnd(41)) + rnd(page_size);
    else
        target = cur_brk - rnd((size_t)(cur_brk - init_brk) + 1);
    int ok = brk(target) == 0;
    cur_brk = sbrk(0);
    tally(OP_BRK, ok);
}

static void op_nonfixed_unmap(void);

static void op_nonfixed_map(void) {
    if (n_nonfixed == MAX_NONFIXED) {
        op_nonfixed_unmap();
        return;
    }
    size_t len = B(1 + rnd(16));
    int prot = random_prot();
    char *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        nonfixed[n_nonfixed].addr = p;
        nonfixed[n_nonfixed++].len = len;
        nonfixed_in_arena += mark_overlap(p, len, (uint8_t)(PS_ANON_PRIV | prot));
    }
    tally(OP_NONFIXED_MAP, p != MAP_FAILED);
}

static void op_nonfixed_unmap(void) {
    if (n_nonfixed == 0) {
        op_nonfixed_map();
        return;
    }
    int i = (int)rnd((size_t)n_nonfixed);
    int ok = munmap(nonfixed[i].addr, nonfixed[i].len) == 0;
    mark_overlap(nonfixed[i].addr, nonfixed[i].len, ok ? PS_UNMAPPED : PS_UNKNOWN);
    nonfixed[i] = nonfixed[--n_nonfixed];
    tally(OP_NONFIXED_UNMAP, ok);
}

/* Writes one byte to the first page, from a random one on, that we know is writable. */
static void op_touch(void) {
    size_t start = rnd(arena_pages);
    for (size_t i = 0; i < arena_pages; i++) {
        size_t p = (start + i) % arena_pages;
        uint8_t st = pstate[p];
        if (st != PS_UNKNOWN && st != PS_UNMAPPED && (st & PROT_WRITE) &&
            (st & PS_KIND) != PS_FILE_SHARED_RO) {
            *(volatile char *)(A(p) + rnd(page_size)) = (char)rnd64();
            tally(OP_TOUCH, 1);
            return;
        }
    }
    tally(OP_TOUCH, 0); /* nothing known writable */
}

/* Cumulative weights out of 100, in enum op order (the four mremap variants share one slot). */
static void one_op(void) {
    size_t r = rnd(100);
    if (r < 7) op_mmap_anon(0);
    else if (r < 14) op_mmap_anon(1);
    else if (r < 21) op_mmap_file_private();
    else if (r < 28) op_mmap_file_shared();
    else if (r < 35) op_mmap_noreplace();
    else if (r < 47) op_munmap();
    else if (r < 62) op_mprotect();
    else if (r < 74) op_mremap();
    else if (r < 84) op_madvise();
    else if (r < 92) op_brk();
    else if (r < 95) op_nonfixed_map();
    else if (r < 97) op_nonfixed_unmap();
    else op_touch();
}

static unsigned long parse_ulong(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || *s == '-') {
        fprintf(stderr, "vma_fuzz: bad %s: %s\n", what, s);
        exit(2);
    }
    return (unsigned long)v;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: vma_fuzz SEED OPS CHECKPOINT_EVERY [FILE_DIR]\n");
        return 2;
    }
    rng_state = parse_ulong(argv[1], "SEED");
    unsigned long ops = parse_ulong(argv[2], "OPS");
    unsigned long every = parse_ulong(argv[3], "CHECKPOINT_EVERY");
    const char *dir = argc == 5 ? argv[4] : "/tmp";

    printf("pid %d\n", (int)getpid());
    fflush(stdout); /* also allocates stdout's buffer now, before we learn the break */

    page_size = (size_t)sysconf(_SC_PAGESIZE);
    if (page_size < 4096 || ARENA_SIZE % page_size) {
        errno = EINVAL;
        die("page size");
    }
    arena_pages = ARENA_SIZE / page_size;
    int len = snprintf(file_path, sizeof file_path, "%s/vma-fuzz-%d.dat", dir, (int)getpid());
    if (len < 0 || (size_t)len >= sizeof file_path) {
        errno = ENAMETOOLONG;
        die("data file path");
    }
    fd_rw = open(file_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd_rw < 0) die(file_path);
    if (ftruncate(fd_rw, (off_t)FILE_SIZE) != 0) die("ftruncate");
    fd_ro = open(file_path, O_RDONLY);
    if (fd_ro < 0) die(file_path);
    arena = mmap(NULL, ARENA_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (arena == MAP_FAILED) die("arena mmap");
    set_state(0, arena_pages, PS_ANON_PRIV | PROT_NONE);
    init_brk = cur_brk = sbrk(0);
    if (cur_brk == (char *)-1) die("sbrk(0)");

    for (unsigned long i = 1; i <= ops; i++) {
        one_op();
        if ((every && i % every == 0) || i == ops) raise(SIGSTOP);
    }
    if (ops == 0) raise(SIGSTOP);

    printf("done %lu ops\n", ops);
    fflush(stdout);
    close(fd_ro);
    close(fd_rw);
    unlink(file_path);
    for (int k = 0; k < OP_COUNT; k++)
        fprintf(stderr, "tally %-20s ok %5lu fail %5lu\n", op_names[k], n_ok[k], n_fail[k]);
    fprintf(stderr, "tally non-fixed mmaps placed in an arena hole: %lu\n", nonfixed_in_arena);
    return 0;
}
