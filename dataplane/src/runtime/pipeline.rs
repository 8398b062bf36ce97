//! Pipeline mode: I/O on one core, VNF logic on another, bursts handed over
//! through bounded lock-free rings.
//!
//! A fixed set of batches circulates: the I/O thread receives into an empty
//! one and pushes it to the logic thread; the logic thread processes it and
//! pushes it back; the I/O thread transmits it and reuses it. With `depth`
//! batches and rings of `depth` slots neither push can find its ring full, so
//! no burst is ever dropped between the stages; when every batch is in
//! flight, the I/O thread simply stops receiving (the NIC queue absorbs it).

use std::thread;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use super::{Idle, PollPolicy, Shutdown, Vnf, pin_current_thread, send_all};
use crate::io::{Batch, IoCounters, IoError, PacketIo};

/// Runs `vnf` on its own thread (pinned to `vnf_core` when given) and the
/// I/O of `io` on the calling thread, with `depth` bursts in flight (at least
/// 2). Returns the backend's counters once `stop` triggers and everything in
/// flight has been transmitted.
pub fn run_pipeline<I: PacketIo + ?Sized, V: Vnf + ?Sized>(
    io: &mut I,
    vnf: &mut V,
    policy: PollPolicy,
    vnf_core: Option<usize>,
    depth: usize,
    stop: &Shutdown,
) -> Result<IoCounters, IoError> {
    let depth = depth.max(2);
    let to_logic: ArrayQueue<Batch> = ArrayQueue::new(depth);
    let to_io: ArrayQueue<Batch> = ArrayQueue::new(depth);
    let mut spare: Vec<Batch> = (0..depth).map(|_| io.new_batch()).collect();
    let logic_done = Shutdown::new();

    thread::scope(|s| {
        s.spawn(|| {
            if let Some(core) = vnf_core {
                pin_current_thread(core);
            }
            let mut idle = Idle::new(policy);
            // Run until the I/O side has stopped and drained our input.
            loop {
                match to_logic.pop() {
                    Some(mut b) => {
                        idle.busy();
                        vnf.process(Instant::now(), &mut b);
                        if to_io.push(b).is_err() {
                            unreachable!("return ring holds every batch by construction");
                        }
                    }
                    None if logic_done.is_triggered() => break,
                    None => {
                        let _ = idle.idle(None, |t| {
                            thread::sleep(t.min(std::time::Duration::from_micros(50)));
                            Ok(())
                        });
                    }
                }
            }
        });

        let result = io_loop(io, policy, stop, &to_logic, &to_io, &mut spare, depth);
        logic_done.trigger();
        result
    })
}

fn io_loop<I: PacketIo + ?Sized>(
    io: &mut I,
    policy: PollPolicy,
    stop: &Shutdown,
    to_logic: &ArrayQueue<Batch>,
    to_io: &ArrayQueue<Batch>,
    spare: &mut Vec<Batch>,
    depth: usize,
) -> Result<IoCounters, IoError> {
    let mut idle = Idle::new(policy);
    let mut abandoned = 0;
    // Stop receiving on shutdown, but keep going until every batch is home.
    while !(stop.is_triggered() && spare.len() == depth) {
        let mut progressed = false;
        while let Some(mut b) = to_io.pop() {
            abandoned += send_all(io, &mut b, stop)?;
            spare.push(b);
            progressed = true;
        }
        if !stop.is_triggered() {
            if let Some(mut b) = spare.pop() {
                if io.recv(&mut b)? > 0 {
                    progressed = true;
                    if to_logic.push(b).is_err() {
                        unreachable!("forward ring holds every batch by construction");
                    }
                } else {
                    spare.push(b);
                }
            }
        }
        if progressed {
            idle.busy();
        } else if spare.len() == depth {
            idle.idle(None, |t| io.wait(t))?;
        } else {
            // Batches are with the logic thread: wait for them, not the NIC.
            std::hint::spin_loop();
            thread::yield_now();
        }
    }
    for b in spare.iter_mut() {
        io.release(b)?;
    }
    io.flush()?;
    let mut c = io.counters();
    c.tx_errors += abandoned;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::{MemConfig, MemIo};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn pipeline_keeps_order_and_loses_nothing() {
        let mut io = MemIo::new(MemConfig {
            chunks: 2048,
            ..MemConfig::default()
        })
        .unwrap();
        for i in 0..2000u32 {
            io.inject(&i.to_be_bytes()).unwrap();
        }
        let stop = Shutdown::new();
        let processed = AtomicU64::new(0);
        let mut vnf = |_: Instant, b: &mut Batch| {
            for mut f in b.iter_mut() {
                let v = u32::from_be_bytes(f.data()[..4].try_into().unwrap());
                f.data_mut().copy_from_slice(&(v + 1).to_be_bytes());
            }
            if processed.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64 >= 2000 {
                stop.trigger();
            }
        };
        let c = run_pipeline(&mut io, &mut vnf, PollPolicy::default(), None, 4, &stop).unwrap();
        assert_eq!(c.rx_packets, 2000);
        assert_eq!(
            c.tx_packets, 2000,
            "everything in flight at shutdown was sent"
        );
        let mut out = Vec::new();
        io.drain_sent(|f| out.push(u32::from_be_bytes(f.try_into().unwrap())));
        assert_eq!(out, (1..=2000).collect::<Vec<_>>());
        assert_eq!(io.free_buffers(), 2048);
    }
}
