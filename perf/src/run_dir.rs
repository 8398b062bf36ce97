//! Where one run of a scenario keeps its VNFs' logs, control sockets and
//! state, and what is left of it afterwards.
//!
//! With `--log-dir DIR` a run writes under `DIR/<run>` and its logs stay.
//! Without it, under `<tmp>/nfvinc-perf-<scenario>-<pid>/<run>`, which a
//! run that went well removes (and the scenario's directory with it, once
//! its last run is gone): a benchmark run a thousand times must not fill
//! `/tmp`. A run that failed keeps everything, and says where, as the
//! evidence for whoever reads its error. A scenario whose directory holds
//! the run's records (`fd`: events.json, late.json) never calls
//! [`RunDir::finish`] and keeps it.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// One run's directory; see the module docs.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    temporary: bool,
}

impl RunDir {
    /// A fresh, empty directory for run `run` of `scenario`: under
    /// `log_dir` if given, else under the temporary directory. What an
    /// earlier run left there is removed first.
    pub fn create(log_dir: Option<&Path>, scenario: &str, run: &str) -> anyhow::Result<Self> {
        let (base, temporary) = match log_dir {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("nfvinc-perf-{scenario}-{}", std::process::id())),
                true,
            ),
        };
        let path = base.join(run);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, temporary })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Called once the run's VNFs have stopped. `ok`: the run went well,
    /// so a temporary directory goes, and from a `--log-dir` one the files
    /// named in `bulky` (state that only a failed run needs, such as
    /// write-ahead logs). Else everything stays, and a warning says where.
    pub fn finish(self, ok: bool, bulky: &[String]) {
        if !ok {
            tracing::warn!(
                "the run failed its checks: its logs and state are kept in {}",
                self.path.display()
            );
            return;
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
            if let Some(parent) = self.path.parent() {
                // Fails while another run's directory is still there.
                let _ = std::fs::remove_dir(parent);
            }
        } else {
            for f in bulky {
                let _ = std::fs::remove_file(self.path.join(f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run directory as a paxos run leaves it.
    fn fill(dir: &RunDir) {
        for f in ["a0.wal", "a1.wal", "coordinator0.log"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
    }

    fn wals() -> Vec<String> {
        vec!["a0.wal".into(), "a1.wal".into()]
    }

    #[test]
    fn a_temporary_directory_goes_after_a_run_that_went_well() {
        let first = RunDir::create(None, "test-tmp", "afxdp").unwrap();
        let second = RunDir::create(None, "test-tmp", "udp").unwrap();
        let top = first.path().parent().unwrap().to_path_buf();
        fill(&first);
        first.finish(true, &wals());
        assert!(top.exists(), "the other run's directory is still there");
        second.finish(true, &[]);
        assert!(!top.exists());
    }

    #[test]
    fn a_given_log_directory_keeps_its_logs_but_not_the_bulky_state() {
        let top = std::env::temp_dir().join(format!("nfvinc-run-dir-given-{}", std::process::id()));
        let dir = RunDir::create(Some(&top), "paxos", "afxdp").unwrap();
        let path = dir.path().to_path_buf();
        fill(&dir);
        dir.finish(true, &wals());
        assert!(path.join("coordinator0.log").exists());
        assert!(!path.join("a0.wal").exists() && !path.join("a1.wal").exists());
        std::fs::remove_dir_all(top).unwrap();
    }

    #[test]
    fn a_failed_run_keeps_everything() {
        let dir = RunDir::create(None, "test-failed", "afxdp").unwrap();
        let path = dir.path().to_path_buf();
        fill(&dir);
        dir.finish(false, &wals());
        assert!(path.join("a1.wal").exists() && path.join("coordinator0.log").exists());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_new_run_starts_empty() {
        let top = std::env::temp_dir().join(format!("nfvinc-run-dir-fresh-{}", std::process::id()));
        let dir = RunDir::create(Some(&top), "fd", "udp").unwrap();
        fill(&dir);
        let again = RunDir::create(Some(&top), "fd", "udp").unwrap();
        assert_eq!(std::fs::read_dir(again.path()).unwrap().count(), 0);
        std::fs::remove_dir_all(top).unwrap();
    }
}
