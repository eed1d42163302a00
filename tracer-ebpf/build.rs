//! Rebuild the probes when bpf-linker changes: it is not a cargo dependency, so cargo would
//! otherwise keep an object linked by an older linker.
//!
//! Also declares `bpf_target_arch` (the architecture whose `pt_regs` layout the probes read):
//! aya-build passes it when it builds the probes for the tracer; a direct build (clippy)
//! gets the host's, as aya-ebpf's own build script does.
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
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \
         \"loongarch64\", \"mips\", \"powerpc64\", \"riscv64\", \"s390x\"))"
    );
    println!("cargo:rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    if std::env::var_os("CARGO_CFG_BPF_TARGET_ARCH").is_none() {
        let host = std::env::var("HOST").unwrap_or_default();
        let arch = host.split('-').next().unwrap_or_default();
        println!("cargo:rustc-cfg=bpf_target_arch=\"{arch}\"");
    }
}
