//! The torture harness's ferry child: the real binary, maybe killed with
//! SIGKILL after a while, and its peak memory as the kernel counted it.

use std::path::Path;
use std::time::Duration;

use crate::support::servers;

/// How one ferry process ended.
pub struct Ended {
    /// The exit code; None when the harness killed it (or a signal did).
    pub code: Option<i32>,
    /// Peak resident memory (the kernel's ru_maxrss), in bytes.
    pub peak_rss: u64,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}, peak RSS {} KiB\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            self.peak_rss >> 10,
            self.stdout,
            self.stderr
        )
    }
}

impl Ended {
    /// Its exit, its stdout, and its stderr's warnings and errors.
    pub fn told(&self) -> String {
        let loud = self
            .stderr
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || !l.contains(" INFO "));
        format!(
            "ferry: exit {:?}, peak {} MiB\n{}\n{}",
            self.code,
            self.peak_rss >> 20,
            self.stdout.trim_end(),
            loud.collect::<Vec<_>>().join("\n")
        )
    }
}

/// Runs `ferry --config <config> <args>` in `dir`; with `kill_after`, sends
/// SIGKILL if it is still running then. Reaped with wait4, whose rusage is
/// the child's own peak RSS (sampling /proc would miss short peaks).
pub async fn ferry(
    dir: &Path,
    config: &Path,
    args: &[&str],
    kill_after: Option<Duration>,
) -> Ended {
    let (out, err) = (dir.join("ferry.stdout"), dir.join("ferry.stderr"));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FERRY_LOG", "info")
        .envs(servers().env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start ferry");
    let pid = child.id() as libc::pid_t;
    // The std handle is never waited on: wait4 below reaps the child.
    drop(child);
    let mut reaped = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: plain syscall on our own child; both out-pointers live for the call.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(got, pid, "wait4 ferry: {}", std::io::Error::last_os_error());
        (status, usage.ru_maxrss as u64 * 1024)
    });
    let (status, peak_rss) = match kill_after {
        None => reaped.await.unwrap(),
        Some(after) => tokio::select! {
            done = &mut reaped => done.unwrap(),
            _ = tokio::time::sleep(after) => {
                // Not reaped, or reaped a moment ago: no pid is reused that fast.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reaped.await.unwrap()
            }
        },
    };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ended {
        code,
        peak_rss,
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
    }
}
