use super::*;

fn fresh() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_for_writing(&dir.path().join("state/ferry.sqlite")).unwrap();
    (dir, conn)
}

fn listed(key: &str, size: u64, etag: &str) -> ListedObject {
    ListedObject {
        key: key.into(),
        size,
        etag: etag.into(),
        last_modified: None,
        storage_class: Some("STANDARD".into()),
        filtered: None,
    }
}

/// A key listed in Glacier Flexible Retrieval: archived.
fn glacier(key: &str, size: u64, etag: &str) -> ListedObject {
    ListedObject {
        storage_class: Some("GLACIER".into()),
        ..listed(key, size, etag)
    }
}

fn states(conn: &Connection) -> Vec<(String, String, i64)> {
    let mut stmt = conn
        .prepare("SELECT key, state, attempts FROM objects ORDER BY key")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn copy_of(id: i64, etag: &str) -> CopyRecord {
    CopyRecord {
        object_id: id,
        source_etag: etag.into(),
        dest_etag: etag.into(),
        size: 1,
        sha256: "s".into(),
        md5: "m".into(),
        part_size: None,
        part_count: 1,
        etag_note: None,
        proved_by_etag: true,
        source_checksum: None,
    }
}

#[test]
fn a_new_ledger_is_private_and_at_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/ferry.sqlite");
    let conn = open_for_writing(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(conn);
    // Opening again migrates nothing and keeps the data.
    let conn = open_for_writing(&path).unwrap();
    ensure_bucket(&conn, "a", "b", "").unwrap();
    assert!(open_reader(&path).is_ok());
}

#[test]
fn a_ledger_from_a_newer_ferry_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.sqlite");
    {
        let conn = open_for_writing(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = open_for_writing(&path).unwrap_err();
    assert!(matches!(err, LedgerError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer ferry"), "{err}");
    assert!(open_reader(&path).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_gives_a_clear_error_and_is_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.sqlite");
    let junk = b"this is a shopping list, not a ledger. ".repeat(200);
    std::fs::write(&path, &junk).unwrap();
    let err = open_for_writing(&path).unwrap_err().to_string();
    assert!(err.contains("not a SQLite file"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), junk);
}

#[test]
fn a_missing_ledger_is_reported_to_readers_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.sqlite");
    let err = open_reader(&path).unwrap_err();
    assert!(matches!(err, LedgerError::Missing { .. }));
    assert!(!path.exists());
}

#[test]
fn relisting_keeps_copied_objects_and_requeues_changed_ones() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    assert_eq!(ensure_bucket(&conn, "audio", "hub-audio", "").unwrap(), b);
    let pass = start_pass(&conn).unwrap();
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[listed("a", 1, "e1"), listed("b", 2, "e2")],
        "b",
    )
    .unwrap();
    assert_eq!(list_cursor(&conn, b).unwrap().as_deref(), Some("b"));
    finish_listing(&conn, b, pass).unwrap();
    assert_eq!(list_cursor(&conn, b).unwrap(), None);

    let work = pending_batch(&conn, &[b], 0, 10).unwrap();
    assert_eq!(work.len(), 2);
    for w in &work {
        record_copied(&mut conn, &copy_of(w.object_id, &w.source_etag)).unwrap();
    }
    assert!(pending_batch(&conn, &[b], 0, 10).unwrap().is_empty());

    // Next pass: `a` unchanged, `b` changed at the source, `c` new.
    let pass = start_pass(&conn).unwrap();
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[
            listed("a", 1, "e1"),
            listed("b", 3, "e2x"),
            listed("c", 4, "e3"),
        ],
        "c",
    )
    .unwrap();
    assert_eq!(
        states(&conn),
        vec![
            ("a".into(), "copied".into(), 1),
            ("b".into(), "listed".into(), 0),
            ("c".into(), "listed".into(), 0)
        ]
    );
    let keys: Vec<String> = pending_batch(&conn, &[b], 0, 10)
        .unwrap()
        .into_iter()
        .map(|w| w.key)
        .collect();
    assert_eq!(keys, vec!["b", "c"]);
}

#[test]
fn archived_objects_are_skipped_with_a_reason() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    let mut cold = listed("cold.mp3", 10, "e");
    cold.storage_class = Some("DEEP_ARCHIVE".into());
    record_listing_page(&mut conn, b, pass, &[cold], "cold.mp3").unwrap();
    assert!(pending_batch(&conn, &[b], 0, 10).unwrap().is_empty());
    let reason: String = conn
        .query_row("SELECT last_error FROM objects", [], |r| r.get(0))
        .unwrap();
    assert!(
        reason.contains("DEEP_ARCHIVE") && reason.contains("restore"),
        "{reason}"
    );
}

