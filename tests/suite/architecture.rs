//! The import rules of the library crate (`shared/`), as docs/ARCHITECTURE.md states them: which
//! top-level module may use which, no circles between sibling modules, and no AWS types below the
//! adapters. Read from the source, so a new `use` that breaks a rule fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use. Ports (the traits adapters implement) live with their owner;
/// `store` and `apigw` are adapters; `config` only reads the environment into the owners' settings;
/// `bootstrap` wires everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("backend", &[]),
    ("integrity", &[]),
    ("domain", &["integrity"]),
    // What erasing a field means (the rules, the record, the change): no storage.
    ("erasure", &["domain", "integrity"]),
    // Tenants' retention and legal holds: the rules and their port.
    ("retention", &["backend", "domain"]),
    ("export", &["domain", "integrity"]),
    // Log streams: destinations, delivery, routing, their ports (store, queue, secrets, transport,
    // the trail); `export` for the OCSF mapping the export uses too.
    ("streams", &["backend", "domain", "export", "integrity"]),
    // `erasure`: sealing a field for the archive is taking it out as an erasure does.
    ("archive", &["backend", "domain", "erasure", "integrity"]),
    ("auth", &["backend", "domain", "integrity"]),
    ("idempotency", &["backend", "domain", "integrity"]),
    // `seal` for the publication port the live feed implements (new checkpoints as frames).
    // `erasure` for the notice of an erasure record that clients without `audit:read` receive.
    ("realtime", &["auth", "backend", "domain", "erasure", "integrity", "seal"]),
    ("seal", &["backend", "domain", "erasure", "integrity"]),
    (
        "store",
        &[
            "archive",
            "auth",
            "backend",
            "domain",
            "erasure",
            "integrity",
            "idempotency",
            "realtime",
            "retention",
            "seal",
            "streams",
        ],
    ),
    // `archive` for the port of the archive's keys, which an erasure destroys; `streams` for the
    // trail port the logger implements.
    ("logger", &["archive", "backend", "domain", "erasure", "integrity", "retention", "store", "streams"]),
    (
        "apigw",
        &[
            "archive",
            "auth",
            "backend",
            "domain",
            "erasure",
            "export",
            "integrity",
            "idempotency",
            "logger",
            "realtime",
            "retention",
            "seal",
            "store",
            "streams",
            "viewer",
        ],
    ),
    // The witness service, and its client: the adapter of the seal's witness port.
    ("witness", &["backend", "integrity", "seal"]),
    ("kms", &["backend", "integrity", "seal", "streams"]),
    ("viewer", &[]),
    ("sdk", &[]),
    ("config", &["auth", "domain", "integrity", "logger", "realtime", "seal", "store", "streams"]),
    (
        "bootstrap",
        &[
            "apigw",
            "archive",
            "auth",
            "backend",
            "config",
            "domain",
            "export",
            "idempotency",
            "integrity",
            "kms",
            "logger",
            "realtime",
            "sdk",
            "seal",
            "store",
            "streams",
            "viewer",
            "witness",
        ],
    ),
];

/// Modules that hold the product's logic: no AWS or Lambda types in them.
const AWS_FREE: &[&str] = &[
    "backend",
    "integrity",
    "domain",
    "export",
    "archive",
    "auth",
    "idempotency",
    "realtime",
    "logger",
    "seal",
    "streams",
    "viewer",
    "witness",
];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src")
}

/// Every `.rs` file of the crate, keyed by its module path (`auth::jwt`; `auth/mod.rs` is `auth`).
fn modules() -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Vec<String>, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let mut module: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                    module.pop();
                }
                out.insert(module, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let root = source_root();
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Source without comments and string literals, so prose and messages cannot look like imports.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// The paths named after `crate::` or `super::` (braced groups expanded), relative to the module
/// they start from: (`crate` or how many `super`s, segments).
fn referenced_paths(code: &str) -> Vec<(Option<usize>, Vec<String>)> {
    fn ident(s: &[u8], i: &mut usize) -> Option<String> {
        let start = *i;
        while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
            *i += 1;
        }
        (*i > start).then(|| String::from_utf8_lossy(&s[start..*i]).into_owned())
    }
    fn skip_space(s: &[u8], i: &mut usize) {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }
    /// A path or a group at `i`, every full path it names appended to `out` (prefixed by `base`).
    fn tree(s: &[u8], i: &mut usize, base: Vec<String>, out: &mut Vec<Vec<String>>) {
        skip_space(s, i);
        if s.get(*i) == Some(&b'{') {
            *i += 1;
            loop {
                skip_space(s, i);
                match s.get(*i) {
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    Some(b',') => *i += 1,
                    Some(_) => {
                        let before = *i;
                        tree(s, i, base.clone(), out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                    None => return,
                }
            }
        }
        let mut path = base;
        while let Some(name) = ident(s, i) {
            if name != "self" {
                path.push(name);
            }
            if s[*i..].starts_with(b"::") {
                *i += 2;
                if s.get(*i) == Some(&b'{') {
                    tree(s, i, path, out);
                    return;
                }
            } else {
                break;
            }
        }
        out.push(path);
    }
    let s = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        let start = if boundary && s[i..].starts_with(b"crate::") {
            Some((None, 7))
        } else if boundary && s[i..].starts_with(b"super::") {
            let mut levels = 0;
            let mut j = i;
            while s[j..].starts_with(b"super::") {
                levels += 1;
                j += 7;
            }
            Some((Some(levels), j - i))
        } else {
            None
        };
        match start {
            Some((anchor, skip)) => {
                i += skip;
                let mut paths = Vec::new();
                tree(s, &mut i, Vec::new(), &mut paths);
                found.extend(paths.into_iter().map(|p| (anchor, p)));
            }
            None => i += 1,
        }
    }
    found
}

/// Names the crate root re-exports (`crate::AuditLogger`), mapped to the module they come from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in code_only(lib).lines().filter(|l| l.trim_start().starts_with("pub use ")) {
        let rest = line.trim_start().trim_start_matches("pub use ").trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else { continue };
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            names.insert(item.trim().to_owned(), module.to_owned());
        }
    }
    names
}

