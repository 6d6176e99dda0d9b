//! Imports point one way (docs/decisions.md, "One direction for imports"): `protocol`
//! imports nothing else of the crate; `dispatcher` and `runner` never import each other;
//! the shared modules (cli, smtp, web, schedule) import neither side; and no two modules
//! import each other, directly or around a loop. Read from the source text: every
//! `crate::` and `super::` path, `use` trees expanded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A module's path inside the crate, e.g. ["dispatcher", "queue"].
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let Some(close) = tree.rfind('}') else {
        return vec![prefix.to_string()];
    };
    let inner = &tree[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .flat_map(|item| {
            expand(item)
                .into_iter()
                .map(move |e| format!("{prefix}{e}"))
        })
        .collect()
}

/// Every path the file names that starts with `crate::` or `super::`, comments left out.
fn paths_in(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        let Some(tree) = t.strip_prefix("use ") else {
            continue;
        };
        let mut stmt = tree.to_string();
        while !stmt.contains(';') {
            match lines.next() {
                Some(more) => stmt.push_str(more),
                None => break,
            }
        }
        let stmt: String = stmt[..stmt.find(';').unwrap_or(stmt.len())]
            .split_whitespace()
            .collect();
        found.extend(expand(&stmt));
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| from + i) {
            let mut end = i;
            while end < bytes.len()
                && (bytes[end].is_ascii_alphanumeric() || b"_:".contains(&bytes[end]))
            {
                end += 1;
            }
            found.push(code[i..end].trim_end_matches(':').to_string());
            from = end.max(i + 1);
        }
    }
    found.retain(|p| p.starts_with("crate::") || p.starts_with("super::"));
    found
}

/// The module a path lands in: the longest prefix that is a module of the crate.
fn resolve(
    path: &str,
    here: &ModPath,
    modules: &BTreeSet<ModPath>,
    is_mod_rs: bool,
) -> Option<ModPath> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: ModPath = Vec::new();
    match segs.first() {
        Some(&"crate") => {
            segs.remove(0);
        }
        Some(&"super") => {
            // In a.rs or a/mod.rs, `super` is a's parent.
            base = here.clone();
            base.pop();
            segs.remove(0);
            while segs.first() == Some(&"super") {
                base.pop();
                segs.remove(0);
            }
            let _ = is_mod_rs;
        }
        _ => return None,
    }
    let mut best = base.clone();
    let mut cur = base;
    for s in segs {
        cur.push(s.to_string());
        if modules.contains(&cur) {
            best = cur.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn edges() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for file in &files {
        let here = module_of(&src, file);
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let text = std::fs::read_to_string(file).unwrap();
        let targets = graph.entry(here.clone()).or_default();
        for p in paths_in(&text) {
            if let Some(to) = resolve(&p, &here, &modules, is_mod_rs) {
                // A module's own children and ancestors are its structure, not imports.
                if !to.is_empty() && to != here && !to.starts_with(&here) && !here.starts_with(&to)
                {
                    targets.insert(to);
                }
            }
        }
    }
    graph
}

fn top(m: &ModPath) -> &str {
    m.first().map(String::as_str).unwrap_or("")
}

#[test]
fn imports_point_one_way() {
    let graph = edges();
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            let allowed = match (top(from), top(to)) {
                ("protocol", t) => t == "protocol",
                ("dispatcher", "runner") | ("runner", "dispatcher") => false,
                ("cli" | "smtp" | "web" | "schedule", "dispatcher" | "runner" | "manpages") => {
                    false
                }
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the direction:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_itself_around_a_loop() {
    let graph = edges();
    // Tarjan's strongly connected components; any with two or more modules is a cycle.
    struct State<'a> {
        graph: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        cycles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(tos) = s.graph.get(v) {
            for w in tos {
                let Some((w, _)) = s.graph.get_key_value(w) else {
                    continue;
                };
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.cycles.push(component);
            }
        }
    }
    let mut s = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    assert!(
        s.cycles.is_empty(),
        "modules importing each other: {:?}",
        s.cycles
    );
}

#[test]
fn the_import_reader_sees_use_trees_and_paths() {
    let text =
        "use crate::{a::{b, c}, d};\nuse super::e;\n// crate::ignored\nlet x = crate::f::g();";
    let found = paths_in(text);
    for p in [
        "crate::a::b",
        "crate::a::c",
        "crate::d",
        "super::e",
        "crate::f::g",
    ] {
        assert!(found.iter().any(|f| f == p), "{p} not in {found:?}");
    }
    assert!(!found.iter().any(|f| f.contains("ignored")), "{found:?}");
}