#[test]
fn an_archived_object_is_asked_once_per_version_and_again_when_its_copy_expired() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    set_restore_policy(&conn, b, "Bulk", 7).unwrap();
    let pass = start_pass(&conn).unwrap();
    let cold = glacier("cold.mp3", 10, "e");
    record_listing_page(&mut conn, b, pass, &[cold.clone()], "cold.mp3").unwrap();
    assert!(pending_batch(&conn, &[b], 0, 10).unwrap().is_empty());
    let ask = restores_to_ask(&conn, &[b], 0, 10).unwrap();
    assert_eq!(ask.len(), 1);
    // Recorded before it is sent: after a crash it is awaited, not asked.
    record_restore_asked(&conn, &ask[0], "Bulk").unwrap();
    assert!(restores_to_ask(&conn, &[b], 0, 10).unwrap().is_empty());
    assert_eq!(restores_awaited(&conn, &[b], 0, 10).unwrap().len(), 1);
    // Just looked at: not due again at once.
    record_restore_checked(&conn, ask[0].object_id).unwrap();
    conn.execute(
        "UPDATE archive_restores SET requested_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-8 hours')",
        [],
    )
    .unwrap();
    assert!(restores_awaited(&conn, &[b], 0, 10).unwrap().is_empty());
    // Listed again unchanged: still restoring, still asked once.
    let pass = start_pass(&conn).unwrap();
    record_listing_page(&mut conn, b, pass, &[cold], "cold.mp3").unwrap();
    assert!(restores_to_ask(&conn, &[b], 0, 10).unwrap().is_empty());
    record_restore_ready(
        &conn,
        ask[0].object_id,
        Some("Fri, 21 Dec 2012 00:00:00 GMT"),
    )
    .unwrap();
    assert_eq!(pending_batch(&conn, &[b], 0, 10).unwrap().len(), 1);
    // Its GET found it archived again (the restored copy expired): asked again.
    assert!(record_archived(&conn, ask[0].object_id, "expired").unwrap());
    assert_eq!(restores_to_ask(&conn, &[b], 0, 10).unwrap().len(), 1);
    record_restore_asked(&conn, &ask[0], "Bulk").unwrap();
    assert_eq!(restores_asked(&conn, ask[0].object_id).unwrap(), 2);
    let waiting = restores_waiting(&conn).unwrap();
    assert_eq!((waiting[0].tier.as_str(), waiting[0].objects), ("Bulk", 1));
}

#[test]
fn a_listing_that_reports_restores_spares_the_heads() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    set_restore_policy(&conn, b, "Bulk", 7).unwrap();
    let pass = start_pass(&conn).unwrap();
    let cold: Vec<ListedObject> = ["a", "b", "c"]
        .iter()
        .map(|k| ListedObject {
            storage_class: Some("DEEP_ARCHIVE".into()),
            ..listed(k, 10, "e")
        })
        .collect();
    record_listing_page(&mut conn, b, pass, &cold, "c").unwrap();
    let ask = restores_to_ask(&conn, &[b], 0, 10).unwrap();
    record_restore_asked(&conn, &ask[0], "Bulk").unwrap();
    let restore = |key: &str, in_progress| ListedRestore {
        key: key.into(),
        in_progress,
        expires_at: None,
    };
    // a: asked and under way (no HEAD due); b: someone else's restore under
    // way (counts as asked); c: not mentioned (still to be asked).
    record_listed_restores(&conn, b, &[restore("a", true), restore("b", true)]).unwrap();
    // The asks were an hour before this listing (a pass or more): just
    // looked at by it, neither is due a HEAD.
    conn.execute(
        "UPDATE archive_restores SET requested_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')",
        [],
    )
    .unwrap();
    assert!(restores_awaited(&conn, &[b], 0, 10).unwrap().is_empty());
    let to_ask: Vec<String> = restores_to_ask(&conn, &[b], 0, 10)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(to_ask, ["c"]);
    assert_eq!(restores_asked(&conn, ask[0].object_id).unwrap(), 1);
    // Done: back into the copy queue, without a HEAD.
    record_listed_restores(&conn, b, &[restore("a", false)]).unwrap();
    let pending: Vec<String> = pending_batch(&conn, &[b], 0, 10)
        .unwrap()
        .into_iter()
        .map(|w| w.key)
        .collect();
    assert_eq!(pending, ["a"]);
}

