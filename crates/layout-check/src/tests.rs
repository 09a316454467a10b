use super::*;

/// A tree in a fresh folder: (path, source) pairs.
fn tree(files: &[(&str, &str)]) -> (PathBuf, Graph) {
    // Tests run in parallel: each tree gets a folder of its own.
    static TREES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = TREES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("layout-check-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for (path, source) in files {
        let file = dir.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, source).unwrap();
    }
    let graph = scan(&dir).unwrap();
    (dir, graph)
}

fn names(graph: &Graph, dir: &Path, circle: &[usize]) -> Vec<String> {
    circle.iter().map(|&i| graph.files[i].strip_prefix(dir).unwrap().display().to_string()).collect()
}

#[test]
fn a_use_line_each_way_is_a_circle() {
    let (dir, graph) = tree(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::Thing;\npub fn f() {}\n"),
        ("b.rs", "use crate::a::f;\npub struct Thing;\n"),
    ]);
    let found = circles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(names(&graph, &dir, &found[0]), ["a.rs", "b.rs"]);
    assert!(describe(&graph, &found[0], &dir).contains("a.rs -> b.rs: Thing"));
}

#[test]
fn mod_lines_are_not_edges_and_a_chain_one_way_is_no_circle() {
    let (_, graph) = tree(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\nuse a::f;\n"),
        ("a.rs", "use crate::b::g;\npub fn f() {}\n"),
        ("b.rs", "pub fn g() { crate::c::h() }\n"),
        ("c.rs", "pub fn h() {}\n"),
    ]);
    assert!(circles(&graph).is_empty());
    assert_eq!(graph.edges.values().map(|m| m.len()).sum::<usize>(), 3, "lib->a, a->b, b->c");
}

#[test]
fn inline_paths_macro_bodies_and_longer_chains_count() {
    let (dir, graph) = tree(&[
        ("lib.rs", "mod log;\nmod a;\nmod b;\n"),
        ("log.rs", "macro_rules! info { () => { $crate::b::write() } }\npub(crate) use info;\n"),
        ("a.rs", "pub fn f() { let _ = super::log::info; }\n"),
        ("b.rs", "pub fn write() { crate::a::f(); }\n"),
    ]);
    let found = circles(&graph);
    assert_eq!(found.len(), 1);
    assert_eq!(names(&graph, &dir, &found[0]), ["a.rs", "b.rs", "log.rs"]);
}

#[test]
fn re_exports_lead_to_the_defining_file() {
    // `a` takes `Denial` through the root's `pub use`: its edge goes to `error`, not to the root,
    // which would otherwise close a circle with the root's own `pub use a::Judge`.
    let (dir, graph) = tree(&[
        ("lib.rs", "mod a;\nmod error;\npub use error::Denial;\npub use a::Judge;\n"),
        ("a.rs", "use crate::Denial;\npub struct Judge;\n"),
        ("error.rs", "pub enum Denial {}\n"),
    ]);
    assert!(circles(&graph).is_empty());
    let a = graph.files.iter().position(|p| p == &dir.join("a.rs")).unwrap();
    let error = graph.files.iter().position(|p| p == &dir.join("error.rs")).unwrap();
    assert!(graph.edges[&a].contains_key(&error));
}

#[test]
fn comments_strings_and_test_modules_are_not_read_as_dependencies() {
    let (_, graph) = tree(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "//! [`crate::b::g`] in a doc\nconst S: &str = \"crate::b::g\";\nconst R: &str = r#\"crate::b::g\"#;\n\
             pub fn f<'x>(c: char) -> bool { c == '\"' }\n#[cfg(test)]\nmod tests { use super::*; }\n",
        ),
        ("b.rs", "pub fn g() { crate::a::f('a'); }\n"),
    ]);
    assert!(circles(&graph).is_empty());
}

#[test]
fn braces_self_and_super_in_folders_resolve() {
    let (dir, graph) = tree(&[
        ("lib.rs", "mod conf;\n"),
        ("conf/mod.rs", "mod zone;\nmod main;\nuse self::zone::{self, set};\nuse main::Conf;\n"),
        ("conf/zone.rs", "pub fn set() {}\n"),
        ("conf/main.rs", "use super::{zone::{set as s}, *};\npub struct Conf;\n"),
    ]);
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "conf/main.rs takes conf/mod.rs by its glob");
    assert_eq!(names(&graph, &dir, &found[0]), ["conf/main.rs", "conf/mod.rs"]);
}

#[test]
fn the_doc_may_name_only_files_that_exist() {
    let repo = Path::new("/r");
    let sources = [
        PathBuf::from("/r/src/conf/zone.rs"),
        PathBuf::from("/r/src/lib.rs"),
        PathBuf::from("/r/crates/core/src/token.rs"),
    ];
    let doc = "`src/conf/zone.rs` and conf/zone.rs and lib.rs; `src/state.rs` and signin.rs; \
               `crates/core/src/token.rs` is not `src/token.rs`.";
    assert_eq!(missing_in_doc(repo, doc, &sources), ["signin.rs", "src/state.rs", "src/token.rs"]);
}
