//! Compiles the C workloads in `workloads/` into OUT_DIR/workloads. The first line of each
//! file says how: `// build: <gcc flags>`.
use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let sources = manifest.join("workloads");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("workloads");
    fs::create_dir_all(&out).unwrap();
    println!("cargo:rerun-if-changed={}", sources.display());
    // Cross builds (`cargo xtask vmtest --arch arm64`) name the target's compiler in
    // CC_<target>, as the `cc` crate reads it; CC stays the host's.
    let target = env::var("TARGET").unwrap_or_default().replace('-', "_");
    println!("cargo:rerun-if-env-changed=CC_{target}");
    let cc = env::var(format!("CC_{target}"))
        .or_else(|_| env::var("CC"))
        .unwrap_or_else(|_| "cc".into());
    for entry in fs::read_dir(&sources).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "c") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).unwrap();
        let flags = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// build:"))
            .unwrap_or_else(|| panic!("{} must start with `// build: <flags>`", path.display()));
        let name = path.file_stem().unwrap();
        let status = Command::new(&cc)
            .args(flags.split_whitespace())
            .args(["-Wall", "-Werror", "-o"])
            .arg(out.join(name))
            .arg(&path)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cc} (`cargo xtask setup` installs gcc): {e}"));
        assert!(status.success(), "compiling {} failed", path.display());
    }
    println!("cargo:rustc-env=WORKLOADS_DIR={}", out.display());
}