#[test]
fn restores_switched_off_skip_what_waited_and_switched_on_wake_only_the_archived() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    set_restore_policy(&conn, b, "Bulk", 7).unwrap();
    let pass = start_pass(&conn).unwrap();
    let (cold, locked) = (glacier("cold.mp3", 10, "e"), glacier("locked.mp3", 10, "f"));
    record_listing_page(&mut conn, b, pass, &[cold, locked], "locked.mp3").unwrap();
    assert_eq!(restores_to_ask(&conn, &[b], 0, 10).unwrap().len(), 2);
    // Off: nothing waits for a restore that will never be asked.
    set_restore_policy(&conn, b, "off", 7).unwrap();
    let state = |key: &str| -> String {
        conn.query_row("SELECT state FROM objects WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(
        (state("cold.mp3"), state("locked.mp3")),
        ("skipped".into(), "skipped".into())
    );
    // One of them turns out SSE-C: skipped for that, it is not woken.
    conn.execute(
        "UPDATE objects SET last_error = 'encrypted with SSE-C: ferry cannot read it' WHERE key = 'locked.mp3'",
        [],
    )
    .unwrap();
    set_restore_policy(&conn, b, "Bulk", 7).unwrap();
    assert_eq!(wake_skipped_archives(&conn, &[b]).unwrap(), 1);
    assert_eq!(
        (state("cold.mp3"), state("locked.mp3")),
        ("restoring".into(), "skipped".into())
    );
}

#[test]
fn with_restores_off_an_archived_get_changes_nothing_here() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    set_restore_policy(&conn, b, "off", 7).unwrap();
    let pass = start_pass(&conn).unwrap();
    record_listing_page(&mut conn, b, pass, &[listed("tiered.mp3", 10, "e")], "t").unwrap();
    let id = pending_batch(&conn, &[b], 0, 10).unwrap()[0].object_id;
    assert!(!record_archived(&conn, id, "archived").unwrap());
    assert_eq!(pending_batch(&conn, &[b], 0, 10).unwrap().len(), 1);
}

#[test]
fn a_copy_of_an_old_version_does_not_mark_the_new_one_copied() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[listed("feed.xml", 1, "old")],
        "feed.xml",
    )
    .unwrap();
    let id = pending_batch(&conn, &[b], 0, 1).unwrap()[0].object_id;
    // The source changed (relisted) while the old version was being copied.
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[listed("feed.xml", 2, "new")],
        "feed.xml",
    )
    .unwrap();
    record_copied(&mut conn, &copy_of(id, "old")).unwrap();
    assert_eq!(states(&conn)[0].1, "listed");
}

#[test]
fn uploads_and_parts_are_recorded_and_cleared_on_completion() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[listed("big.mp3", 20, "x-2")],
        "big.mp3",
    )
    .unwrap();
    let id = pending_batch(&conn, &[b], 0, 1).unwrap()[0].object_id;
    let upload = UploadRecord {
        object_id: id,
        upload_id: "u1".into(),
        dest_bucket: "hub-audio".into(),
        key: "big.mp3".into(),
        source_etag: "x-2".into(),
        part_size: 10,
    };
    record_copying(&conn, id).unwrap();
    record_upload_started(&mut conn, &upload).unwrap();
    assert_eq!(upload_of(&conn, id).unwrap(), Some(upload));
    assert_eq!(states(&conn)[0], ("big.mp3".into(), "copying".into(), 1));
    // A copying object is still pending: a crash leaves it to be picked up again.
    assert_eq!(pending_batch(&conn, &[b], 0, 1).unwrap().len(), 1);
    for n in 1..=2 {
        record_part(
            &conn,
            &PartRecord {
                object_id: id,
                upload_id: "u1".into(),
                part_number: n,
                offset: (n as u64 - 1) * 10,
                length: 10,
                etag: format!("p{n}"),
                md5: format!("p{n}"),
                sha256: format!("s{n}"),
                sha256_state: Some(format!("{}:00:", n * 10)),
                md5_state: None,
                checksum: None,
            },
        )
        .unwrap();
    }
    let mut copy = copy_of(id, "x-2");
    copy.part_count = 2;
    copy.part_size = Some(10);
    record_copied(&mut conn, &copy).unwrap();
    assert_eq!(upload_of(&conn, id).unwrap(), None);
    let parts: i64 = conn
        .query_row("SELECT COUNT(*) FROM parts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(parts, 2, "part checksums stay for later audits");
    let status = bucket_status(&conn).unwrap();
    assert_eq!(
        (status[0].listed, status[0].copied, status[0].bytes_copied),
        (1, 1, 20)
    );
}

