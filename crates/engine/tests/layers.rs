//! The shape of the code, checked from its sources (issue #14):
//!
//! - inside the engine, a module imports only modules of lower layers, in the
//!   order `src/lib.rs` declares under "# Layers", and the files of one module
//!   don't import each other in a cycle;
//! - in the workspace, a crate depends only on the crates below it, and the
//!   engine on no HTTP or command-line crate (Cargo forbids cycles between
//!   crates, but not a dependency that points the wrong way).
//!
//! Imports are read as written: every `crate::…` and `super::…` path in code
//! (comments, strings and `#[cfg(test)]` items left out: tests may use any
//! layer). A path through a `use` of another module — a parent's
//! `pub use request::{…}` re-export, an alias, a chain of them — counts as an
//! import of the module that defines the item, so two sibling files importing
//! each other through their parent's re-exports are a cycle too. Glob
//! imports (`use x::*`) aren't followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ENGINE: &str = env!("CARGO_MANIFEST_DIR");

/// A module of the engine as a path, e.g. `["store", "archive"]`.
type Module = Vec<String>;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The layers `src/lib.rs` declares, lowest first: `N. \`a\`, \`b\`: …` lines.
fn declared_layers(lib: &str) -> BTreeMap<String, usize> {
    let section = lib
        .split_once("//! # Layers")
        .expect("src/lib.rs has a \"# Layers\" section")
        .1;
    let mut layers = BTreeMap::new();
    for line in section
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("//!"))
    {
        let text = line.trim_start_matches("//!").trim();
        let Some((number, rest)) = text.split_once(". ") else {
            continue;
        };
        let Ok(rank) = number.parse::<usize>() else {
            continue;
        };
        let names = rest.split_once(':').map_or(rest, |(names, _)| names);
        for name in names.split(',') {
            let name = name.trim().trim_matches('`').to_string();
            assert!(
                layers.insert(name.clone(), rank).is_none(),
                "`{name}` is in two layers"
            );
        }
    }
    layers
}

/// The modules `src/lib.rs` declares (`pub mod x;`).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))?;
            Some(rest.strip_suffix(';')?.to_string())
        })
        .collect()
}

/// Every `.rs` file under `src`: its path relative to `src` and its text.
fn source_files(src: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = read(&file);
            (file.strip_prefix(src).unwrap().to_path_buf(), text)
        })
        .collect()
}

/// The module a file relative to `src/` defines (`lib.rs` is `[]`).
fn module_path(relative: &Path) -> Module {
    let mut module: Module = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    module
}

