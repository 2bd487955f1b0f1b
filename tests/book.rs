//! The user guide (`docs/`, an mdBook) stays true to ferry: every chapter
//! is in the book's summary, every link inside it lands on a file and a
//! heading that exist, every config key is in the reference and the other
//! way round, and every flag a command's `--help` lists is in the guide.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters() -> Vec<(PathBuf, String)> {
    let dir = root().join("docs/src");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// The lines of a Markdown text outside code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fence = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fence = !fence;
                return false;
            }
            !fence
        })
        .collect()
}

/// The ids mdBook (and GitHub) give a file's headings, duplicates numbered.
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if !title.starts_with(' ') {
            continue;
        }
        let id: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut unique = id.clone();
        let mut n = 0;
        while ids.contains(&unique) {
            n += 1;
            unique = format!("{id}-{n}");
        }
        ids.insert(unique);
    }
    ids
}

/// Every `[label](target)` link of a Markdown text, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

fn check_links(file: &Path, text: &str, broken: &mut Vec<String>) {
    for target in links(text) {
        if target.starts_with("http://") || target.starts_with("https://") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let dest = if path.is_empty() {
            file.to_owned()
        } else {
            file.parent().unwrap().join(path)
        };
        if !dest.exists() {
            broken.push(format!("{}: {target} (no such file)", file.display()));
            continue;
        }
        if let Some(anchor) = anchor {
            let ids = heading_ids(&std::fs::read_to_string(&dest).unwrap());
            if !ids.contains(anchor) {
                broken.push(format!("{}: {target} (no such heading)", file.display()));
            }
        }
    }
}

#[test]
fn every_chapter_is_in_the_summary_and_every_link_lands() {
    let chapters = chapters();
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).unwrap();
    let listed: BTreeSet<String> = links(&summary).into_iter().collect();
    for (path, _) in &chapters {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "SUMMARY.md" {
            assert!(listed.contains(&name), "{name} is not in SUMMARY.md");
        }
    }
    let mut broken = Vec::new();
    for (path, text) in &chapters {
        check_links(path, text, &mut broken);
    }
    for top in ["README.md", "ARCHITECTURE.md"] {
        let path = root().join(top);
        check_links(&path, &std::fs::read_to_string(&path).unwrap(), &mut broken);
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The check sees what it must: the guide links across chapters.
    assert!(chapters.iter().any(|(_, t)| t.contains("](big-buckets.md")));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 150,
        "README.md has {lines} lines: the rest belongs in docs/"
    );
}

/// `[section]` → the fields of the struct that reads it, from `config/raw.rs`.
fn config_keys() -> Vec<(&'static str, BTreeSet<String>)> {
    let raw = std::fs::read_to_string(root().join("src/config/raw.rs")).unwrap();
    let tables = ["source", "destination", "transfer", "buckets", "backup"];
    let section = |name: &str| -> &'static str {
        match name {
            "RawConfig" => "",
            "RawStore" => "[source]",
            "RawTransfer" => "[transfer]",
            "RawBucket" => "[[buckets]]",
            "RawBackup" => "[backup]",
            other => panic!("a config struct the test does not know: {other}"),
        }
    };
    let mut out = Vec::new();
    for block in raw.split("pub(super) struct ").skip(1) {
        let name = block.split_whitespace().next().unwrap();
        let body = &block[..block.find("\n}").unwrap()];
        let fields: BTreeSet<String> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub(super) "))
            .map(|l| l.split(':').next().unwrap().to_owned())
            // The top level's tables are sections, not keys.
            .filter(|f| name != "RawConfig" || !tables.contains(&f.as_str()))
            .collect();
        out.push((section(name), fields));
    }
    out
}

#[test]
fn every_config_key_is_in_the_reference_and_the_other_way_round() {
    let reference = std::fs::read_to_string(root().join("docs/src/configuration.md")).unwrap();
    // The reference table's first column: `[section]` `key`, `key2`.
    let rows: Vec<(String, Vec<String>)> = reference
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let first = l.split('|').nth(1).unwrap();
            let ticked: Vec<String> = first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            let sections = ticked
                .iter()
                .filter(|t| t.starts_with('['))
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            let keys = ticked.into_iter().filter(|t| !t.starts_with('[')).collect();
            (sections, keys)
        })
        .collect();
    let keys = config_keys();
    let mut missing = Vec::new();
    for (section, fields) in &keys {
        for field in fields {
            let found = rows.iter().any(|(sections, ks)| {
                ks.contains(field)
                    && match *section {
                        "" => sections.is_empty(),
                        "[source]" => {
                            sections.contains("[source]") || sections.contains("[destination]")
                        }
                        s => sections.contains(s),
                    }
            });
            if !found {
                missing.push(format!("{section} {field}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "config keys the reference does not list: {missing:?}"
    );
    let known: BTreeSet<&String> = keys.iter().flat_map(|(_, f)| f).collect();
    let unknown: Vec<&String> = rows
        .iter()
        .flat_map(|(_, ks)| ks)
        .filter(|k| !known.contains(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "keys the reference lists that ferry does not read: {unknown:?}"
    );
    assert!(
        keys.iter().map(|(_, f)| f.len()).sum::<usize>() > 30,
        "{keys:?}"
    );
}

#[test]
fn every_flag_of_every_command_is_in_the_guide() {
    let guide: String = chapters().into_iter().map(|(_, t)| t).collect();
    let mut missing = Vec::new();
    let mut seen = 0;
    let cli = ferry::cli::Cli::command();
    let mut commands = vec![cli.clone()];
    for command in cli.get_subcommands() {
        commands.push(command.clone());
        commands.extend(command.get_subcommands().cloned());
    }
    for command in &commands {
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            seen += 1;
            if !guide.contains(&format!("--{long}")) {
                missing.push(format!("{} --{long}", command.get_name()));
            }
        }
    }
    assert!(seen > 20, "only {seen} flags found");
    assert!(
        missing.is_empty(),
        "flags the guide does not mention: {missing:?}"
    );
}