#[test]
fn failed_objects_are_named_and_requeued_next_pass() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    record_listing_page(&mut conn, b, pass, &[listed("x.xml", 1, "e")], "x.xml").unwrap();
    let id = pending_batch(&conn, &[b], 0, 1).unwrap()[0].object_id;
    record_failed(&conn, id, "destination PutObject: AccessDenied").unwrap();
    assert_eq!(
        objects_in_state(&conn, State::Failed, 10).unwrap(),
        vec![(
            "onix".into(),
            "x.xml".into(),
            "destination PutObject: AccessDenied".into()
        )]
    );
    assert!(pending_batch(&conn, &[b], 0, 1).unwrap().is_empty());
    assert_eq!(requeue_failed(&conn).unwrap(), 1);
    assert_eq!(pending_batch(&conn, &[b], 0, 1).unwrap().len(), 1);
}

/// The running totals `status` reads, against a full count of the objects.
fn totals_match_a_recount(conn: &Connection) {
    let read = |sql: &str| -> Vec<(i64, String, i64, i64)> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let kept = read(
        "SELECT bucket_id, state, objects, bytes FROM state_totals
         WHERE objects != 0 ORDER BY bucket_id, state",
    );
    let counted = read(
        "SELECT bucket_id, state, COUNT(*), SUM(size) FROM objects
         GROUP BY bucket_id, state ORDER BY bucket_id, state",
    );
    assert_eq!(kept, counted);
}

#[test]
fn status_totals_follow_every_change_of_state_and_size() {
    let (_dir, mut conn) = fresh();
    let a = ensure_bucket(&conn, "audio", "hub-audio", "").unwrap();
    let o = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    let page = [
        listed("a.mp3", 100, "a"),
        listed("b.mp3", 200, "b"),
        glacier("cold.mp3", 700, "g"),
    ];
    record_listing_page(&mut conn, a, pass, &page, "cold.mp3").unwrap();
    record_listing_page(&mut conn, o, pass, &[listed("x.xml", 5, "x")], "x.xml").unwrap();
    totals_match_a_recount(&conn);

    let work = pending_batch(&conn, &[a, o], 0, 10).unwrap();
    record_copying(&conn, work[0].object_id).unwrap();
    let mut copy = copy_of(work[0].object_id, "a");
    copy.size = 100;
    record_copied(&mut conn, &copy).unwrap();
    record_failed(&conn, work[1].object_id, "boom").unwrap();
    totals_match_a_recount(&conn);

    // The next pass: one key changed size, one is gone, the rest unchanged.
    let pass = start_pass(&conn).unwrap();
    requeue_failed(&conn).unwrap();
    let page = [listed("a.mp3", 150, "a2"), listed("cold.mp3", 700, "g")];
    record_listing_page(&mut conn, a, pass, &page, "cold.mp3").unwrap();
    finish_listing(&conn, a, pass).unwrap();
    totals_match_a_recount(&conn);

    let status = bucket_status(&conn).unwrap();
    let audio = &status[0];
    assert_eq!(
        (audio.listed, audio.pending, audio.skipped, audio.deleted),
        (3, 1, 1, 1)
    );
    assert_eq!(audio.bytes_listed, 150 + 700, "deleted keys do not count");
    assert_eq!((status[1].listed, status[1].pending), (1, 1));
}

