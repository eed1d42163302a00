// build: -O1 -g -static-pie
/* memfd_heap.c as a static PIE: the kernel places its brk heap far below the image
 * (ELF_ET_DYN_BASE), not after it. */
#include "memfd_heap.c"
