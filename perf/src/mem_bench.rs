//! The in-memory scenario: the VNF's logic alone, no kernel, no generator.
//!
//! A fixed set of valid frames circulates through [`MemIo`] in loopback mode:
//! receive a burst, reflect it with [`vnf_echo::reflect`], send it (which
//! queues it to be received again). One clock read per burst; the time
//! between two consecutive burst completions, divided by that burst's size,
//! is recorded as the per-packet processing time (`latency_kind` =
//! `burst_time_per_packet`), and wall time over packets gives ns/packet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use dataplane::io::PacketIo;
use dataplane::io::mem::{MemConfig, MemIo};
use hdrhistogram::Histogram;

use crate::clock;
use crate::frame::Template;
use crate::generator::{Phase, Progress};
use crate::report::new_histogram;

/// What `latency_ns` means for this scenario.
pub const LATENCY_KIND: &str = "burst_time_per_packet";

/// Settings of an in-memory run.
#[derive(Debug, Clone, Copy)]
pub struct MemBenchConfig {
    /// Frames in circulation.
    pub frames: u32,
    /// Frames per receive.
    pub burst: usize,
    /// Warm-up, not counted.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What an in-memory run measured.
#[derive(Debug)]
pub struct MemResult {
    /// Packets processed in the measured window.
    pub packets: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Per-packet processing time of each burst, nanoseconds.
    pub hist: Histogram<u64>,
    /// Frames that came out of the loop no longer valid UDP (must be 0).
    pub corrupted: u64,
    /// True when stopped early.
    pub interrupted: bool,
}

/// Runs the loop in the calling thread.
pub fn run(
    cfg: &MemBenchConfig,
    tpl: &Template,
    progress: &Progress,
    stop: &AtomicBool,
) -> anyhow::Result<MemResult> {
    ensure!(cfg.frames > 0, "no frames to circulate");
    let chunks = (cfg.frames + 2 * dataplane::io::MAX_BURST as u32).next_power_of_two();
    let mut io = MemIo::new(MemConfig {
        chunks,
        chunk_size: 2048,
        burst: cfg.burst,
        loopback: true,
    })
    .context("creating the in-memory backend")?;
    let mut buf = vec![0u8; tpl.len()];
    for seq in 0..u64::from(cfg.frames) {
        tpl.write(&mut buf, seq, 0);
        io.inject(&buf).context("injecting frames")?;
    }
    let mut batch = io.new_batch();
    let mut hist = new_histogram();

    let t0 = clock::now_ns();
    let ms = t0 + cfg.warmup.as_nanos() as u64;
    let me = ms + cfg.duration.as_nanos() as u64;
    let mut packets = 0u64;
    let mut total = 0u64;
    let mut last = t0;
    let mut bursts = 0u64;
    let mut interrupted = false;
    let mut measuring = false;
    let mut window_start = ms;
    let window_end;
    progress.set_phase(Phase::Warmup);
    loop {
        let n = io.recv(&mut batch)? as u64;
        vnf_echo::reflect(&mut batch);
        io.send(&mut batch)?;
        let now = clock::now_ns();
        if n == 0 {
            bail!("the in-memory loop ran dry: the VNF dropped every frame");
        }
        total += n;
        if measuring {
            packets += n;
            hist.saturating_record((now - last) / n);
        }
        last = now;
        // Time checks are one comparison per burst; the stop flag and the
        // progress counters every 64 bursts.
        if !measuring && now >= ms {
            measuring = true;
            window_start = now;
            progress.set_phase(Phase::Measure);
        }
        if now >= me {
            window_end = now;
            break;
        }
        bursts += 1;
        if bursts % 64 == 0 {
            progress.sent.store(total, Ordering::Relaxed);
            progress.received.store(total, Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                interrupted = true;
                window_end = now;
                break;
            }
        }
    }
    progress.sent.store(total, Ordering::Relaxed);
    progress.received.store(total, Ordering::Relaxed);
    progress.set_phase(Phase::Done);

    // Every frame must still be a valid UDP frame of ours after all those
    // reflections (checksums included).
    let mut corrupted = u64::from(cfg.frames);
    loop {
        let n = io.recv(&mut batch)?;
        if n == 0 {
            break;
        }
        for i in 0..batch.len() {
            if tpl.is_intact_echo(batch.frame(i)) {
                corrupted -= 1;
            }
        }
        batch.clear();
    }
    Ok(MemResult {
        packets,
        window: Duration::from_nanos(window_end.saturating_sub(window_start)),
        hist,
        corrupted,
        interrupted,
    })
}
