//! What must never be shown: secrets read from the environment, the SSE-C key, and the warning for a file others can read.
//! It must not put a secret's value in a Debug, a Display or an error.

use std::fmt;
use std::path::Path;

/// A secret read from the environment. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// An SSE-C key for the destination (`sse_c_key_env`): 256 bits, kept in
/// base64 with its MD5, as the SSE-C headers carry them. Never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    pub(super) key_base64: Secret,
    pub(super) key_md5_base64: String,
}

impl CustomerKey {
    /// The values of `x-amz-server-side-encryption-customer-key` and `-key-MD5`.
    pub fn headers(&self) -> (&str, &str) {
        (self.key_base64.expose(), &self.key_md5_base64)
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerKey(***)")
    }
}

/// Static keys for one store, read from the env vars the config names.
#[derive(Clone, Debug)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// A file others can read (the config names key variables; the ledger names
/// every object) is worth a warning, not a refusal. A file in systemd's
/// `$CREDENTIALS_DIRECTORY` (`LoadCredential=`, as `deploy/ferry.service`
/// hands the config over) is systemd's private copy for this service: it may
/// show group read (an ACL for the service's user) and draws a warning only
/// when everyone may read it.
pub fn warn_if_shared(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    let in_credentials = std::env::var_os("CREDENTIALS_DIRECTORY").is_some_and(|dir| {
        let dir = Path::new(&dir);
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
        canonical(path).starts_with(canonical(dir))
    });
    let readable_by_others = if in_credentials { 0o004 } else { 0o044 };
    if mode & readable_by_others != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "{what} can be read by other users: chmod 600 it"
        );
    }
}
