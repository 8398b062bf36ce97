//! Cost of stamping one generated frame (copy the template, write sequence
//! number and timestamp, keep the UDP checksum valid) per checksum mode.
//!
//! `cargo run --release -p perf --example stamp_cost -- [size]`

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use dataplane::wire::FrameSpec;
use perf::cli::ChecksumMode;
use perf::frame::Template;

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let spec = FrameSpec {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: Ipv4Addr::new(198, 18, 0, 1),
        dst_ip: Ipv4Addr::new(198, 18, 0, 2),
        src_port: 49152,
        dst_port: 7,
    };
    const N: u64 = 20_000_000;
    for mode in [
        ChecksumMode::Zero,
        ChecksumMode::Incremental,
        ChecksumMode::Full,
    ] {
        let t = Template::new(spec, size, 1, mode).expect("template");
        let mut buf = vec![0u8; size];
        let start = Instant::now();
        for seq in 0..N {
            t.write(black_box(&mut buf), seq, seq.wrapping_mul(7));
        }
        let ns = start.elapsed().as_nanos() as f64 / N as f64;
        println!(
            "{size}-byte frames, checksum {:<11}: {ns:.2} ns/frame",
            mode.name()
        );
    }
}
