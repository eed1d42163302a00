//! Rebuild the probes when bpf-linker changes: it is not a cargo dependency, so cargo would
//! otherwise keep an object linked by an older linker.
fn main() {
    // aya-build passes `--cfg bpf_target_arch="..."` (the architecture the daemon is built
    // for), which picks the syscall numbers and `pt_regs` layout of probes/raw_syscalls.rs.
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \
         \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
