//! The shape of BENCHMARKS.md that the bench script relies on: it rewrites the block between a
//! section's `<!-- name:begin -->` and `<!-- name:end -->`, so each pair must appear once, in order,
//! and each heading once (a duplicated section would leave stale figures beside fresh ones).

use std::collections::BTreeMap;

fn benchmarks() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md")).unwrap()
}

#[test]
fn each_bench_block_appears_once_and_in_order() {
    let text = benchmarks();
    let mut names = Vec::new();
    for (at, _) in text.match_indices(":begin -->") {
        let name = text[..at].rsplit("<!-- ").next().unwrap().to_string();
        names.push(name);
    }
    assert!(names.len() >= 10, "the bench blocks are found: {names:?}");
    for name in &names {
        let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
        assert_eq!(text.matches(&begin).count(), 1, "{begin} appears once");
        assert_eq!(text.matches(&end).count(), 1, "{end} appears once");
        assert!(text.find(&begin) < text.find(&end), "{begin} comes before its end");
    }
}

#[test]
fn each_heading_appears_once() {
    let mut seen = BTreeMap::new();
    for line in benchmarks().lines().filter(|l| l.starts_with("## ")) {
        *seen.entry(line.to_string()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "headings repeated in BENCHMARKS.md: {repeated:?}");
}
