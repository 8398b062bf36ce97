//! The progress bar on standard error, and log lines that do not tear it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::generator::{Phase, Progress};

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar for one run of `total` (warm-up, window and drain), drawn
/// to standard error when it is a terminal, hidden otherwise.
pub struct Bar {
    bar: ProgressBar,
    last: (u64, u64),
}

impl Bar {
    /// Shows a bar labelled `label`.
    pub fn new(label: &str, total: Duration) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_millis() as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>6} [{bar:30.cyan/blue}] {elapsed:>4} / {duration:4} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        Self { bar, last: (0, 0) }
    }

    /// Redraws from `p`, `elapsed` into the run; call a few times a second.
    pub fn update(&mut self, p: &Progress, elapsed: Duration, every: Duration) {
        let sent = p.sent.load(Ordering::Relaxed);
        let recv = p.received.load(Ordering::Relaxed);
        let secs = every.as_secs_f64().max(1e-3);
        let (tx_rate, rx_rate) = (
            (sent - self.last.0) as f64 / secs,
            (recv - self.last.1) as f64 / secs,
        );
        self.last = (sent, recv);
        let phase = p.phase();
        self.bar.set_position(elapsed.as_millis() as u64);
        self.bar.set_message(if phase == Phase::Setup {
            phase.name().to_string()
        } else {
            format!(
                "{}: sent {sent} ({:.3} Mpps), received {recv} ({:.3} Mpps)",
                phase.name(),
                tx_rate / 1e6,
                rx_rate / 1e6
            )
        });
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A `tracing` writer for standard error that lifts the progress bar while
/// a line is written.
#[derive(Default)]
pub struct LogWriter(Vec<u8>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let out = || {
            let _ = std::io::stderr().write_all(&self.0);
        };
        let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match active {
            Some(bar) => bar.suspend(out),
            None => out(),
        }
    }
}
