//! The event feed's ledger: order within a key, a confirmed delete, a key the
//! feed missed, and the lag to a copy.

use super::*;

fn fresh() -> (tempfile::TempDir, Connection, i64) {
    let dir = tempfile::tempdir().unwrap();
    let conn = open_for_writing(&dir.path().join("ferry.sqlite")).unwrap();
    let b = ensure_bucket(&conn, "onix", "hub-onix", "").unwrap();
    start_following(&conn, b, "https://sqs.eu-central-1.amazonaws.com/1/q").unwrap();
    (dir, conn, b)
}

fn present(key: &str, etag: &str, sequencer: &str, at: &str) -> EventOutcome {
    EventOutcome {
        key: key.into(),
        sequencer: Some(sequencer.into()),
        event_at: at.into(),
        at_source: AtSource::Present(ListedObject {
            key: key.into(),
            size: 10,
            etag: etag.into(),
            last_modified: Some(at.into()),
            storage_class: Some("STANDARD".into()),
            filtered: None,
        }),
    }
}

fn row(conn: &Connection, key: &str) -> (String, String, i64, Option<String>) {
    conn.query_row(
        "SELECT state, source_etag, missing_passes, event_sequencer FROM objects WHERE key = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

#[test]
fn sequencers_compare_right_padded_within_a_key() {
    assert!(sequencer_is_newer("0A5", "0A4F"));
    assert!(!sequencer_is_newer("0A4F", "0A5"));
    assert!(!sequencer_is_newer("0A5", "0A50"), "equal once padded");
    assert!(sequencer_is_newer(
        "0055AED6DCD90281E6",
        "0055AED6DCD90281E5"
    ));
    assert!(
        sequencer_is_newer("0055aed6dcd90281e6", "0055AED6DCD90281E5"),
        "hex case"
    );
}

#[test]
fn an_older_or_repeated_event_changes_nothing_and_a_confirmed_delete_is_removable_at_once() {
    let (_d, mut conn, b) = fresh();
    let t = "2026-12-07T06:00:00.000Z";
    let done = record_events(&mut conn, b, &[present("a.xml", "v2", "0B", t)], 2).unwrap();
    assert_eq!((done.applied, done.stale), (1, 0));
    assert_eq!(
        row(&conn, "a.xml"),
        ("listed".into(), "v2".into(), 0, Some("0B".into()))
    );
    // v1's event, late, and v2's again: both stale, the row as it was.
    let done = record_events(
        &mut conn,
        b,
        &[
            present("a.xml", "v1", "0A", t),
            present("a.xml", "v2", "0B", t),
        ],
        2,
    )
    .unwrap();
    assert_eq!((done.applied, done.stale), (0, 2));
    assert_eq!(row(&conn, "a.xml").1, "v2");
    let gone = EventOutcome {
        at_source: AtSource::Gone,
        ..present("a.xml", "", "0C", t)
    };
    let done = record_events(&mut conn, b, &[gone], 2).unwrap();
    assert_eq!(done.gone, 1);
    assert_eq!(
        row(&conn, "a.xml"),
        ("deleted".into(), "v2".into(), 2, Some("0C".into()))
    );
    assert_eq!(deletable(&conn, &[b], 2, 0, 10).unwrap().len(), 1);
    // Created again: back in the queue.
    record_events(&mut conn, b, &[present("a.xml", "v3", "0D", t)], 2).unwrap();
    assert_eq!(row(&conn, "a.xml").0, "listed");
    let feed = &feed_status(&conn).unwrap()[0];
    assert_eq!((feed.events, feed.stale_events, feed.awaiting), (3, 2, 1));
}

#[test]
fn a_listed_change_no_event_told_is_missed_only_while_followed_and_past_delivery() {
    let (_d, mut conn, b) = fresh();
    conn.execute(
        "UPDATE event_feeds SET following_since = '2026-12-07T06:00:00Z', drained_at = '2026-12-07T07:00:00Z'",
        [],
    )
    .unwrap();
    let told = present("told.xml", "v1", "01", "2026-12-07T06:10:00.000Z");
    record_events(&mut conn, b, &[told], 2).unwrap();
    let listed = |key: &str, etag: &str, at: &str| ListedObject {
        key: key.into(),
        size: 10,
        etag: etag.into(),
        last_modified: Some(at.into()),
        storage_class: Some("STANDARD".into()),
        filtered: None,
    };
    let page = [
        listed("before.xml", "x", "2026-12-07T05:00:00Z"),
        listed("told.xml", "v1", "2026-12-07T06:10:00Z"),
        listed("untold.xml", "y", "2026-12-07T06:20:00Z"),
        listed("recent.xml", "z", "2026-12-07T06:59:30Z"),
    ];
    assert_eq!(
        missed_by_feed(&conn, b, &page).unwrap(),
        vec!["untold.xml".to_owned()]
    );
    assert_eq!(feed_status(&conn).unwrap()[0].missed_keys, 1);
}

#[test]
fn the_lag_runs_from_the_event_to_the_copy_read_back() {
    let (_d, mut conn, b) = fresh();
    record_events(
        &mut conn,
        b,
        &[present("a.xml", "v1", "01", "2026-12-07T06:00:00.000Z")],
        2,
    )
    .unwrap();
    record_events(
        &mut conn,
        b,
        &[present("f.xml", "v1", "01", "2026-12-07T06:00:00.000Z")],
        2,
    )
    .unwrap();
    let id: i64 = conn
        .query_row("SELECT id FROM objects WHERE key = 'a.xml'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        record_event_lags(&conn).unwrap().is_empty(),
        "nothing copied yet"
    );
    conn.execute(
        "INSERT INTO copies (object_id, source_etag, dest_etag, etag_matches, size, sha256, md5, part_count, copied_at)
         VALUES (?1, 'v1', 'v1', 1, 10, 's', 'm', 1, '2026-12-07T06:00:02.500Z')",
        [id],
    )
    .unwrap();
    conn.execute("UPDATE objects SET state = 'copied' WHERE id = ?1", [id])
        .unwrap();
    conn.execute(
        "UPDATE objects SET state = 'filtered' WHERE key = 'f.xml'",
        [],
    )
    .unwrap();
    assert_eq!(record_event_lags(&conn).unwrap(), vec![(b, 2500)]);
    let feed = &feed_status(&conn).unwrap()[0];
    assert_eq!(feed.awaiting, 0, "a filtered key awaits no copy");
    assert_eq!(feed.lag_seconds, Some(2.5));
}

#[test]
fn a_queue_not_read_for_minutes_has_a_lag_of_at_least_that() {
    let (_d, conn, _b) = fresh();
    conn.execute(
        "UPDATE event_feeds SET received_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-300 seconds'), last_lag_ms = 100",
        [],
    )
    .unwrap();
    let lag = feed_status(&conn).unwrap()[0].lag_seconds.unwrap();
    assert!((299.0..310.0).contains(&lag), "{lag}");
    record_received(&conn, &[1], false).unwrap();
    assert_eq!(
        feed_status(&conn).unwrap()[0].lag_seconds,
        Some(0.1),
        "read now: the last lag"
    );
}

#[test]
fn an_overwrite_s_lag_is_not_taken_from_the_last_version_s_read_back() {
    let (_d, mut conn, b) = fresh();
    record_events(
        &mut conn,
        b,
        &[present("a.xml", "v2", "02", "2026-12-07T06:00:00.000Z")],
        2,
    )
    .unwrap();
    let id: i64 = conn
        .query_row("SELECT id FROM objects WHERE key = 'a.xml'", [], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO verifications (object_id, checked_at, ok) VALUES ({id}, '2026-12-07T05:00:01.000Z', 1);
         INSERT INTO copies (object_id, source_etag, dest_etag, etag_matches, size, sha256, md5, part_count, copied_at)
         VALUES ({id}, 'v2', 'v2', 1, 10, 's', 'm', 1, '2026-12-07T06:09:00.000Z');
         UPDATE objects SET state = 'copied' WHERE id = {id};"
    ))
    .unwrap();
    assert_eq!(record_event_lags(&conn).unwrap(), vec![(b, 540_000)]);
}
