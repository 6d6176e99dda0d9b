//! Man pages and shell completions, generated from the commands' clap definitions so
//! they cannot drift from `--help`. The results are checked in (`man/`, `completions/`)
//! and `tests/it/manpages.rs` fails when they are stale; `MAILRUN_BLESS=1 cargo test --test
//! it manpages::` rewrites them. `man/mailrun.7` (the overview) is written by hand.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::EXIT_CODES_HELP;

/// Every command, by its installed name, with its clap definition.
pub fn commands() -> Vec<clap::Command> {
    let all = [
        ("dispatch-admin", crate::dispatcher::admin::Args::command()),
        ("dispatch-cgi", crate::dispatcher::endpoint::Args::command()),
        ("dispatch-tick", crate::dispatcher::tick::Args::command()),
        ("push-config", crate::dispatcher::push::Args::command()),
        ("runner-admin", crate::runner::admin::Args::command()),
        ("runner-cgi", crate::runner::endpoint::Args::command()),
        ("runner-poll", crate::runner::poll::Args::command()),
        ("runner-send", crate::runner::send::Args::command()),
    ];
    all.into_iter()
        .map(|(name, cmd)| cmd.name(name).bin_name(name))
        .collect()
}

/// The generated files, as (path relative to the repository root, contents), sorted.
pub fn generated_files() -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let names: Vec<String> = commands()
        .iter()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut files = Vec::new();
    for cmd in commands() {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        man_pages(&cmd, &names, &mut files)?;
        for (shell, dir, file) in [
            (Shell::Bash, "bash", cmd.get_name().to_string()),
            (Shell::Zsh, "zsh", format!("_{}", cmd.get_name())),
            (Shell::Fish, "fish", format!("{}.fish", cmd.get_name())),
        ] {
            let mut buf = Vec::new();
            let name = cmd.get_name().to_string();
            clap_complete::generate(shell, &mut cmd, name, &mut buf);
            files.push((Path::new("completions").join(dir).join(file), buf));
        }
    }
    files.sort();
    Ok(files)
}

/// Writes every generated file under `root` (the repository, or a scratch folder).
pub fn write_all(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, contents) in generated_files()? {
        let path = root.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        written.push(rel);
    }
    Ok(written)
}

/// One page for the command and one per (visible) subcommand, e.g. `runner-admin-init.1`.
fn man_pages(
    cmd: &clap::Command,
    siblings: &[String],
    files: &mut Vec<(PathBuf, Vec<u8>)>,
) -> io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, siblings, files)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut page = Vec::new();
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut page)?;
    }
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string());
    if after
        .as_deref()
        .is_some_and(|a| a.trim() != EXIT_CODES_HELP)
    {
        man.render_extra_section(&mut page)?;
    }
    exit_status_section(&mut page)?;
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    see_also_section(&mut page, cmd, siblings)?;
    files.push((
        Path::new("man").join(format!("{name}.1")),
        with_title(name, &page),
    ));
    Ok(())
}

/// clap_mangen repeats its string-definition preamble before every section and leaves
/// the .TH date out when it is empty (shifting the other fields); write both once here.
fn with_title(name: &str, sections: &[u8]) -> Vec<u8> {
    const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let text = String::from_utf8_lossy(sections);
    let mut page = format!(
        "{}\n{}\n.TH \"{}\" \"1\" \"\" \"mailrun {}\" \"mailrun Manual\"\n",
        PREAMBLE[0],
        PREAMBLE[1],
        name.to_uppercase(),
        crate::protocol::SOFTWARE_VERSION
    );
    for line in text.lines().filter(|l| !PREAMBLE.contains(l)) {
        page.push_str(line);
        page.push('\n');
    }
    page.into_bytes()
}

/// The exit-code table shared by every command (`cli::EXIT_CODES_HELP`), as roff.
fn exit_status_section(w: &mut dyn Write) -> io::Result<()> {
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for line in EXIT_CODES_HELP.lines().skip(1) {
        let line = line.trim();
        let (code, text) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        writeln!(w, ".TP\n.B {code}\n{}", roff_escape(text.trim()))?;
    }
    Ok(())
}

fn see_also_section(w: &mut dyn Write, cmd: &clap::Command, siblings: &[String]) -> io::Result<()> {
    let me = cmd.get_display_name().unwrap_or(cmd.get_name());
    let mut refs = vec!["\\fBmailrun\\fR(7)".to_string()];
    refs.extend(
        siblings
            .iter()
            .filter(|s| s.as_str() != me)
            .map(|s| format!("\\fB{}\\fR(1)", s.replace('-', "\\-"))),
    );
    writeln!(w, ".SH \"SEE ALSO\"\n{}", refs.join(", "))
}

/// Escapes text for a roff text line: backslashes, hyphens, and a leading dot or quote.
fn roff_escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escape_neutralises_control_lines() {
        assert_eq!(roff_escape(".SH x"), "\\&.SH x");
        assert_eq!(roff_escape("a-b \\ c"), "a\\-b \\e c");
    }
}
