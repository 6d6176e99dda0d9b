//! The checked-in man pages (`man/`) and shell completions (`completions/`) are exactly
//! what the clap definitions generate today. When this fails, regenerate them with
//!     MAILRUN_BLESS=1 cargo test --test manpages
//! and commit the result.
use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailrun::manpages;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Files under `dir` (relative to ROOT), recursively.
fn files_under(dir: &str) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new(ROOT), &Path::new(ROOT).join(dir), &mut out);
    out
}

#[test]
fn man_pages_and_completions_are_fresh() {
    let generated = manpages::generated_files().expect("generate");
    if mailrun::cli::env_switch("MAILRUN_BLESS").unwrap_or_else(|e| panic!("{e}")) {
        // Remove pages of commands that no longer exist, keep the hand-written ones.
        for old in files_under("man")
            .into_iter()
            .chain(files_under("completions"))
        {
            if old.extension().is_some_and(|e| e != "7") || old.starts_with("completions") {
                std::fs::remove_file(Path::new(ROOT).join(old)).unwrap();
            }
        }
        manpages::write_all(Path::new(ROOT)).expect("write man pages");
        return;
    }
    let mut stale = Vec::new();
    let expected: BTreeSet<PathBuf> = generated.iter().map(|(p, _)| p.clone()).collect();
    for (rel, contents) in &generated {
        match std::fs::read(Path::new(ROOT).join(rel)) {
            Ok(on_disk) if &on_disk == contents => {}
            Ok(_) => stale.push(format!("stale: {}", rel.display())),
            Err(_) => stale.push(format!("missing: {}", rel.display())),
        }
    }
    for on_disk in files_under("man")
        .into_iter()
        .chain(files_under("completions"))
    {
        let hand_written = on_disk.extension().is_some_and(|e| e == "7");
        if !hand_written && !expected.contains(&on_disk) {
            stale.push(format!("no longer generated: {}", on_disk.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "man pages or completions are out of date:\n  {}\nrun: MAILRUN_BLESS=1 cargo test --test manpages",
        stale.join("\n  ")
    );
}

#[test]
fn every_command_has_a_page_and_completions() {
    let generated = manpages::generated_files().unwrap();
    let names: BTreeSet<String> = generated
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    for cmd in [
        "dispatch-admin",
        "dispatch-cgi",
        "dispatch-tick",
        "push-config",
        "runner-admin",
        "runner-cgi",
        "runner-poll",
        "runner-send",
    ] {
        for file in [
            format!("man/{cmd}.1"),
            format!("completions/bash/{cmd}"),
            format!("completions/zsh/_{cmd}"),
            format!("completions/fish/{cmd}.fish"),
        ] {
            assert!(names.contains(&file), "{file} not generated");
        }
        let page = generated
            .iter()
            .find(|(p, _)| p.display().to_string() == format!("man/{cmd}.1"))
            .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
            .unwrap();
        assert!(
            page.contains(".SH \"EXIT STATUS\""),
            "{cmd}: no exit status"
        );
        assert!(
            page.contains("mailrun\\fR(7)"),
            "{cmd}: no SEE ALSO mailrun(7)"
        );
    }
}

/// groff finds nothing to complain about in any page (hand-written or generated).
#[test]
fn pages_render_without_warnings() {
    let groff = Command::new("groff").arg("--version").output();
    assert!(
        groff.is_ok_and(|o| o.status.success()),
        "groff not found: run scripts/test-setup.sh"
    );
    let mut pages: Vec<(String, Vec<u8>)> = manpages::generated_files()
        .unwrap()
        .into_iter()
        .filter(|(p, _)| p.starts_with("man"))
        .map(|(p, c)| (p.display().to_string(), c))
        .collect();
    pages.push((
        "man/mailrun.7".into(),
        std::fs::read(Path::new(ROOT).join("man/mailrun.7")).unwrap(),
    ));
    let dir = common::temp_dir();
    for (name, contents) in pages {
        let path = dir.path().join(name.replace('/', "_"));
        std::fs::write(&path, contents).unwrap();
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.trim().is_empty(),
            "{name}: {warnings}"
        );
    }
}

/// mailrun(7)'s exit-code table is the one every command prints.
#[test]
fn overview_page_lists_the_shared_exit_codes() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("man/mailrun.7")).unwrap();
    let section = page
        .split(".SH \"EXIT STATUS\"")
        .nth(1)
        .and_then(|s| s.split("\n.SH ").next())
        .expect("EXIT STATUS section");
    let lines: Vec<&str> = section.lines().collect();
    let mut table = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(code) = line.strip_prefix(".B ") {
            table.push(format!("{code} {}", lines[i + 1].replace("\\-", "-")));
        }
    }
    let expected: Vec<String> = mailrun::cli::EXIT_CODES_HELP
        .lines()
        .skip(1)
        .map(|l| {
            let l = l.trim();
            let (code, text) = l.split_once(char::is_whitespace).unwrap();
            format!("{code} {}", text.trim())
        })
        .collect();
    assert_eq!(table, expected);
}
