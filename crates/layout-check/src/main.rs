//! `layout-check [--doc FILE] [--edges] ROOT...`: fails (exit 1) when two files of a ROOT (a crate's `src/`)
//! depend on each other through any chain, or FILE names a source file the repository lacks.
//! Run from the repository's top folder (scripts/test does).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut doc = None;
    let mut show_edges = false;
    let mut roots = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--doc" => doc = args.next().map(PathBuf::from),
            "--edges" => show_edges = true,
            _ => roots.push(PathBuf::from(arg)),
        }
    }
    if roots.is_empty() {
        eprintln!("usage: layout-check [--doc FILE] [--edges] ROOT...");
        return ExitCode::from(2);
    }
    let (mut circled, mut stale) = (false, false);
    for root in &roots {
        let graph = match layout_check::scan(root) {
            Ok(graph) => graph,
            Err(e) => {
                eprintln!("layout-check: cannot read {}: {e}", root.display());
                return ExitCode::from(2);
            }
        };
        let circles = layout_check::circles(&graph);
        let edges: usize = graph.edges.values().map(|m| m.len()).sum();
        println!(
            "{}: {} files, {} file-to-file dependencies, {} circles",
            root.display(),
            graph.files.len(),
            edges,
            circles.len()
        );
        if show_edges {
            for (from, to) in &graph.edges {
                let names: Vec<String> = to.keys().map(|&t| graph.files[t].display().to_string()).collect();
                println!("  {} -> {}", graph.files[*from].display(), names.join(", "));
            }
        }
        for circle in &circles {
            print!("{}", layout_check::describe(&graph, circle, Path::new(".")));
        }
        circled |= !circles.is_empty();
    }
    if let Some(doc) = doc {
        let text = match std::fs::read_to_string(&doc) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("layout-check: cannot read {}: {e}", doc.display());
                return ExitCode::from(2);
            }
        };
        let sources = layout_check::repository_sources(Path::new(".")).unwrap_or_default();
        let missing = layout_check::missing_in_doc(Path::new("."), &text, &sources);
        for name in &missing {
            println!("{} names {name}, which does not exist", doc.display());
        }
        stale |= !missing.is_empty();
    }
    if circled {
        println!("layout-check: FAILED: files depend on each other (docs/ARCHITECTURE.md says why none may)");
    }
    if stale {
        println!("layout-check: FAILED: the doc names source files that do not exist");
    }
    if circled || stale {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
