//! No import cycles among the modules of any crate of the workspace.
//!
//! A module depends on another when its code names it: a path through
//! `crate::`, `super::` or `self::`, or a child module by its name. Two
//! modules that name each other, directly or through others, form a cycle,
//! and so does a parent that uses its child while the child uses the
//! parent's items. Declaring a child (`mod x;`) is not a use. Comments and
//! `#[cfg(test)]` blocks are left out; inside an inline `mod x { .. }`,
//! `super::` is the file's own module.
//!
//! This reads the sources as text rather than asking the compiler, so it
//! knows only paths written out; that is how this code base writes them
//! (no glob imports between modules, no macros that name modules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates' source folders, relative to the workspace root.
const CRATES: [&str; 3] = ["recorder/src", "reader/src", "cli/src"];

fn workspace_root() -> PathBuf {
    // This test is declared by the `blackbox` package in cli/.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, with its module path (`a::b`; the crate
/// root is the empty path).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                if !matches!(name.as_str(), "mod" | "lib" | "main") {
                    p.push(name);
                }
                out.insert(p.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The code of a file without comments, string and char literals'
/// contents, and `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' {
            // A raw string's quotes are preceded by r#..; its body has no
            // escapes, but a code path inside one is rare enough that
            // treating both alike is fine.
            out.push_str("\"\"");
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal (not a lifetime).
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    drop_test_items(&out)
}

/// Removes each item that follows `#[cfg(test)]` (a `mod tests { .. }`, a
/// `use`, a function).
fn drop_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let semi = item.find(';');
        let brace = item.find('{');
        let end = match (semi, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => matching_brace(item, b) + 1,
            (Some(s), None) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    code.len() - 1
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths that `code` names from `start` on: `a::b::c`, or the items of a
/// group `{a::b, c}` each as its own path.
fn path_at(code: &str, start: usize, out: &mut Vec<Vec<String>>, prefix: &[String]) {
    let rest = &code[start..];
    let trimmed = rest.trim_start();
    if let Some(group) = trimmed.strip_prefix('{') {
        let base = start + (rest.len() - trimmed.len()) + 1;
        let end = matching_brace(&code[base - 1..], 0) + base - 1;
        // Split the group at top-level commas.
        let mut depth = 0;
        let mut item_start = base;
        for (i, c) in code[base..end].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    path_at(code, item_start, out, prefix);
                    item_start = base + i + 1;
                }
                _ => {}
            }
        }
        path_at(code, item_start, out, prefix);
        let _ = group;
        return;
    }
    let mut path = prefix.to_vec();
    let mut at = start + (rest.len() - trimmed.len());
    loop {
        let seg: String = code[at..].chars().take_while(|&c| is_ident(c)).collect();
        if seg.is_empty() {
            break;
        }
        path.push(seg.clone());
        at += seg.len();
        if code[at..].starts_with("::") {
            at += 2;
            if code[at..].trim_start().starts_with('{') {
                path_at(code, at, out, &path);
                return;
            }
        } else {
            break;
        }
    }
    out.push(path);
}

/// The module a path names: its longest prefix that is a module.
fn module_of(path: &[String], known: &BTreeSet<String>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains(m))
}

/// `(module, depends on)` for every module of one crate.
fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &mods {
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        let here: Vec<String> = if module.is_empty() {
            vec![]
        } else {
            module.split("::").map(String::from).collect()
        };
        let parent: Vec<String> = here[..here.len().saturating_sub(1)].to_vec();
        // Inline modules: `super::` inside them is this file's module.
        let mut inline = Vec::new();
        for (i, _) in code.match_indices("mod ") {
            let after = &code[i + 4..];
            let name: String = after.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() && after[name.len()..].trim_start().starts_with('{') {
                let open = i + 4 + name.len() + after[name.len()..].find('{').unwrap();
                inline.push((open, matching_brace(&code, open)));
            }
        }
        let children: Vec<String> = known
            .iter()
            .filter_map(|m| {
                let rest = if here.is_empty() {
                    Some(m.as_str())
                } else {
                    m.strip_prefix(&format!("{module}::"))
                };
                rest.filter(|r| !r.is_empty() && !r.contains("::"))
                    .map(String::from)
            })
            .collect();
        let mut paths = Vec::new();
        let chars: Vec<(usize, char)> = code.char_indices().collect();
        for (k, &(i, _)) in chars.iter().enumerate() {
            let before = if k == 0 { ' ' } else { chars[k - 1].1 };
            if is_ident(before) || before == ':' {
                continue;
            }
            let rest = &code[i..];
            let in_inline = inline.iter().any(|&(a, b)| a < i && i < b);
            if let Some(r) = rest.strip_prefix("crate::") {
                path_at(&code, code.len() - r.len(), &mut paths, &[]);
            } else if let Some(mut r) = rest.strip_prefix("super::") {
                let mut base = if in_inline {
                    here.clone()
                } else {
                    parent.clone()
                };
                while let Some(more) = r.strip_prefix("super::") {
                    base.pop();
                    r = more;
                }
                path_at(&code, code.len() - r.len(), &mut paths, &base);
            } else if let Some(r) = rest.strip_prefix("self::") {
                path_at(&code, code.len() - r.len(), &mut paths, &here);
            } else {
                for child in &children {
                    if rest.starts_with(&format!("{child}::"))
                        && !code[..i].trim_end().ends_with("mod")
                    {
                        path_at(&code, i, &mut paths, &here);
                    }
                }
            }
        }
        let deps: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| module_of(p, &known))
            .filter(|m| m != module)
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn name(module: &str) -> &str {
    if module.is_empty() {
        "(crate root)"
    } else {
        module
    }
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = workspace_root();
    let mut found = Vec::new();
    for krate in CRATES {
        let graph = edges(&root.join(krate));
        for component in cycles(&graph) {
            let detail: Vec<String> = component
                .iter()
                .map(|m| {
                    let deps: Vec<&str> = graph[m]
                        .iter()
                        .filter(|d| component.contains(d))
                        .map(|d| name(d))
                        .collect();
                    format!("{} -> {}", name(m), deps.join(", "))
                })
                .collect();
            found.push(format!("{krate}: {}", detail.join("; ")));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_through_a_parent_and_a_group_import() {
    let dir = std::env::temp_dir().join(format!("module-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(
        dir.join("lib.rs"),
        "mod a;\nmod b;\n// crate::b::X in a comment is no use\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a/mod.rs"),
        "mod c;\npub use c::Thing;\npub const LIMIT: u32 = 1;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a/c.rs"),
        "use crate::{b::Other, a::LIMIT};\npub struct Thing;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct Other;\n#[cfg(test)]\nmod tests { use crate::a::c::Thing; }\n",
    )
    .unwrap();
    let graph = edges(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        graph["a::c"],
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert!(graph["b"].is_empty(), "test items and comments are no use");
    assert!(graph[""].is_empty(), "declaring a module is no use");
    assert_eq!(
        cycles(&graph),
        vec![vec!["a".to_string(), "a::c".to_string()]]
    );
}
