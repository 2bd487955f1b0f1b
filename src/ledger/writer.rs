//! The one writer: a thread that owns the ledger's write connection.
//!
//! Workers send it closures and await the answer, so every write is
//! serialised without a lock held across an await point.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::LedgerError;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the ledger (creating and migrating it) and starts the writer thread.
    pub fn open(path: &Path) -> Result<Writer, LedgerError> {
        let mut conn = super::open_for_writing(path)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                // Ends when every Writer handle is dropped; the connection
                // closes cleanly and checkpoints the WAL.
                for job in inbox {
                    job(&mut conn);
                }
            })
            .map_err(|e| LedgerError::Open {
                path: path.to_owned(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Writer { jobs })
    }

    /// Runs `f` on the writer thread and returns its result.
    pub async fn call<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| LedgerError::WriterGone)?;
        Ok(answer.await.map_err(|_| LedgerError::WriterGone)??)
    }
}
