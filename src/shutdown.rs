//! Signals → a token that tells every loop to stop taking work.
//! It must not stop work mid-write; the ledger already holds all that was acknowledged.
//!
//! The first SIGINT or SIGTERM cancels the token: listing stops after its
//! page, no new object starts, and work in flight gets `shutdown_grace` to
//! finish before it is dropped. Everything acknowledged is in the ledger
//! already, so a dropped part is simply sent again on restart. A second
//! signal exits at once; that too resumes correctly, for the same reason.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit code after a second signal: 128 + SIGINT, as shells expect.
pub const HARD_EXIT: i32 = 130;

/// Starts listening for SIGINT and SIGTERM; the token is cancelled on the
/// first. The handlers are in place when this returns: a signal sent at once
/// is seen, not taken by the default action (which would end ferry with no word).
pub fn listen() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!(
            "cannot listen for signals; stop ferry with SIGKILL, it resumes from the ledger"
        );
        return token;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: no new work is started, work in flight may finish; signal again to stop at once");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal: stopping at once; the next run resumes from the ledger");
        std::process::exit(HARD_EXIT);
    });
    token
}