/// The module (a key of `all`) that `path`, seen from `from`, lands in.
fn resolve(
    all: &BTreeMap<Vec<String>, String>,
    exports: &BTreeMap<String, String>,
    from: &[String],
    anchor: Option<usize>,
    path: &[String],
) -> Vec<String> {
    let mut absolute: Vec<String> = match anchor {
        None => Vec::new(),
        Some(levels) => {
            // A `mod.rs` file is its directory's module; `super` climbs from there.
            from[..from.len().saturating_sub(levels)].to_vec()
        }
    };
    absolute.extend(path.iter().cloned());
    if absolute.len() == 1
        && let Some(module) = exports.get(&absolute[0])
    {
        return vec![module.clone()];
    }
    while !absolute.is_empty() && !all.contains_key(&absolute) {
        absolute.pop();
    }
    absolute
}

/// Every module's dependencies on other modules.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let all = modules();
    let exports = root_exports(&all[&Vec::new()]);
    let mut edges = BTreeMap::new();
    for (module, source) in &all {
        let targets: BTreeSet<Vec<String>> = referenced_paths(&code_only(source))
            .into_iter()
            .map(|(anchor, path)| resolve(&all, &exports, module, anchor, &path))
            .filter(|target| target != module && !target.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

#[test]
fn top_level_modules_use_only_what_the_rules_allow() {
    let graph = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let top_level: BTreeSet<String> = graph.keys().filter_map(|m| m.first().cloned()).collect();
    for module in &top_level {
        assert!(
            allowed.contains_key(module.as_str()),
            "{module} has no rule: add it to ALLOWED and docs/ARCHITECTURE.md"
        );
    }
    let mut broken = Vec::new();
    for (from, targets) in &graph {
        let Some(from_top) = from.first() else { continue };
        for target in targets {
            let to_top = &target[0];
            if to_top != from_top && !allowed[from_top.as_str()].contains(&to_top.as_str()) {
                broken.push(format!(
                    "{} uses {} ({to_top} is not allowed in {from_top})",
                    from.join("::"),
                    target.join("::")
                ));
            }
        }
    }
    assert!(broken.is_empty(), "import rules broken:\n{}", broken.join("\n"));
}

#[test]
fn sibling_modules_form_no_circles() {
    let graph = graph();
    // Edges between siblings (children of one parent), a deeper target counted as its sibling.
    let mut siblings: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, targets) in &graph {
        for target in targets {
            let common = from.iter().zip(target).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < target.len() {
                siblings.entry(from[..=common].to_vec()).or_default().insert(target[..=common].to_vec());
            }
        }
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        path: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.clone());
            return Some(circle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in siblings.keys() {
        if let Some(circle) = visit(node, &siblings, &mut Vec::new(), &mut done) {
            let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
            panic!("an import circle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn the_domain_auth_and_feed_logic_carry_no_aws_types() {
    for (module, source) in modules() {
        let Some(top) = module.first() else { continue };
        if AWS_FREE.contains(&top.as_str()) {
            let code = code_only(&source);
            for marker in ["aws_sdk", "aws_lambda_events", "aws_smithy", "lambda_http", "lambda_runtime"] {
                assert!(
                    !code.contains(marker),
                    "{} uses {marker}; AWS types belong in the adapters",
                    module.join("::")
                );
            }
        }
    }
}

#[test]
fn the_checker_sees_what_it_checks() {
    let paths = referenced_paths("use crate::auth::{jwt::{self, JwtError}, Caller};\nuse super::super::x;");
    let named: Vec<Vec<&str>> = paths.iter().map(|(_, p)| p.iter().map(String::as_str).collect()).collect();
    assert_eq!(named, [vec!["auth", "jwt"], vec!["auth", "jwt", "JwtError"], vec!["auth", "Caller"], vec!["x"]]);
    assert_eq!(paths[3].0, Some(2));
    assert_eq!(code_only("let s = \"crate::x\"; // crate::y\ncrate::z"), "let s = \"\"; \ncrate::z");
    let graph = graph();
    let realtime = &graph[&vec!["realtime".to_owned()]];
    assert!(realtime.contains(&vec!["auth".to_owned()]), "realtime's use of auth is seen: {realtime:?}");
    let jwt = &graph[&vec!["auth".to_owned(), "jwt".to_owned()]];
    assert!(jwt.contains(&vec!["auth".to_owned(), "jwks".to_owned()]), "jwt's use of jwks is seen: {jwt:?}");
}
