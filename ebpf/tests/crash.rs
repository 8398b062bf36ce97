//! A process that dies holding the steering program leaves nothing behind:
//! the program hangs on a bpf_link, which the kernel releases with the
//! process's descriptors.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{has_xdp, in_ns, link_details, pair, wait_for};
use dataplane::netns::Host;
use ebpf::{AttachMode, FlowRoute, Steering};

/// Set in the child's environment to the interface index to attach to.
const CHILD_ENV: &str = "NFVINC_EBPF_CRASH_CHILD_IFINDEX";
const ATTACHED: &str = "NFVINC-CHILD-ATTACHED";

/// The child's side of [`sigkilled_owner_leaves_no_program`]: not a test of
/// its own, it returns at once unless that test started this process.
#[test]
fn crash_child_entry() {
    let Ok(ifindex) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ifindex: u32 = ifindex.parse().expect("ifindex");
    // Started through `ip netns exec`, so this whole process is in the namespace.
    let mut s = Steering::attach(ifindex, AttachMode::Auto).expect("child attach");
    s.add_route(
        FlowRoute {
            dst: "198.18.0.2".parse().unwrap(),
            dst_port: 7000,
            src: None,
        },
        0,
    )
    .expect("child route");
    println!("{ATTACHED}");
    // Waits to be killed; bounded in case the parent is gone.
    std::thread::sleep(Duration::from_secs(30));
    panic!("the parent test never killed this child");
}

/// `bpftool net show` of the host's interface, from inside its namespace.
fn bpftool_net(host: &Host) -> String {
    host.ns
        .exec("bpftool", &["net", "show", "dev", &host.ifname])
        .expect("bpftool net show (install bpftool: see README)")
}

/// Whether bpftool lists an XDP program on the interface.
fn bpftool_has_xdp(host: &Host) -> bool {
    let out = bpftool_net(host);
    let xdp = out.split("xdp:").nth(1).unwrap_or("");
    let xdp = xdp.split("tc:").next().unwrap_or("");
    !xdp.trim().is_empty()
}

#[test]
fn sigkilled_owner_leaves_no_program() {
    let p = pair("crash");
    let ifindex = p.b.ifindex().expect("ifindex");
    let exe = std::env::current_exe().expect("test binary");
    let mut child =
        p.b.ns
            .command(exe)
            .args([
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, ifindex.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start child");

    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(ATTACHED) {
                let _ = tx.send(());
                return;
            }
        }
    });
    let attached = rx.recv_timeout(Duration::from_secs(30));
    if attached.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child did not attach in time");
    }
    assert!(has_xdp(&p.b), "{}", link_details(&p.b));
    assert!(bpftool_has_xdp(&p.b), "{}", bpftool_net(&p.b));

    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success());

    let gone = wait_for(Duration::from_secs(3), || {
        (!has_xdp(&p.b) && !bpftool_has_xdp(&p.b)).then_some(())
    });
    assert!(
        gone.is_some(),
        "stale program after SIGKILL:\n{}\n{}",
        link_details(&p.b),
        bpftool_net(&p.b)
    );

    let s = in_ns(&p.b.ns, move || Steering::attach(ifindex, AttachMode::Auto))
        .expect("attach after the owner died");
    assert!(
        s.routes().unwrap().is_empty(),
        "fresh maps for the new owner"
    );
    assert!(has_xdp(&p.b));
}