/// `source` with comments, string and char literals blanked out (lengths kept).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && {
                let start = if c == 'b' { i + 2 } else { i + 1 };
                let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
                chars.get(start + hashes) == Some(&'"')
            }
        {
            // A raw string: r"…", r#"…"#, br"…".
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let mut j = start + hashes + 1;
            while j < chars.len() && !chars[j..].starts_with(&close) {
                j += 1;
            }
            let end = (j + close.len()).min(chars.len());
            for &c in &chars[i..end] {
                blank(&mut out, c);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('a', '\n', '\u{1F600}'), not a lifetime.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            let end = (j + 1).min(chars.len());
            for &c in &chars[i..end] {
                blank(&mut out, c);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]`.
fn without_tests(code: &str) -> String {
    let mut code = code.to_string();
    while let Some(at) = code.find("#[cfg(test)]") {
        let rest = &code[at..];
        let semicolon = rest.find(';');
        let brace = rest.find('{');
        let end = match (brace, semicolon) {
            (Some(brace), Some(semicolon)) if semicolon < brace => at + semicolon + 1,
            (Some(brace), _) => {
                let mut depth = 0;
                let mut end = code.len();
                for (i, c) in code[at + brace..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = at + brace + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(semicolon)) => at + semicolon + 1,
            (None, None) => code.len(),
        };
        code.replace_range(at..end, "");
    }
    code
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// A path of a use tree as its segments, with the name `as` gives it.
type UsePath = (Vec<String>, Option<String>);

/// The paths of a use tree starting at `tokens[i]` (after `anchor::`), each as
/// its segments; `{a, b::c}` groups expand into one path each.
fn use_tree(tokens: &[Token], mut i: usize, prefix: Vec<String>, out: &mut Vec<UsePath>) -> usize {
    let mut path = prefix;
    loop {
        match tokens.get(i) {
            Some(Token::Ident(name)) => {
                if name != "self" {
                    path.push(name.clone());
                }
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                let mut alias = None;
                if tokens.get(i) == Some(&Token::Ident("as".into()))
                    && let Some(Token::Ident(name)) = tokens.get(i + 1)
                {
                    alias = Some(name.clone());
                    i += 2;
                }
                out.push((path, alias));
                return i;
            }
            Some(Token::Punct('{')) => {
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some(Token::Punct('}')) | None => return i + 1,
                        Some(Token::Punct(',')) => i += 1,
                        _ => {
                            let before = i;
                            i = use_tree(tokens, i, path.clone(), out);
                            // Skip what a tree doesn't consume (`*`).
                            while !matches!(tokens.get(i), Some(Token::Punct(',' | '}')) | None) {
                                i += 1;
                            }
                            assert!(i > before);
                        }
                    }
                }
            }
            _ => {
                // `*` or the end of the path.
                out.push((path, None));
                return i;
            }
        }
    }
}

/// Every module path a file names, resolved from `module` (the file's own), as
/// the path written (for messages) and its segments from the crate root.
fn references(code: &str, module: &Module) -> Vec<(String, Vec<String>)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_path_sep = i > 0 && tokens[i - 1] == Token::PathSep;
        let anchor = match &tokens[i] {
            Token::Ident(name) if (name == "crate" || name == "super") && !after_path_sep => {
                name.clone()
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if tokens.get(i + 1) != Some(&Token::PathSep) {
            i += 1;
            continue;
        }
        let mut base: Vec<String> = if anchor == "crate" {
            Vec::new()
        } else {
            module.clone()
        };
        let mut j = i;
        if anchor == "super" {
            while tokens.get(j) == Some(&Token::Ident("super".into()))
                && tokens.get(j + 1) == Some(&Token::PathSep)
            {
                base.pop();
                j += 2;
            }
        } else {
            j += 2;
        }
        let mut paths = Vec::new();
        let end = use_tree(&tokens, j, Vec::new(), &mut paths);
        for (path, _) in paths {
            let mut full = base.clone();
            full.extend(path.iter().cloned());
            let written = if anchor == "crate" {
                format!("crate::{}", path.join("::"))
            } else {
                format!("{}{}", "super::".repeat((j - i) / 2), path.join("::"))
            };
            found.push((written, full));
        }
        i = end.max(i + 1);
    }
    found
}

/// The longest prefix of `path` that is a module of the engine.
fn module_of(path: &[String], modules: &BTreeSet<Module>) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| prefix.is_empty() || modules.contains(prefix))
        .unwrap_or_default()
}

/// The names a file's module-level `use` items bind, each as its path from
/// the crate root (`query::SearchRequest`) and the path it stands for
/// (`query::request::SearchRequest`). Public or not: a child sees its
/// parent's private imports through `super::` too. A path that starts with
/// neither `crate`, `super`, `self` nor a child module names another crate.
fn bindings(
    code: &str,
    module: &Module,
    modules: &BTreeSet<Module>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => depth = depth.saturating_sub(1),
            Token::Ident(word) if word == "use" && depth == 0 => {
                let mut j = i + 1;
                let mut base = match tokens.get(j) {
                    Some(Token::Ident(first)) if first == "crate" => {
                        j += 2;
                        Vec::new()
                    }
                    Some(Token::Ident(first)) if first == "self" => {
                        j += 2;
                        module.clone()
                    }
                    Some(Token::Ident(first)) if first == "super" => module.clone(),
                    Some(Token::Ident(first)) => {
                        let mut child = module.clone();
                        child.push(first.clone());
                        if modules.contains(&child) {
                            module.clone()
                        } else {
                            Vec::new() // another crate
                        }
                    }
                    _ => Vec::new(),
                };
                while tokens.get(j) == Some(&Token::Ident("super".into()))
                    && tokens.get(j + 1) == Some(&Token::PathSep)
                {
                    base.pop();
                    j += 2;
                }
                let names_this_crate = match tokens.get(i + 1) {
                    Some(Token::Ident(first)) => {
                        matches!(first.as_str(), "crate" | "self" | "super")
                            || !base.is_empty()
                            || module.is_empty() && modules.contains(&vec![first.clone()])
                    }
                    _ => false,
                };
                let mut paths = Vec::new();
                i = use_tree(&tokens, j, Vec::new(), &mut paths);
                if names_this_crate {
                    for (path, alias) in paths {
                        let mut target = base.clone();
                        target.extend(path);
                        let Some(name) = alias.or_else(|| target.last().cloned()) else {
                            continue;
                        };
                        let mut bound = module.clone();
                        bound.push(name);
                        if bound != target {
                            found.push((bound, target));
                        }
                    }
                }
                while i < tokens.len() && tokens[i] != Token::Punct(';') {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// `path` with every prefix that a `use` binds replaced by what it stands
/// for, until it names the item where it is defined.
fn resolve(mut path: Vec<String>, bindings: &BTreeMap<Vec<String>, Vec<String>>) -> Vec<String> {
    // A bound: compiling code has no cycle of `use`s, but this scan is a guess.
    for _ in 0..16 {
        let Some(n) = (1..=path.len())
            .rev()
            .find(|&n| bindings.contains_key(&path[..n]))
        else {
            break;
        };
        let mut resolved = bindings[&path[..n]].clone();
        resolved.extend(path.drain(n..));
        path = resolved;
    }
    path
}

/// An import between two modules of one parent: (parent, from, to, where).
type Edge = (Module, String, String, String);

/// The imports between modules that are neither parent nor child of each
/// other, in `files` (paths relative to `src/`, and their text).
fn imports(files: &[(PathBuf, String)]) -> Vec<Edge> {
    let files: Vec<(&PathBuf, Module, String)> = files
        .iter()
        .map(|(file, text)| (file, module_path(file), without_tests(&code_only(text))))
        .collect();
    let modules: BTreeSet<Module> = files.iter().map(|(_, m, _)| m.clone()).collect();
    let bound: BTreeMap<Vec<String>, Vec<String>> = files
        .iter()
        .flat_map(|(_, module, code)| bindings(code, module, &modules))
        .collect();
    let mut edges = Vec::new();
    for (file, module, code) in &files {
        for (written, path) in references(code, module) {
            let target = module_of(&resolve(path, &bound), &modules);
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // itself, a parent or a child
            }
            let place = format!("{}: {written}", file.display());
            edges.push((
                module[..common].to_vec(),
                module[common].clone(),
                target[common].clone(),
                place,
            ));
        }
    }
    edges
}

/// The imports between files of one module that close a cycle.
fn cycles(edges: &[Edge]) -> BTreeSet<String> {
    let mut graphs: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to, _) in edges.iter().filter(|e| !e.0.is_empty()) {
        graphs
            .entry(parent.clone())
            .or_default()
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
    }
    let mut problems = BTreeSet::new();
    for (parent, graph) in &graphs {
        let reaches = |from: &str, to: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.to_string()];
            while let Some(node) = stack.pop() {
                if node == to {
                    return true;
                }
                if seen.insert(node.clone()) {
                    stack.extend(graph.get(&node).into_iter().flatten().cloned());
                }
            }
            false
        };
        for (p, from, to, place) in edges {
            if p == parent && reaches(to, from) {
                problems.insert(format!(
                    "in `{}`, `{from}` imports `{to}`, which imports `{from}` back: {place}",
                    parent.join("::")
                ));
            }
        }
    }
    problems
}

#[test]
fn engine_modules_import_only_lower_layers_and_files_of_a_module_form_no_cycle() {
    let src = Path::new(ENGINE).join("src");
    let lib = read(&src.join("lib.rs"));
    let layers = declared_layers(&lib);
    let declared: BTreeSet<String> = layers.keys().cloned().collect();
    assert_eq!(
        declared,
        declared_modules(&lib),
        "every module of src/lib.rs is in exactly one layer of its \"# Layers\" list"
    );

    let edges = imports(&source_files(&src));
    let mut problems = BTreeSet::new();
    // Between top-level modules: down only.
    for (parent, from, to, place) in &edges {
        if parent.is_empty() && layers[from] <= layers[to] {
            problems.insert(format!(
                "`{from}` (layer {}) imports `{to}` (layer {}): {place}",
                layers[from], layers[to]
            ));
        }
    }
    // Between the files of one module: no cycle.
    problems.extend(cycles(&edges));
    assert!(
        problems.is_empty(),
        "imports against the layers of src/lib.rs:\n  {}",
        problems.into_iter().collect::<Vec<_>>().join("\n  ")
    );

    // The scan sees imports at all: the store keeps auth's keys.
    assert!(
        edges
            .iter()
            .any(|(p, from, to, _)| p.is_empty() && from == "store" && to == "auth"),
        "the scanner found no `store` → `auth` import"
    );
    // It follows re-exports: `query::search` names `super::SearchRequest`,
    // which `query/mod.rs` re-exports from `request.rs`.
    assert!(
        edges
            .iter()
            .any(|(p, from, to, _)| p == &["query"] && from == "search" && to == "request"),
        "the scanner did not follow `query`'s re-exports to `request`"
    );
}

/// What only the server may use: HTTP, the command line, logging setup.
const SERVER_ONLY: [&str; 11] = [
    "axum",
    "hyper",
    "hyper-util",
    "http",
    "http-body",
    "http-body-util",
    "tower",
    "ureq",
    "clap",
    "indicatif",
    "tracing-subscriber",
];

/// The workspace crates: the workspace crates each may depend on, and which
/// of [`SERVER_ONLY`] it may use.
const CRATE_GRAPH: [(&str, &[&str], &[&str]); 6] = [
    ("convlog-core", &[], &[]),
    ("convlog-querylang", &["convlog-core"], &[]),
    ("convlog-gen", &[], &[]),
    (
        "convlog-engine",
        &["convlog-core", "convlog-querylang"],
        &[],
    ),
    // Drives the binary from outside, over HTTP, for tests and benches.
    ("convlog-testkit", &[], &["ureq"]),
    (
        "convlog",
        &[
            "convlog-core",
            "convlog-querylang",
            "convlog-gen",
            "convlog-engine",
            "convlog-testkit",
        ],
        &SERVER_ONLY,
    ),
];

#[test]
fn crates_depend_only_on_crates_below_and_only_the_server_on_http() {
    let root = Path::new(ENGINE).join("../..");
    let workspace: toml::Table = read(&root.join("Cargo.toml")).parse().unwrap();
    let members = workspace["workspace"]["members"].as_array().unwrap();
    let graph: BTreeMap<&str, (&[&str], &[&str])> = CRATE_GRAPH
        .into_iter()
        .map(|(name, crates, server_only)| (name, (crates, server_only)))
        .collect();
    let mut problems = Vec::new();
    for member in members {
        let dir = root.join(member.as_str().unwrap());
        let manifest: toml::Table = read(&dir.join("Cargo.toml")).parse().unwrap();
        let name = manifest["package"]["name"].as_str().unwrap();
        let Some((allowed, server_only)) = graph.get(name) else {
            problems.push(format!(
                "crate `{name}` is not in CRATE_GRAPH: place it (and in docs/architecture.md)"
            ));
            continue;
        };
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let deps = manifest.get(section).and_then(|d| d.as_table());
            for dep in deps.into_iter().flat_map(|d| d.keys()) {
                let workspace_crate = graph.contains_key(dep.as_str());
                if workspace_crate && !allowed.contains(&dep.as_str()) {
                    problems.push(format!("`{name}` depends on `{dep}` ([{section}])"));
                }
                if SERVER_ONLY.contains(&dep.as_str()) && !server_only.contains(&dep.as_str()) {
                    problems.push(format!(
                        "`{name}` depends on `{dep}` ([{section}]), which only the server may use"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_code_not_comments_or_strings() {
    let code = code_only(
        r##"
        // use crate::config::Config;
        /* crate::store /* nested */ crate::index */
        let url = "file://x"; let s = r#"crate::tag "quoted""#; let c = '"';
        fn f<'a>(x: &'a str) -> &'a str { x }
        use crate::store::{self, read::Row, archive::{held, Held as H}};
        let y = super::super::jobs::Progress::default();
        #[cfg(test)]
        mod tests { use crate::config::DEFAULT_CONFIG; }
        "##,
    );
    let code = without_tests(&code);
    let module = vec!["tag".to_string(), "job".to_string()];
    let found: Vec<String> = references(&code, &module)
        .into_iter()
        .map(|(_, path)| path.join("::"))
        .collect();
    assert_eq!(
        found,
        [
            "store",
            "store::read::Row",
            "store::archive::held",
            "store::archive::Held",
            "jobs::Progress::default",
        ]
    );
}

/// `(path relative to src/, text)` pairs, as `source_files` gives them.
fn sources(files: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect()
}

#[test]
fn sibling_files_importing_each_other_through_their_parents_re_exports_are_a_cycle() {
    let files = sources(&[
        ("lib.rs", "pub mod query;"),
        (
            "query/mod.rs",
            "mod request; mod search; mod build;\n\
             pub use request::{SearchRequest, Sort as Order};\n\
             pub use search::SearchService;\n\
             pub struct QueryError;",
        ),
        // Through the parent's re-export, under an alias.
        (
            "query/request.rs",
            "use super::{Order, QueryError};\npub enum Sort {}\npub struct SearchRequest;",
        ),
        // Through a chain: build re-exports what request defines.
        ("query/build.rs", "pub use super::SearchRequest;"),
        (
            "query/search.rs",
            "use super::build::SearchRequest;\npub struct SearchService;",
        ),
    ]);
    let edges = imports(&files);
    let found: BTreeSet<(String, String)> = edges
        .iter()
        .map(|(_, from, to, _)| (from.clone(), to.clone()))
        .collect();
    let pair = |from: &str, to: &str| (from.to_string(), to.to_string());
    // `Order` is request's own `Sort`, `QueryError` the parent's own item.
    assert_eq!(
        found,
        BTreeSet::from([pair("build", "request"), pair("search", "request")]),
        "{edges:?}"
    );

    let mut files = files;
    files[2].1.push_str("\nuse super::SearchService;");
    let cycles = cycles(&imports(&files));
    assert!(
        cycles
            .iter()
            .any(|c| c.contains("`request` imports `search`"))
            && cycles
                .iter()
                .any(|c| c.contains("`search` imports `request`")),
        "{cycles:?}"
    );
}
