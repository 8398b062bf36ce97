//! Builds the DPDK shim (`csrc/dpdk_shim.c`) and links the system DPDK, found
//! through pkg-config, when the `dpdk` feature is on. Without the feature this
//! does nothing, so the default build needs no DPDK on the machine.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::process::Command;

    pub fn build() {
        println!("cargo::rerun-if-changed=csrc/dpdk_shim.c");
        println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
        // Linking: dynamic, against the libraries pkg-config names. A shared
        // EAL loads the poll-mode drivers itself from the plugin directory
        // it was built with (Debian: /usr/lib/<triple>/dpdk/pmds-<abi>), so
        // no driver needs linking with --whole-archive.
        let lib = pkg_config::Config::new()
            .atleast_version("21.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| {
                panic!(
                    "the dpdk feature needs DPDK's development files (Debian: \
                     apt-get install libdpdk-dev): {e}"
                )
            });
        // Compiling: DPDK's cflags verbatim (`-include rte_config.h`, the
        // -march its inline functions were written for), which the
        // pkg-config crate does not hand over.
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("running pkg-config --cflags libdpdk");
        assert!(out.status.success(), "pkg-config --cflags libdpdk failed");
        let cflags = String::from_utf8(out.stdout).expect("pkg-config output is UTF-8");
        let mut cc = cc::Build::new();
        cc.file("csrc/dpdk_shim.c").opt_level(3).warnings(true);
        for path in &lib.include_paths {
            cc.include(path);
        }
        for flag in cflags.split_whitespace().filter(|f| !f.starts_with("-I")) {
            cc.flag(flag);
        }
        cc.compile("nfvinc_dpdk_shim");
    }
}
