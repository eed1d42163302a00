// Call sites of a Rust program (tests/tests/callsites.rs compiles it with rustc, optimized,
// without frame pointers or debug info): the Rust twin of callsites.c. Its functions are
// named through Rust's name mangling, which the tracer demangles.
//
// grow_vec_brk:  32 MiB in 100000-byte vectors (below glibc's mmap threshold: brk)
// grow_vec_mmap: 16 vectors of 4 MiB (one mmap each), dropped by drop_vecs
use std::hint::black_box;

#[inline(never)]
fn grow_vec_brk(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..(32 << 20) / 100_000 {
        keep.push(black_box(Vec::with_capacity(100_000)));
    }
}

#[inline(never)]
fn grow_vec_mmap(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..16 {
        keep.push(black_box(Vec::with_capacity(4 << 20)));
    }
}

#[inline(never)]
fn drop_vecs(keep: Vec<Vec<u8>>) {
    drop(black_box(keep));
}

fn main() {
    // As in callsites.c: the tracer names the loader's mappings while the process lives.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Room for every vector up front, so the list itself does not grow between the sites.
    let mut small = Vec::with_capacity(400);
    let mut large = Vec::with_capacity(16);
    grow_vec_brk(&mut small);
    grow_vec_mmap(&mut large);
    drop_vecs(large);
    println!("done");
    // Still mapped at exit: dropping it would give the heap back (brk shrinks).
    std::mem::forget(black_box(small));
}
