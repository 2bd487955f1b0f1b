//! The house rules of ARCHITECTURE.md, checked on the source tree: the rooms
//! depend on each other without circles, the store knows nothing of the copy
//! engine, the files inside a room name each other without circles, no file
//! of `copy/` or `ledger/` outgrows 500 lines, and every module opens with
//! what it owns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&src, &mut out);
    out.sort();
    out.into_iter()
        .map(|(p, t)| (p.strip_prefix(&src).unwrap().to_owned(), t))
        .collect()
}

/// The room a file belongs to: `copy` for `copy/multipart/send.rs`.
fn room(path: &Path) -> String {
    let first = path.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The rooms a file names through `crate::room` or `crate::{room, …}`.
fn rooms_used(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            used.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|r| !r.is_empty() && r != "self");
    used
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources() {
        let from = room(&path);
        if from == "lib" || from == "main" {
            continue;
        }
        let deps = graph.entry(from.clone()).or_default();
        deps.extend(rooms_used(&text).into_iter().filter(|r| *r != from));
    }
    graph
}

#[test]
fn the_rooms_depend_on_each_other_without_circles() {
    let graph = graph();
    // Depth-first search; a room met again while on the path is a circle.
    fn visit(
        room: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|r| r == room) {
            panic!("import circle: {} → {room}", path[at..].join(" → "));
        }
        if done.contains(room) {
            return;
        }
        path.push(room.to_owned());
        for next in graph.get(room).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(room.to_owned());
    }
    let mut done = BTreeSet::new();
    for room in graph.keys() {
        visit(room, &graph, &mut Vec::new(), &mut done);
    }
    // The check sees the rooms that the issue found tangled.
    assert!(graph["verify"].contains("copy"), "{graph:?}");
    assert!(graph["copy"].contains("ledger"), "{graph:?}");
}

/// A file's module path: `["copy", "multipart", "send"]` for
/// `copy/multipart/send.rs`, `["copy", "multipart"]` for its `mod.rs`.
fn module_path(path: &Path) -> Vec<String> {
    let mut parts: Vec<String> = path
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The files of one folder that a file names (`super::x`, `crate::room::x`),
/// leaving out the folder's `mod.rs`: it declares the files and holds what
/// they share, so every file names it and it names them.
fn siblings_used(path: &Path, text: &str, files: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let me = module_path(path);
    let Some((_, folder)) = me.split_last().filter(|_| !path.ends_with("mod.rs")) else {
        return BTreeSet::new();
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = BTreeSet::new();
    let mut name_in = |prefix: &str, base: &[String]| {
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|p| ident(p.trim()))
                    .collect(),
                None => vec![ident(rest)],
            };
            for name in names {
                let mut target = base.to_vec();
                target.push(name);
                if target != me && files.contains(&target) && target[..target.len() - 1] == *folder
                {
                    named.insert(target);
                }
            }
        }
    };
    name_in("super::", folder);
    name_in(&format!("crate::{}::", folder.join("::")), folder);
    named
}

#[test]
fn the_files_of_a_room_depend_on_each_other_without_circles() {
    let sources = sources();
    let files: BTreeSet<Vec<String>> = sources.iter().map(|(p, _)| module_path(p)).collect();
    let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = sources
        .iter()
        .map(|(p, t)| (module_path(p), siblings_used(p, t, &files)))
        .collect();
    let mut circles = Vec::new();
    for (from, uses) in &graph {
        for to in uses {
            // A circle of two is the one the rooms had; longer ones show as
            // pairs along the way only if they exist, so walk them too.
            let mut seen = BTreeSet::new();
            let mut stack = vec![to.clone()];
            while let Some(at) = stack.pop() {
                if &at == from {
                    circles.push(format!("{} → {}", from.join("/"), to.join("/")));
                    break;
                }
                if seen.insert(at.clone()) {
                    stack.extend(graph.get(&at).into_iter().flatten().cloned());
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files that name each other in a circle: {circles:?}"
    );
    // The check sees what it must: a file naming a sibling.
    assert!(
        graph[&vec!["report".to_owned(), "reconcile".to_owned()]]
            .contains(&vec!["report".to_owned(), "sorted".to_owned()]),
        "{graph:?}"
    );
}

#[test]
fn the_store_and_the_ledger_know_nothing_of_the_copy_engine() {
    let graph = graph();
    for low in ["store", "ledger", "limits", "hashing", "config"] {
        let above: Vec<_> = graph[low]
            .iter()
            .filter(|r| ["copy", "verify", "run", "report"].contains(&r.as_str()))
            .collect();
        assert!(above.is_empty(), "{low} imports {above:?}");
    }
}

#[test]
fn no_file_of_copy_or_ledger_outgrows_500_lines() {
    let big: Vec<_> = sources()
        .into_iter()
        .filter(|(p, _)| p.starts_with("copy") || p.starts_with("ledger"))
        .filter(|(p, _)| !p.ends_with("tests.rs"))
        .map(|(p, t)| (p, t.lines().count()))
        .filter(|(_, lines)| *lines > 500)
        .collect();
    assert!(big.is_empty(), "files over 500 lines: {big:?}");
}

#[test]
fn every_module_opens_with_what_it_owns() {
    let bare: Vec<_> = sources()
        .into_iter()
        .filter(|(p, _)| !p.ends_with("tests.rs") && !p.ends_with("main.rs"))
        .filter(|(_, t)| t.lines().take(2).filter(|l| l.starts_with("//!")).count() < 2)
        .map(|(p, _)| p)
        .collect();
    assert!(
        bare.is_empty(),
        "modules without a two-line header: {bare:?}"
    );
}

/// A test that cannot run must fail (or be `#[ignore]`d), never return early
/// and show as passed: no fixture hands back "nothing" for a missing server,
/// and no test prints why it stops and returns.
#[test]
fn no_test_passes_by_returning_when_a_server_is_missing() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = vec![tests.join("support/mod.rs")];
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        // This file names the patterns it looks for.
        if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("architecture.rs") {
            files.push(path);
        }
    }
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            // A message, then `return;`: the test passes having checked nothing.
            let said_and_returned = line.contains("eprintln!(")
                && lines[n + 1..].iter().take(2).any(|l| l.trim() == "return;");
            let optional_fixture =
                line.contains("-> Option<Fixture>") || line.contains("-> Option<(Fixture");
            if said_and_returned || optional_fixture {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "tests that pass without running:\n{}",
        found.join("\n")
    );
}
