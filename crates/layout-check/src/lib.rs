//! Keeps the house in order: no two files of a source tree may depend on each other through any
//! chain, and docs/ARCHITECTURE.md may name only source files that exist.
//!
//! A file depends on another when it names an item of it through a `crate::`, `$crate::`,
//! `super::` or `self::` path, or a path that starts with a module it declares (`conf::ext::..`
//! in `lib.rs`): in `use` lines, written inline, or in a macro's body. A path is followed to the
//! file that defines the item, through `pub use` re-exports. `mod x;` lines are not edges: a
//! parent declaring a child does not use it. The source is read as text with its comments and
//! literals blanked, so no build is needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// One source file of a tree, as far as dependencies go.
#[derive(Debug, Default)]
struct Unit {
    path: PathBuf,
    /// Its module path below the crate root (`conf::ext` is `["conf", "ext"]`).
    module: Vec<String>,
    /// The modules it declares with `mod x;`.
    children: BTreeSet<String>,
    /// Every path it names: the module it was written in, and its segments as written.
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// `pub use` re-exports: the name it exports, and the path behind it.
    reexports: HashMap<String, (Vec<String>, Vec<String>)>,
}

/// A tree's files and which depends on which.
#[derive(Debug)]
pub struct Graph {
    pub files: Vec<PathBuf>,
    /// `edges[a][b]`: what file `a` names of file `b` (item names, sorted).
    pub edges: BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>>,
}