#[test]
fn a_ledger_from_before_the_totals_gets_them_from_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &super::migrations::MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute_batch(
            "INSERT INTO buckets (id, source, destination, prefix) VALUES (1, 'onix', 'hub-onix', '');
             INSERT INTO objects (bucket_id, key, size, source_etag, state) VALUES
                (1, 'a', 10, 'e', 'copied'), (1, 'b', 20, 'e', 'listed'), (1, 'c', 30, 'e', 'listed');",
        )
        .unwrap();
    }
    let conn = open_for_writing(&path).unwrap();
    totals_match_a_recount(&conn);
    let status = bucket_status(&conn).unwrap();
    assert_eq!(
        (
            status[0].listed,
            status[0].copied,
            status[0].pending,
            status[0].bytes_listed
        ),
        (3, 1, 2, 60)
    );
}

#[test]
fn a_bucket_is_known_as_of_its_last_listing_and_a_copy_of_a_version_is_kept() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    // 2001-09-09T01:46:40Z, long before this pass started.
    let (long_ago, far_ahead) = (1_000_000_000_000, 9_000_000_000_000);
    assert_eq!(
        listed_after(&conn, b, long_ago).unwrap(),
        None,
        "never listed"
    );
    let pass = start_pass(&conn).unwrap();
    record_listing_page(&mut conn, b, pass, &[listed("a", 1, "v2")], "a").unwrap();
    finish_listing(&conn, b, pass).unwrap();
    assert!(listed_after(&conn, b, long_ago).unwrap().is_some());
    assert_eq!(listed_after(&conn, b, far_ahead).unwrap(), None);
    // Read from an inventory: known as of its creationTimestamp.
    finish_inventory(&conn, (b, pass), Some("m.json"), long_ago + 1).unwrap();
    let known = listed_after(&conn, b, long_ago).unwrap();
    assert_eq!(known.as_deref(), Some("2001-09-09T01:46:40.001Z"));
    assert_eq!(listed_after(&conn, b, long_ago + 1).unwrap(), None);

    let id = pending_batch(&conn, &[b], 0, 1).unwrap()[0].object_id;
    record_copied(&mut conn, &copy_of(id, "v2")).unwrap();
    assert_eq!(copy_of_version(&conn, id, "v2", 2).unwrap(), None, "size");
    assert_eq!(copy_of_version(&conn, id, "v1", 1).unwrap(), None, "ETag");
    let copied = copy_of_version(&conn, id, "v2", 1).unwrap();
    assert_eq!(copied.as_deref(), Some("v2"));
    // An older inventory sent it back to v1; a 412 found v2 again.
    record_listing_page(&mut conn, b, pass, &[listed("a", 1, "v1")], "a").unwrap();
    assert!(
        !record_copy_held(&conn, id, "v2").unwrap(),
        "the row is of v1"
    );
    record_new_version(&conn, id, 1, "v2").unwrap();
    assert!(record_copy_held(&conn, id, "v2").unwrap());
    assert_eq!(states(&conn)[0].1, "copied");
}

#[test]
fn an_audit_reads_again_a_copy_made_after_its_reading() {
    let (_dir, mut conn) = fresh();
    let b = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    let pass = start_pass(&conn).unwrap();
    record_listing_page(
        &mut conn,
        b,
        pass,
        &[listed("feed.xml", 1, "v1")],
        "feed.xml",
    )
    .unwrap();
    let id = pending_batch(&conn, &[b], 0, 1).unwrap()[0].object_id;
    record_copied(&mut conn, &copy_of(id, "v1")).unwrap();
    let tick = || std::thread::sleep(std::time::Duration::from_millis(5));
    tick();
    let audit = begin_or_resume_audit(&conn).unwrap();
    let in_audit = |conn: &Connection| {
        let which = ReadBack::NotSince(audit.started_at.clone());
        verify_batch(conn, &[b], &which, 0, 10).unwrap().len()
    };
    assert_eq!(in_audit(&conn), 1);
    tick();
    let read = Verification {
        object_id: id,
        ok: true,
        reason: None,
        size: Some(1),
        sha256: Some("s".into()),
        md5: None,
    };
    record_verification(&mut conn, &read).unwrap();
    assert_eq!(in_audit(&conn), 0, "read in this audit");
    // The audit is cut off; a run copies the object again, unread.
    tick();
    record_copied(&mut conn, &copy_of(id, "v1")).unwrap();
    assert_eq!(
        in_audit(&conn),
        1,
        "the copy there now was not read by this audit"
    );
    // Resumed, the audit is the same one.
    assert_eq!(begin_or_resume_audit(&conn).unwrap().id, audit.id);
}
