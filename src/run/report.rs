//! What a pass and a verify tell a person: the reports and their sentences.
//! It must not do the work; it words what the work found.

use std::time::Duration;

use bytesize::ByteSize;

use crate::copy::restore::RestoreSummary;
use crate::ledger::{self, PassSummary};

/// What one pass did, for the closing lines and the exit code.
#[derive(Debug, Default)]
pub struct PassReport {
    pub pass_id: i64,
    pub listed: u64,
    pub copy: PassSummary,
    /// Buckets whose listing failed, with why.
    pub list_failures: Vec<String>,
    /// Up to [`FAILED_SHOWN`] failed objects: bucket, key, reason.
    pub failed: Vec<(String, String, String)>,
    /// Keys this pass found gone from the source for the first time.
    pub deleted_at_source: u64,
    /// Keys removed at the destination (with `delete = true`).
    pub removed: u64,
    /// Up to [`FAILED_SHOWN`] keys left alone because the destination holds
    /// what ferry did not write: bucket, key, reason.
    pub conflicts: Vec<(String, String, String)>,
    pub took: Duration,
    /// What the pass's restores of archived objects did.
    pub restores: RestoreSummary,
    /// Archived objects still in `restoring` at the end of the pass.
    pub restoring: u64,
    /// With `[backup]`: the ledger snapshot this pass wrote (None: the newest
    /// is recent enough), or why it failed.
    pub snapshot: Option<Result<Option<String>, String>>,
}

pub const FAILED_SHOWN: usize = 100;

impl PassReport {
    pub fn succeeded(&self) -> bool {
        self.copy.objects_failed == 0
            && self.copy.objects_mismatched == 0
            && self.copy.objects_conflict == 0
            && self.list_failures.is_empty()
            && self.failed.is_empty()
            && self.conflicts.is_empty()
            && !matches!(self.snapshot, Some(Err(_)))
    }

    /// The lines a person reads at the end of a pass.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let secs = self.took.as_secs_f64().max(1e-3);
        if self.copy.objects_copied == 0 && self.succeeded() && self.restoring == 0 {
            out.push_str(&format!(
                "pass {}: listed {} objects; nothing to copy, every listed object is already at the destination\n",
                self.pass_id, self.listed
            ));
        } else {
            out.push_str(&format!(
                "pass {}: listed {} objects; copied {} objects ({}) in {:.1}s, {}/s; verified {}; {} failed\n",
                self.pass_id,
                self.listed,
                self.copy.objects_copied,
                ByteSize(self.copy.bytes_copied).display().iec(),
                secs,
                ByteSize((self.copy.bytes_copied as f64 / secs) as u64)
                    .display()
                    .iec(),
                self.copy.objects_verified,
                self.copy.objects_failed,
            ));
        }
        if self.restoring > 0 || self.restores != RestoreSummary::default() {
            out.push_str(&format!(
                "archived objects: {} restores asked this pass, {} found done and copied; {} objects still wait for their restore at the source. They are copied by a later pass once restored: the daemon does that by itself; after `run --once`, run again later (`ferry status` shows how long they have waited)\n",
                self.restores.asked, self.restores.ready, self.restoring
            ));
        }
        if self.restores.refused > 0 {
            out.push_str(&format!(
                "{} restore requests were refused by the source (see the log; s3:RestoreObject?): asked again next pass\n",
                self.restores.refused
            ));
        }
        match &self.snapshot {
            Some(Ok(Some(key))) => out.push_str(&format!("ledger snapshot written: {key}\n")),
            Some(Err(e)) => out.push_str(&format!("ledger snapshot failed: {e}\n")),
            Some(Ok(None)) | None => {}
        }
        if self.copy.objects_adopted > 0 {
            out.push_str(&format!(
                "adopted {} objects the destination already held without a ledger record: read back, proved to be the source's bytes, not sent again\n",
                self.copy.objects_adopted
            ));
        }
        if self.deleted_at_source > 0 {
            out.push_str(&format!(
                "{} keys deleted at the source since the last pass{}\n",
                self.deleted_at_source,
                if self.removed == 0 {
                    "; kept at the destination (delete = true removes them after two passes)"
                } else {
                    ""
                }
            ));
        }
        if self.removed > 0 {
            out.push_str(&format!(
                "{} keys removed at the destination, gone from the source for two passes\n",
                self.removed
            ));
        }
        for f in &self.list_failures {
            out.push_str(&format!("listing failed: {f}\n"));
        }
        for (bucket, key, reason) in &self.failed {
            out.push_str(&format!("failed: {bucket}/{key}: {reason}\n"));
        }
        for (bucket, key, reason) in &self.conflicts {
            out.push_str(&format!("conflict: {bucket}/{key}: {reason}\n"));
        }
        if self.copy.objects_failed as usize > self.failed.len()
            && self.failed.len() == FAILED_SHOWN
        {
            out.push_str("… more failed objects: see `ferry status`\n");
        }
        out
    }
}

