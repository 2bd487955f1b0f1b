//! The states an object moves through, and the moves allowed between them.
//! Every state name in the ledger's SQL comes from here; nothing else spells them.

use std::fmt;

/// Where an object stands. Stored as its [`State::name`] in `objects.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Seen by a listing; waiting to be copied.
    Listed,
    /// A copy has started (a multipart upload may be open).
    Copying,
    /// Arrived, and the store's answers agreed with the bytes sent.
    Copied,
    /// Read back, and every byte was what was sent.
    Verified,
    /// Read back, and it differs from what was sent: waits for `verify --recopy`.
    Mismatched,
    /// The last copy failed; tried again next pass.
    Failed,
    /// Archived at the source: a restore is to be asked, or was asked and
    /// is awaited (`archive_restores`); copied once the restore is done.
    Restoring,
    /// Not to be copied until it changes (archived with `restore = "off"`,
    /// or encrypted with a customer key).
    Skipped,
    /// The destination key holds what ferry did not write: left alone.
    Conflict,
    /// Left out by the bucket pair's filter (include, exclude, size, time).
    Filtered,
    /// No longer at the source.
    Deleted,
    /// No longer at the source, and ferry's copy was removed (`delete = true`).
    Removed,
}

use State::*;

impl State {
    pub const ALL: [State; 12] = [
        Listed, Copying, Copied, Verified, Mismatched, Failed, Restoring, Skipped, Conflict,
        Filtered, Deleted, Removed,
    ];

    /// Still to be copied: the copy pass's queue.
    pub const PENDING: &'static [State] = &[Listed, Copying];
    /// A copy arrived (read back or not).
    pub const ARRIVED: &'static [State] = &[Copied, Verified];
    /// Gone from the source.
    pub const GONE: &'static [State] = &[Deleted, Removed];
    /// Keys a copy does not take: left out by the filter, or gone from the source.
    pub const NOT_TAKEN: &'static [State] = &[Filtered, Deleted, Removed];

    /// Every state whose copy of the current version is at the destination
    /// to be read back, mismatched ones too: what an audit reads.
    pub const READ_BACK: &'static [State] = &[Copied, Verified, Mismatched];

    pub const fn name(self) -> &'static str {
        match self {
            Listed => "listed",
            Copying => "copying",
            Copied => "copied",
            Verified => "verified",
            Mismatched => "mismatched",
            Failed => "failed",
            Restoring => "restoring",
            Skipped => "skipped",
            Conflict => "conflict",
            Filtered => "filtered",
            Deleted => "deleted",
            Removed => "removed",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The moves that ferry's own work makes. The listing is the other
    /// mover: a new version of a key sends it back to `listed` (or
    /// `skipped`) from any state, a filter sends any key to `filtered` and
    /// back, and a key no longer listed becomes `deleted` from any state but
    /// `removed` (see `cursors.rs`).
    pub fn may_become(self, next: State) -> bool {
        matches!(
            (self, next),
            (
                Listed | Copying,
                Copying | Copied | Skipped | Failed | Conflict | Listed | Restoring
            ) | (Copied, Verified | Mismatched | Failed)
                // Restored, or found not archived after all; or skipped
                // because its bucket's restore was turned off.
                | (Restoring, Listed | Skipped)
                // Archived and skipped before its bucket restored archives.
                | (Skipped, Restoring)
                | (Verified, Verified | Mismatched)
                | (Mismatched, Verified | Mismatched | Failed | Listed)
                | (Failed | Conflict, Listed)
                // Deleted at the source, and another writer's object sits at the key.
                | (Deleted, Removed | Conflict)
        )
    }

    /// The states an object may reach `self` from by ferry's own work.
    pub fn sources(self) -> Vec<State> {
        State::ALL
            .into_iter()
            .filter(|from| from.may_become(self))
            .collect()
    }

    /// `'listed', 'copying'`: an SQL `IN` list. The names are fixed words,
    /// never input, so they may be written into SQL text.
    pub fn sql_list(states: &[State]) -> String {
        states
            .iter()
            .map(|s| format!("'{}'", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The one way ferry's work changes an object's state: the row changes
    /// only from a state that [`State::may_become`] `self`. `set` adds
    /// columns (", last_error = ?2"); `?1` is the object id.
    pub(super) fn move_sql(self, set: &str) -> String {
        format!(
            "UPDATE objects SET state = '{}'{set} WHERE id = ?1 AND state IN ({})",
            self.name(),
            State::sql_list(&self.sources())
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.name()), Some(s));
        }
        assert_eq!(State::parse("lost"), None);
    }

    #[test]
    fn finished_states_are_not_reopened_by_work() {
        // Only the listing (a new version) or a person (`verify --recopy`)
        // sends a copied object back into the queue.
        for done in [Copied, Verified, Skipped, Filtered, Removed] {
            assert!(!done.may_become(Listed), "{done} → listed");
            assert!(!done.may_become(Copying), "{done} → copying");
        }
        assert!(!Deleted.may_become(Copied));
        assert!(!Removed.may_become(Deleted));
        assert_eq!(Removed.sources(), vec![Deleted]);
        assert!(Deleted.may_become(Conflict));
        // A restore only ever leads back into the copy queue, never past it.
        assert!(!Restoring.may_become(Copied));
        assert!(!Restoring.may_become(Copying));
        assert!(Restoring.may_become(Listed));
    }

    #[test]
    fn a_move_changes_only_rows_in_a_source_state() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE objects (id INTEGER PRIMARY KEY, state TEXT, last_error TEXT);
             INSERT INTO objects VALUES (1, 'listed', NULL), (2, 'deleted', NULL);",
        )
        .unwrap();
        let sql = Failed.move_sql(", last_error = ?2");
        assert_eq!(c.execute(&sql, rusqlite::params![1, "x"]).unwrap(), 1);
        assert_eq!(c.execute(&sql, rusqlite::params![2, "x"]).unwrap(), 0);
    }
}
