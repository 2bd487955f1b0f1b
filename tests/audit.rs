//! Plan before, prove after: `plan`, `verify` and `report` against the real
//! servers, with damage done behind ferry's back.

mod support;

use aws_sdk_s3::primitives::ByteStream;
use ferry_tools::demo::{self, DemoObject};
use support::{csv_block, Fixture};

const TRANSFER: &str = r#"
concurrency = 8
part_size = "8MiB"
multipart_threshold = "8MiB"
"#;

fn data(fx: &Fixture) -> Vec<DemoObject> {
    let onix = format!("onix{}", fx.suffix);
    let audio = format!("audio{}", fx.suffix);
    let mut set: Vec<DemoObject> = (0..12)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/onix-{i:03}.xml"),
                3_000 + i * 500,
                "application/xml",
            )
        })
        .collect();
    let mut book = DemoObject::new(&audio, "books/one/full.mp3".into(), 20 << 20, "audio/mpeg");
    book.multipart = true;
    set.push(book);
    set
}

#[tokio::test(flavor = "multi_thread")]
async fn bit_rot_at_rest_is_found_named_and_repaired() {
    let fx = Fixture::new("bitrot", TRANSFER).await;
    let set = data(&fx);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    assert_eq!(fx.ferry(&["report"]).code, 0, "clean after the copy");

    // Same size, other bytes, written straight to the destination.
    let victim = &set[3];
    let dest = format!("hub-{}", victim.bucket);
    let rotten = demo::content(victim.seed ^ 1, 0, victim.size as usize);
    fx.destination
        .put_object()
        .bucket(&dest)
        .key(&victim.key)
        .body(ByteStream::from(rotten))
        .send()
        .await
        .unwrap();

    // Every copy was read back after the copy; the plain command reads them
    // all again (`--pending` would read none).
    let pending = fx.ferry(&["verify", "--pending"]);
    assert_eq!(pending.code, 0, "{pending:?}");
    assert!(pending.stdout.contains("verified 0 objects"), "{pending:?}");
    let verify = fx.ferry(&["verify"]);
    assert_eq!(verify.code, 1, "{verify:?}");
    let named: Vec<&str> = verify
        .stdout
        .lines()
        .filter(|l| l.starts_with("mismatched: "))
        .collect();
    assert_eq!(named.len(), 1, "{verify:?}");
    assert!(named[0].contains(&victim.key), "{verify:?}");
    assert!(
        verify
            .stdout
            .contains(&format!("verified {} objects", set.len() - 1)),
        "{verify:?}"
    );

    let report = fx.ferry(&["report", "--format", "csv"]);
    assert_eq!(report.code, 1, "{report:?}");
    let problems = csv_block(&report.stdout, "problems");
    assert_eq!(problems.len(), 1, "{report:?}");
    assert_eq!(
        (&problems[0][1], &problems[0][2]),
        (victim.key.as_str(), "mismatched")
    );

    let recopy = fx.ferry(&["verify", "--recopy"]);
    assert!(
        recopy.stdout.contains("1 mismatched objects queued"),
        "{recopy:?}"
    );
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("copied 1 objects"), "{run:?}");
    let report = fx.ferry(&["report", "--format", "json"]);
    assert_eq!(report.code, 0, "{report:?}");
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let verified: u64 = json["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["verified"].as_u64().unwrap())
        .sum();
    assert_eq!(verified, set.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_puts_each_key_in_its_class() {
    let fx = Fixture::new("reconcile", TRANSFER).await;
    let set = data(&fx);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);

    let onix = &set[0].bucket;
    let dest = format!("hub-{onix}");
    let deleted = &set[1];
    fx.destination
        .delete_object()
        .bucket(&dest)
        .key(&deleted.key)
        .send()
        .await
        .unwrap();
    let formula = "=HYPERLINK(\"x\")";
    fx.destination
        .put_object()
        .bucket(&dest)
        .key(formula)
        .body(ByteStream::from_static(b"stray"))
        .send()
        .await
        .unwrap();
    let mut changed = set[2].clone();
    changed.seed ^= 7;
    demo::put(&fx.source, &changed).await.unwrap();

    for mode in [
        &["report", "--format", "csv"][..],
        &["report", "--fast", "--format", "csv"],
    ] {
        let report = fx.ferry(mode);
        assert_eq!(report.code, 1, "{report:?}");
        let mut problems: Vec<(String, String)> = csv_block(&report.stdout, "problems")
            .iter()
            .map(|r| (r[1].to_owned(), r[2].to_owned()))
            .collect();
        problems.sort();
        let mut want = vec![
            (deleted.key.clone(), "missing".to_owned()),
            (changed.key.clone(), "changed".to_owned()),
            // Escaped against formula injection.
            (format!("'{formula}"), "extra".to_owned()),
        ];
        want.sort();
        assert_eq!(problems, want, "{mode:?}: {report:?}");
        let buckets = csv_block(&report.stdout, "buckets");
        let row = buckets.iter().find(|r| &r[0] == onix.as_str()).unwrap();
        // bucket,destination,listed,copied,verified,mismatched,missing,extra,changed,failed,skipped,bytes
        assert_eq!((&row[6], &row[7], &row[8]), ("1", "1", "1"), "{mode:?}");
    }
    let markdown = fx.ferry(&["report", "--format", "markdown"]);
    assert!(markdown.stdout.contains("### problems"), "{markdown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn report_merges_the_ledgers_of_several_runs() {
    let fx = Fixture::new("shards", TRANSFER).await;
    let set = data(&fx);
    fx.fill(&set).await;
    // Two runs, each with its own ledger and half of the buckets.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let (head, tables) = text.split_once("[[buckets]]").unwrap();
    let tables: Vec<String> = tables
        .split("[[buckets]]")
        .map(|t| format!("[[buckets]]{t}"))
        .collect();
    for (i, half) in [&tables[..2], &tables[2..]].iter().enumerate() {
        let path = fx.dir.path().join(format!("shard-{i}.toml"));
        let shard =
            head.replace("state/ferry.sqlite", &format!("state/shard-{i}.sqlite")) + &half.concat();
        std::fs::write(&path, shard).unwrap();
        let run = support::ferry_in(
            fx.dir.path(),
            &path,
            &["run", "--once"],
            &support::servers().env,
        );
        assert_eq!(run.code, 0, "{run:?}");
    }
    let verified = |ledgers: &[&str]| {
        let mut args = vec!["report", "--format", "json"];
        for l in ledgers {
            args.extend(["--ledger", l]);
        }
        let run = fx.ferry(&args);
        assert_eq!(run.code, 0, "{run:?}");
        let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        json["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["verified"].as_u64().unwrap())
            .sum::<u64>()
    };
    // The first shard holds audio and mediafiles: the book. The other
    // shard's keys are only "copied" (size and ETag agree) without its ledger.
    assert_eq!(verified(&["state/shard-0.sqlite"]), 1);
    assert_eq!(
        verified(&["state/shard-0.sqlite", "state/shard-1.sqlite"]),
        set.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_counts_what_is_there_and_warns_before_anything_moves() {
    let fx = Fixture::new("plan", TRANSFER).await;
    let mut set = data(&fx);
    // Garage, unlike AWS, takes a 1,025-byte key: the plan must flag it.
    let long_key = format!("feeds/{}", "x".repeat(1019));
    set.push(DemoObject::new(
        &set[0].bucket.clone(),
        long_key.clone(),
        10,
        "application/xml",
    ));
    fx.fill(&set).await;

    let csv_out = fx.ferry(&[
        "plan",
        "--format",
        "csv",
        "--bandwidth",
        "800Mbit/s",
        "--egress-price-per-gb",
        "0.05",
    ]);
    assert_eq!(csv_out.code, 0, "{csv_out:?}");
    for (src, _) in fx.pairs() {
        let objects: Vec<&DemoObject> = set.iter().filter(|o| o.bucket == src).collect();
        let bytes: u64 = objects.iter().map(|o| o.size).sum();
        let rows = csv_block(&csv_out.stdout, "buckets");
        let row = rows
            .iter()
            .find(|r| r[0] == src)
            .unwrap_or_else(|| panic!("{src}: {csv_out:?}"));
        assert_eq!(
            (
                row[1].parse::<usize>().unwrap(),
                row[2].parse::<u64>().unwrap()
            ),
            (objects.len(), bytes),
            "{src}"
        );
    }
    let warnings = csv_block(&csv_out.stdout, "warnings");
    assert!(
        warnings
            .iter()
            .any(|w| w[1].contains("key over 1,024 bytes (1025 bytes)")),
        "{csv_out:?}"
    );
    let estimate = csv_block(&csv_out.stdout, "estimate");
    assert!(
        estimate
            .iter()
            .any(|r| &r[0] == "bandwidth" && &r[1] == "800Mbit/s"),
        "{csv_out:?}"
    );
    assert!(
        estimate
            .iter()
            .any(|r| &r[0] == "egress price per GB (USD)" && &r[1] == "0.05"),
        "{csv_out:?}"
    );

    // The CSV holds the same rows as the JSON.
    let json_out = fx.ferry(&["plan", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json_out.stdout).unwrap();
    let from_json: Vec<(String, u64, u64)> = json["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["bucket"].as_str().unwrap().to_owned(),
                b["objects"].as_u64().unwrap(),
                b["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let from_csv: Vec<(String, u64, u64)> = csv_block(&csv_out.stdout, "buckets")
        .iter()
        .map(|r| {
            (
                r[0].to_owned(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_csv, from_json);
    // Tags are not counted until asked for; Garage has no tagging, so
    // --count-tags finds none, records that, and the next plan still knows.
    let tags_of = |json: &serde_json::Value| -> Vec<(u64, u64)> {
        json["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["tagged_objects"].as_u64().unwrap(),
                    b["tags_not_asked"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let objects: Vec<u64> = from_json.iter().map(|(_, n, _)| *n).collect();
    assert_eq!(
        tags_of(&json),
        objects.iter().map(|n| (0, *n)).collect::<Vec<_>>()
    );
    let counted = fx.ferry(&["plan", "--count-tags", "--format", "json"]);
    assert_eq!(counted.code, 0, "{counted:?}");
    let again = fx.ferry(&["plan", "--format", "json"]);
    for out in [&counted, &again] {
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(tags_of(&json), vec![(0, 0); objects.len()], "{out:?}");
        for (row, n) in json["catalog"].as_array().unwrap().iter().zip(&objects) {
            let text = row["tags"].as_str().unwrap();
            match n {
                0 => assert_eq!(text, "no objects"),
                n => assert!(
                    text.starts_with(&format!("0 of {n} objects carry tags")),
                    "{text}"
                ),
            }
        }
    }
    // Nothing was copied.
    for (_, dst) in fx.pairs() {
        assert!(support::list_all(&fx.destination, &dst).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_every_data_quality_case_of_the_demo_and_nothing_else() {
    let fx = Fixture::new("quality", TRANSFER).await;
    let set = demo::data_set(demo::Scale::Small, &fx.suffix);
    fx.fill(&set).await;
    let media = format!("mediafiles{}", fx.suffix);

    let out = fx.ferry(&["plan", "--format", "json", "--deep"]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut found: Vec<(String, Vec<String>)> = json["data_quality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let keys = f["keys"].as_array().unwrap();
            (
                f["check"].as_str().unwrap().to_owned(),
                keys.iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    found.sort();

    // What the demo holds for each check: one key, or the keys that collide.
    let mut want: Vec<(String, Vec<String>)> = Vec::new();
    let mut groups: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (o, check) in demo::data_quality_cases(&media) {
        match check {
            Some(c @ ("unicode_nfc_collision" | "case_collision")) => {
                groups.entry(c).or_default().push(o.key)
            }
            Some("duplicate_content") => want.push((
                "duplicate_content".into(),
                vec![o.key, "covers/isbn-0003.jpg".into()],
            )),
            Some(c) => want.push((c.into(), vec![o.key])),
            None => {}
        }
    }
    for (check, mut keys) in groups {
        keys.sort();
        want.push((check.into(), keys));
    }
    want.push(("empty_object".into(), vec!["placeholders/empty.txt".into()]));
    want.sort();
    assert_eq!(found, want, "{}", out.stdout);

    // The summary counts each check, and says what --deep asked.
    let summary = json["data_quality_summary"].as_array().unwrap();
    let row = |check: &str| {
        summary
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("no {check} in {summary:?}"))
    };
    assert_eq!(row("case_collision")["findings"], 1);
    assert_eq!(row("case_collision")["keys"], 2);
    assert_eq!(row("duplicate_content")["bytes"], 80_000);
    let deep = row("content_type_mismatch")["note"].as_str().unwrap();
    assert!(deep.starts_with("HEAD of a random sample of "), "{deep}");
}

/// A workbook's sheet as rows of cells, read back with calamine.
fn sheet(path: &std::path::Path, name: &str) -> Vec<Vec<calamine::Data>> {
    use calamine::Reader as _;
    let mut book = calamine::open_workbook_auto(path).unwrap();
    let range = book
        .worksheet_range(name)
        .unwrap_or_else(|e| panic!("no sheet {name:?}: {e}"));
    range.rows().map(|r| r.to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_xlsx_workbooks_hold_the_same_figures_as_the_json() {
    use calamine::Data;
    let fx = Fixture::new("xlsx", TRANSFER).await;
    let mut set = data(&fx);
    // A key a spreadsheet would run as a formula must stay text.
    let formula = "=HYPERLINK(\"http://example.com\").xml".to_owned();
    set.push(DemoObject::new(
        &set[0].bucket.clone(),
        formula.clone(),
        0,
        "application/xml",
    ));
    fx.fill(&set).await;
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("plan.xlsx");

    // Without --output, a workbook is refused before anything is done.
    let refused = fx.ferry(&["plan", "--format", "xlsx"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("--output FILE.xlsx"), "{refused:?}");

    let out = fx.ferry(&[
        "plan",
        "--format",
        "xlsx",
        "--output",
        book.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let json: serde_json::Value =
        serde_json::from_str(&fx.ferry(&["plan", "--format", "json"]).stdout).unwrap();

    // One sheet per table, named as the JSON's keys.
    let names: Vec<String> = {
        use calamine::Reader as _;
        calamine::open_workbook_auto(&book)
            .unwrap()
            .sheet_names()
            .to_vec()
    };
    let keys: Vec<String> = json.as_object().unwrap().keys().cloned().collect();
    let mut from_names: Vec<String> = names.iter().map(|n| n.replace(' ', "_")).collect();
    from_names.sort();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    assert_eq!(from_names, sorted_keys);

    // The catalog: numbers are numbers, bytes also readable, the same figures.
    let catalog = sheet(&book, "catalog");
    let header: Vec<String> = catalog[0].iter().map(|c| c.to_string()).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} in {header:?}"))
    };
    for row in json["catalog"].as_array().unwrap() {
        let got = catalog
            .iter()
            .find(|r| r[col("bucket")] == Data::String(row["bucket"].as_str().unwrap().into()))
            .unwrap_or_else(|| panic!("{row} not in the catalog sheet"));
        assert_eq!(
            got[col("objects")],
            Data::Float(row["objects"].as_f64().unwrap())
        );
        assert_eq!(
            got[col("bytes")],
            Data::Float(row["bytes"].as_f64().unwrap())
        );
        assert!(
            matches!(&got[col("bytes_human")], Data::String(s) if s.ends_with("iB") || s.ends_with(" B"))
        );
        for text in ["data_category", "approach", "verification", "status"] {
            // An empty string is an empty cell.
            let cell = match &got[col(text)] {
                Data::Empty => String::new(),
                Data::String(s) => s.clone(),
                other => panic!("{text} is {other:?}, not text"),
            };
            assert_eq!(cell, row[text].as_str().unwrap(), "{text}");
        }
    }
    // After the copy, the catalog's status counts each object once.
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let after: serde_json::Value =
        serde_json::from_str(&fx.ferry(&["plan", "--format", "json"]).stdout).unwrap();
    for row in after["catalog"].as_array().unwrap() {
        let n = row["objects"].as_u64().unwrap();
        let want = match n {
            0 => "listed, nothing copied yet".to_owned(),
            n => format!("{n} of {n} copied (100.0 %), {n} verified, 0 failed, 0 pending"),
        };
        assert_eq!(row["status"].as_str().unwrap(), want, "{row}");
    }
    // The formula-like key is text in the data-quality sheet (an empty object).
    let quality = sheet(&book, "data quality");
    assert!(
        quality
            .iter()
            .flatten()
            .any(|c| matches!(c, Data::String(s) if s.contains("=HYPERLINK"))),
        "{quality:?}"
    );

    // status and report write workbooks too, with the same figures.
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    let status_book = dir.path().join("status.xlsx");
    let status = fx.ferry(&[
        "status",
        "--format",
        "xlsx",
        "--output",
        status_book.to_str().unwrap(),
    ]);
    assert_eq!(status.code, 0, "{status:?}");
    let rows = sheet(&status_book, "status");
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    let copied = header.iter().position(|h| h == "copied").unwrap();
    let verified = header.iter().position(|h| h == "verified").unwrap();
    let total = rows
        .iter()
        .find(|r| r[0] == Data::String("total".into()))
        .unwrap();
    let n = set.len() as f64;
    assert_eq!(total[verified], Data::Float(n), "{rows:?}");
    assert_eq!(total[copied], Data::Float(n), "{rows:?}");
    let report_book = dir.path().join("report.xlsx");
    let report = fx.ferry(&[
        "report",
        "--format",
        "xlsx",
        "--output",
        report_book.to_str().unwrap(),
    ]);
    assert_eq!(report.code, 0, "{report:?}");
    let report_json: serde_json::Value =
        serde_json::from_str(&fx.ferry(&["report", "--format", "json"]).stdout).unwrap();
    let first_table = report_json
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let rows = sheet(&report_book, &first_table.replace('_', " "));
    assert_eq!(
        rows.len() - 1,
        report_json[&first_table].as_array().unwrap().len()
    );
    // Other formats go to a file too, and nothing to the terminal.
    let csv_file = dir.path().join("status.csv");
    let csv = fx.ferry(&[
        "status",
        "--format",
        "csv",
        "--output",
        csv_file.to_str().unwrap(),
    ]);
    assert_eq!((csv.code, csv.stdout.as_str()), (0, ""), "{csv:?}");
    assert!(std::fs::read_to_string(&csv_file)
        .unwrap()
        .starts_with("# status\n"));
}

/// A plain `verify` is the audit: it reads every copy back, and one that is
/// stopped carries on where it stopped instead of starting over, and never
/// passes for a finished audit. It creates nothing at the destination.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reads_every_copy_back_and_a_stopped_audit_carries_on() {
    let fx = Fixture::new("audit-resume", TRANSFER).await;
    let onix = format!("onix{}", fx.suffix);
    let set: Vec<DemoObject> = (0..60)
        .map(|i| {
            DemoObject::new(
                &onix,
                format!("feeds/{i:03}.xml"),
                2_000 + i,
                "application/xml",
            )
        })
        .collect();
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    let read_back = || fx.count("SELECT COUNT(*) FROM verifications");
    assert_eq!(
        read_back(),
        set.len() as i64,
        "the run read every copy back"
    );

    // A destination bucket that is missing: a run would create it
    // (create_buckets = true), a read-only audit must not.
    let text = std::fs::read_to_string(&fx.config_path).unwrap();
    let unmade = format!("hub-unmade{}", fx.suffix);
    let slow = text.replacen(
        "[destination]\n",
        "[destination]\nmax_requests_per_second = 6\n",
        1,
    );
    let slow = format!(
        "create_buckets = true\n{slow}[[buckets]]\nsource = \"{onix}\"\ndestination = \"{unmade}\"\nprefix = \"none/\"\n"
    );
    std::fs::write(&fx.config_path, &slow).unwrap();
    let stamp = |c: &rusqlite::Connection| -> String {
        c.query_row("SELECT MAX(checked_at) FROM verifications", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let ran_at = stamp(&fx.ledger());

    // Cut off: SIGTERM after a few copies were read back.
    let child = fx.spawn_ferry(&["verify"]);
    let newer = |c: &rusqlite::Connection, t: &str| -> i64 {
        c.query_row(
            "SELECT COUNT(*) FROM verifications WHERE checked_at > ?1",
            [t],
            |r| r.get(0),
        )
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while newer(&fx.ledger(), &ran_at) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit read nothing back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    support::sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cut-off audit is not a pass: {stdout}"
    );
    assert!(
        stdout.contains("run `ferry verify` again to carry on"),
        "{stdout}"
    );
    let first = newer(&fx.ledger(), &ran_at);
    assert!(
        first > 0 && first < set.len() as i64,
        "stopped part-way: {first} of {}",
        set.len()
    );

    std::fs::write(
        &fx.config_path,
        slow.replacen("max_requests_per_second = 6\n", "", 1),
    )
    .unwrap();
    let rest = fx.ferry(&["verify"]);
    assert_eq!(rest.code, 0, "{rest:?}");
    assert!(
        rest.stdout.contains("carrying on the audit begun at"),
        "{rest:?}"
    );
    assert!(
        rest.stdout
            .contains(&format!("verified {} objects", set.len() as i64 - first)),
        "the rest, once each: {rest:?}"
    );
    assert_eq!(
        newer(&fx.ledger(), &ran_at),
        set.len() as i64,
        "every copy read back in the audit"
    );

    // The audit is done: the next one reads everything again.
    let again = fx.ferry(&["verify"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stdout.contains("carrying on"), "{again:?}");
    assert!(
        again
            .stdout
            .contains(&format!("verified {} objects", set.len())),
        "{again:?}"
    );
    let made = fx.destination.head_bucket().bucket(&unmade).send().await;
    assert!(
        made.is_err(),
        "verify created the destination bucket {unmade}"
    );
}

/// A key that `delete = true` removed properly is gone from both sides: the
/// report calls it `gone`, not a problem, so sign-off can pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_removed_by_delete_is_not_a_problem_in_the_report() {
    let fx = Fixture::with_destination("removed", TRANSFER, "delete = true", None).await;
    let set = data(&fx);
    fx.fill(&set).await;
    assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    let gone = &set[4];
    fx.delete_at_source(&gone).await;
    // The first pass sees it gone, the next one removes ferry's copy.
    for _ in 0..2 {
        assert_eq!(fx.ferry(&["run", "--once"]).code, 0);
    }
    let dest = format!("hub-{}", gone.bucket);
    let left = fx
        .destination
        .head_object()
        .bucket(&dest)
        .key(&gone.key)
        .send()
        .await;
    assert!(left.is_err(), "ferry's copy of a deleted key was removed");
    let report = fx.ferry(&["report", "--format", "csv"]);
    assert_eq!(report.code, 0, "{report:?}");
    assert!(
        csv_block(&report.stdout, "problems").is_empty(),
        "{report:?}"
    );
    let (header, rows) = support::csv_table(&report.stdout, "buckets");
    let column = header.iter().position(|h| h == "gone").unwrap();
    let row = rows.iter().find(|r| r[0] == gone.bucket).unwrap();
    assert_eq!(&row[column], "1", "{report:?}");
}

/// One bad reading is not a bad copy: a bit flipped on the way back from the
/// destination is read again, and the copy is verified, not mismatched.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_back_that_goes_wrong_on_the_way_is_read_again_before_any_verdict() {
    let plays = support::faults::Plays {
        flip_get: Some("onix-005.xml".into()),
        ..Default::default()
    };
    let proxy =
        support::faults::FaultProxy::playing(support::servers().get("FERRY_DEST_ENDPOINT"), plays)
            .await;
    let fx = Fixture::with_destination("reread", TRANSFER, "", Some(proxy.url())).await;
    let set = data(&fx);
    fx.fill(&set).await;
    let run = fx.ferry(&["run", "--once"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        proxy
            .injected
            .flip_response
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the read-back of onix-005.xml had a bit flipped"
    );
    assert!(
        run.stdout
            .contains(&format!("copied {} objects", set.len())),
        "{run:?}"
    );
    assert_eq!(
        fx.count("SELECT COUNT(*) FROM objects WHERE state = 'verified'"),
        set.len() as i64,
        "{run:?}"
    );
}