/// Reads every `.rs` file below `root`, whose `lib.rs` (or `main.rs`) is the crate root.
pub fn scan(root: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let mut units = Vec::new();
    for path in files {
        let source = fs::read_to_string(&path)?;
        let module = module_of(root, &path);
        units.push(read_unit(path, module, &source));
    }
    Ok(link(units))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `lib.rs` is the root, `a/mod.rs` and `a.rs` are `a`, `a/b.rs` is `a::b`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> =
        relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    let root_file = parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main");
    if root_file || parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source with comments and the contents of string and character literals blanked (line
/// breaks kept), so that a path inside them is not read as code.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
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
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && !prev.is_some_and(is_ident) || (c == 'b' && next == Some('r')) {
            // A raw string `r#"..."#` (or `br"..."`), else an identifier starting with r or b.
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            if chars.get(start + hashes) == Some(&'"') && !(c == 'b' && prev.is_some_and(is_ident)) {
                let closing: Vec<char> =
                    std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                let body = start + hashes + 1;
                let end = (body..chars.len())
                    .find(|&j| chars[j..].starts_with(&closing))
                    .map_or(chars.len(), |j| j + closing.len());
                out.extend(chars[i..end].iter().map(|&c| blank(c)));
                i = end;
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal.
            let end = (i + 2..chars.len()).find(|&j| chars[j] == '\'').map_or(chars.len(), |j| j + 1);
            out.extend(std::iter::repeat_n(' ', end - i));
            i = end;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The tokens that matter for paths: identifiers (with `$crate`), `::`, and single punctuation.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' || (c == '$' && chars.get(i + 1) == Some(&'c')) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
}

fn read_unit(path: PathBuf, module: Vec<String>, source: &str) -> Unit {
    let toks = tokens(&blank_comments_and_literals(source));
    let mut unit = Unit { path, module: module.clone(), ..Unit::default() };
    // Inline modules (`mod tests { .. }`): their names and the brace depth they opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here = || module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect::<Vec<_>>();
        let t = toks[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(i + 1).is_some_and(|n| is_ident(n)) => {
                let name = toks[i + 1].clone();
                match toks.get(i + 2).map(String::as_str) {
                    Some(";") if inline.is_empty() => {
                        unit.children.insert(name);
                    }
                    Some("{") => {
                        inline.push((name, depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                    _ => {}
                }
                i += 2;
                continue;
            }
            "use" if i == 0 || toks[i - 1] != "::" => {
                let end = (i..toks.len()).find(|&j| toks[j] == ";").unwrap_or(toks.len());
                let public = i > 0 && (toks[i - 1] == "pub" || toks[i - 1] == ")");
                let mut paths = Vec::new();
                use_tree(&toks[i + 1..end], &[], &mut paths);
                for (segments, alias) in paths {
                    if public {
                        if let Some(name) = alias.or_else(|| segments.last().cloned()) {
                            unit.reexports.insert(name, (here(), segments.clone()));
                        }
                    }
                    unit.paths.push((here(), segments));
                }
                i = end + 1;
                continue;
            }
            _ if is_ident(t)
                && (i == 0 || toks[i - 1] != "::")
                && toks.get(i + 1).is_some_and(|n| n == "::") =>
            {
                let mut segments = vec![t.to_owned()];
                let mut j = i + 1;
                while toks.get(j).is_some_and(|s| s == "::") && toks.get(j + 1).is_some_and(|s| is_ident(s)) {
                    segments.push(toks[j + 1].clone());
                    j += 2;
                }
                unit.paths.push((here(), segments));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    unit
}

/// Expands a `use` tree (`a::{b, c::d as e, self, *}`) into whole paths, each with its alias.
fn use_tree(toks: &[String], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut segments = prefix.to_vec();
    let mut i = 0;
    let toks: Vec<&str> = toks.iter().map(String::as_str).collect();
    while i < toks.len() {
        match toks[i] {
            "::" => i += 1,
            "{" => {
                // Each top-level item of the braces, split at commas.
                let mut level = 0;
                let mut start = i + 1;
                for j in i + 1..toks.len() {
                    match toks[j] {
                        "{" => level += 1,
                        "}" if level == 0 => {
                            let part: Vec<String> = toks[start..j].iter().map(|s| s.to_string()).collect();
                            use_tree(&part, &segments, out);
                            return;
                        }
                        "}" => level -= 1,
                        "," if level == 0 => {
                            let part: Vec<String> = toks[start..j].iter().map(|s| s.to_string()).collect();
                            use_tree(&part, &segments, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            "*" => {
                out.push((segments, None));
                return;
            }
            "as" => {
                let alias = toks.get(i + 1).map(|s| s.to_string()).filter(|a| a != "_");
                out.push((segments, alias));
                return;
            }
            // `self` inside braces names the prefix itself.
            "self" if !segments.is_empty() && !prefix.is_empty() && segments.len() == prefix.len() => i += 1,
            t if is_ident(t) => {
                segments.push(t.to_owned());
                i += 1;
            }
            _ => i += 1,
        }
    }
    if !segments.is_empty() {
        out.push((segments, None));
    }
}

/// The path made absolute (from the crate root), or `None` for another crate's.
fn absolute(unit: &Unit, context: &[String], segments: &[String]) -> Option<Vec<String>> {
    let first = segments.first()?.as_str();
    let mut base: Vec<String> = match first {
        "crate" | "$crate" => Vec::new(),
        "self" | "super" => context.to_vec(),
        child if unit.children.contains(child) && context == unit.module.as_slice() => unit.module.clone(),
        _ => return None,
    };
    let mut rest = segments;
    if matches!(first, "crate" | "$crate" | "self") {
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn link(units: Vec<Unit>) -> Graph {
    let by_module: HashMap<Vec<String>, usize> =
        units.iter().enumerate().map(|(i, u)| (u.module.clone(), i)).collect();
    let mut edges: BTreeMap<usize, BTreeMap<usize, BTreeSet<String>>> = BTreeMap::new();
    for (from, unit) in units.iter().enumerate() {
        for (context, segments) in &unit.paths {
            let Some(path) = absolute(unit, context, segments) else { continue };
            let Some((to, item)) = resolve(&units, &by_module, path, 0) else { continue };
            if to != from {
                edges.entry(from).or_default().entry(to).or_default().insert(item);
            }
        }
    }
    Graph { files: units.into_iter().map(|u| u.path).collect(), edges }
}

/// The file that defines the item an absolute path names (through `pub use`), and the item's
/// name (the module's, for a path to a module).
fn resolve(
    units: &[Unit],
    by_module: &HashMap<Vec<String>, usize>,
    path: Vec<String>,
    hops: usize,
) -> Option<(usize, String)> {
    let known = (0..=path.len()).rev().find(|&n| by_module.contains_key(&path[..n]))?;
    let file = by_module[&path[..known]];
    let rest = &path[known..];
    let Some(item) = rest.first() else {
        return Some((file, path.last().cloned().unwrap_or_else(|| "crate".into())));
    };
    if let Some((context, segments)) = units[file].reexports.get(item).filter(|_| hops < 8) {
        if let Some(mut target) = absolute(&units[file], context, segments) {
            target.extend(rest[1..].iter().cloned());
            if target != path {
                return resolve(units, by_module, target, hops + 1);
            }
        }
    }
    Some((file, item.clone()))
}

/// The files that depend on each other through some chain: each group of two or more (the
/// strongly connected components of the graph), by Tarjan's algorithm.
pub fn circles(graph: &Graph) -> Vec<Vec<usize>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        next: usize,
        found: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            let targets: Vec<usize> =
                self.graph.edges.get(&v).map(|m| m.keys().copied().collect()).unwrap_or_default();
            for w in targets {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let n = graph.files.len();
    let mut walk = Walk {
        graph,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        next: 0,
        found: Vec::new(),
    };
    for v in 0..n {
        if walk.index[v].is_none() {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}

/// A circle in words: its files, and what each takes from the others.
pub fn describe(graph: &Graph, circle: &[usize], base: &Path) -> String {
    let name = |i: usize| graph.files[i].strip_prefix(base).unwrap_or(&graph.files[i]).display().to_string();
    let mut text = format!(
        "circle of {} files: {}\n",
        circle.len(),
        circle.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", ")
    );
    for &from in circle {
        for (to, items) in graph.edges.get(&from).into_iter().flatten() {
            if circle.contains(to) {
                let items: Vec<&str> = items.iter().map(String::as_str).collect();
                text += &format!("  {} -> {}: {}\n", name(from), name(*to), items.join(", "));
            }
        }
    }
    text
}

/// The source files (`*.rs`) that `doc` names but `repo` does not have. A path from a top
/// folder of the repository (`src/conf/zone.rs`) must be a file of it; a shorter one
/// (`conf/zone.rs`) or a bare name (`zone.rs`) must end the path of one.
pub fn missing_in_doc(repo: &Path, doc: &str, sources: &[PathBuf]) -> Vec<String> {
    let known: Vec<String> = sources
        .iter()
        .map(|p| p.strip_prefix(repo).unwrap_or(p).to_string_lossy().replace('\\', "/"))
        .collect();
    let mut missing = BTreeSet::new();
    for word in doc.split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))) {
        let word = word.trim_start_matches("./").trim_end_matches('.');
        if !word.ends_with(".rs") || word.len() <= 3 {
            continue;
        }
        // A name that starts at a top folder of the repository (`src/`, `crates/`) is a whole
        // path; another (`conf/zone.rs`, `zone.rs`) is the end of one.
        let top = word.split('/').next().filter(|_| word.contains('/')).map(|t| format!("{t}/"));
        let whole = top.is_some_and(|t| known.iter().any(|k| k.starts_with(&t)));
        let exists = known.iter().any(|k| k == word || (!whole && k.ends_with(&format!("/{word}"))));
        if !exists {
            missing.insert(word.to_owned());
        }
    }
    missing.into_iter().collect()
}

/// Every `.rs` file of the repository outside `target/` and hidden folders.
pub fn repository_sources(repo: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out)?;
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(repo, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
