//! Compiles the XDP programs in `bpf/` into BPF objects in `OUT_DIR`, which
//! the crate embeds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const PROGRAMS: &[&str] = &["steer", "fault", "liveness"];
const HEADERS: &[&str] = &["parse.h"];

fn main() -> ExitCode {
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let src = manifest.join("bpf");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    println!("cargo:rerun-if-env-changed=CLANG");
    for f in PROGRAMS
        .iter()
        .map(|p| format!("{p}.c"))
        .chain(HEADERS.iter().map(|h| h.to_string()))
    {
        println!("cargo:rerun-if-changed={}", src.join(f).display());
    }

    match Command::new(&clang).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) => {
            return Err(format!(
                "`{clang} --version` failed: the XDP programs need clang with the BPF target \
                 (install clang: see README; scripts/install-deps.sh installs it, or set CLANG)"
            ));
        }
    }

    let includes = include_dirs();
    for prog in PROGRAMS {
        compile(
            &clang,
            &src.join(format!("{prog}.c")),
            &out.join(format!("{prog}.o")),
            &includes,
        )?;
    }
    Ok(())
}

/// `<linux/...>` headers need the multiarch `asm/` directory, which clang
/// does not search when targeting bpf.
fn include_dirs() -> Vec<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => "",
    };
    let mut dirs = Vec::new();
    if !triple.is_empty() {
        dirs.push(PathBuf::from("/usr/include").join(triple));
    }
    dirs
}

fn compile(clang: &str, src: &Path, obj: &Path, includes: &[PathBuf]) -> Result<(), String> {
    let mut cmd = Command::new(clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall"]);
    for dir in includes {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg("-c").arg(src).arg("-o").arg(obj);
    let output = cmd
        .output()
        .map_err(|e| format!("could not run {clang}: {e} (install clang: see README)"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "{clang} failed on {}:\n{stderr}\n(if <linux/...> or <bpf/...> headers are missing: \
             install libbpf-dev and linux-libc-dev, see README)",
            src.display()
        ));
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning={line}");
    }
    Ok(())
}