/// Which copies `ferry verify` reads back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VerifyScope {
    /// Every copy: an audit, which a later `verify` carries on if this one is cut off.
    Audit,
    /// Only the copies never read back.
    Pending,
    /// A random share of every copy, 0 < share <= 1.
    Sample(f64),
}

pub struct VerifyOptions {
    pub scope: VerifyScope,
    /// Queue mismatched objects to be copied again by the next `run`.
    pub recopy: bool,
}

#[derive(Debug)]
pub struct VerifyReport {
    pub summary: PassSummary,
    /// Mismatched objects (up to [`FAILED_SHOWN`]): bucket, key, reason.
    pub mismatched: Vec<(String, String, String)>,
    pub requeued: usize,
    pub took: Duration,
    /// The audit read back (a plain `verify`), and whether it carried on an earlier one.
    pub audit: Option<ledger::Audit>,
    /// Stopped before it read back all it had to.
    pub cut_off: bool,
    /// Every copy by what proved its bytes were read as the source holds
    /// them (`ledger::proof_totals`).
    pub proofs: Vec<(String, u64)>,
}

impl VerifyReport {
    /// Nothing differs, nothing was unreadable, and nothing was left unread:
    /// a cut-off audit proves nothing about the copies it did not reach.
    pub fn succeeded(&self) -> bool {
        self.summary.objects_mismatched == 0 && self.summary.objects_failed == 0 && !self.cut_off
    }

    pub fn describe(&self) -> String {
        let secs = self.took.as_secs_f64().max(1e-3);
        let s = &self.summary;
        let mut out = String::new();
        if let Some(audit) = self.audit.as_ref().filter(|a| a.resumed) {
            out.push_str(&format!(
                "carrying on the audit begun at {}: copies read back since then are not read again\n",
                audit.started_at
            ));
        }
        out += &format!(
            "verified {} objects ({}) in {:.1}s, {}/s; {} mismatched; {} could not be read\n",
            s.objects_verified,
            ByteSize(s.bytes_verified).display().iec(),
            secs,
            ByteSize((s.bytes_verified as f64 / secs) as u64)
                .display()
                .iec(),
            s.objects_mismatched,
            s.objects_failed,
        );
        if self.cut_off {
            out.push_str(if self.audit.is_some() {
                "stopped before every copy was read back: run `ferry verify` again to carry on where it stopped\n"
            } else {
                "stopped before every copy was read back\n"
            });
        }
        if !self.proofs.is_empty() {
            let named: Vec<String> = self
                .proofs
                .iter()
                .map(|(proof, n)| format!("{n} {}", proof_words(proof)))
                .collect();
            out.push_str(&format!(
                "the bytes copied were proved the source's: {}\n",
                named.join(", ")
            ));
        }
        for (bucket, key, reason) in &self.mismatched {
            out.push_str(&format!("mismatched: {bucket}/{key}: {reason}\n"));
        }
        if self.requeued > 0 {
            out.push_str(&format!(
                "{} mismatched objects queued to be copied again by the next `ferry run`\n",
                self.requeued
            ));
        }
        out
    }
}

/// `copies.proof` as a person reads it.
fn proof_words(proof: &str) -> &str {
    match proof {
        "etag" => "by their ETag",
        "checksum" => "by the checksum the source stored",
        "etag+checksum" => "by both",
        "none" => "by nothing but this read-back (no MD5 ETag, no stored checksum)",
        _ => "before ferry recorded proofs",
    }
}
