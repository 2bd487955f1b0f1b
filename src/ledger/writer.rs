//! The one writer: a thread that owns the ledger's write connection.
//! It must not hold a lock across an await point; workers send closures and await.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::LedgerError;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl Writer {
    /// Opens the ledger (creating and migrating it) and starts the writer thread.
    pub fn open(path: &Path) -> Result<Writer, LedgerError> {
        let lock = lock(path)?;
        let mut conn = super::open_for_writing(path)?;
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                // Ends when every Writer handle is dropped; the connection
                // closes cleanly and checkpoints the WAL, then the lock goes.
                for job in inbox {
                    job(&mut conn);
                }
                drop(conn);
                drop(lock);
            })
            .map_err(|e| LedgerError::Open {
                path: path.to_owned(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Writer {
            jobs,
            path: path.to_owned(),
        })
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer thread and returns its result. The job is
    /// queued at once, before the answer is awaited, so a caller can prepare
    /// its next write (or fetch its next page) while this one runs.
    pub fn call<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, LedgerError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self
            .jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| LedgerError::WriterGone);
        async move {
            queued?;
            Ok(answer.await.map_err(|_| LedgerError::WriterGone)??)
        }
    }
}

/// One writer per ledger: an exclusive lock on `<ledger>.lock`, released by
/// the OS however the process ends, so a kill -9 never leaves it stale.
fn lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    use std::io::{Read, Seek, Write};
    let lock_path = std::path::PathBuf::from(format!("{}.lock", path.display()));
    if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let open_err = |e: std::io::Error| LedgerError::Open {
        path: lock_path.clone(),
        message: format!("cannot open the lock file: {e}"),
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(open_err)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(open_err)?;
            file.rewind().map_err(open_err)?;
            writeln!(file, "{}", std::process::id()).map_err(open_err)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let holder = match pid.trim() {
                "" => String::new(),
                p => format!(" (pid {p})"),
            };
            Err(LedgerError::Locked {
                path: path.to_owned(),
                holder,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(open_err(e)),
    }
}
