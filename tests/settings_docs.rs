//! The settings tables in docs/settings.md and README.md are the ones generated from the
//! settings table in src/settings/table.rs: a setting added, renamed or re-defaulted there
//! fails here until the docs say the same. On failure the expected block is printed.

use sluice::settings::docs;

fn check(file: &str, name: &str, want: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).expect("read doc");
    let Some(have) = docs::block(&text, name) else {
        panic!("{file} has no <!-- generated:{name} --> … <!-- end:{name} --> block; it should hold:\n{want}");
    };
    assert!(
        have == want,
        "{file}: the {name} table differs from src/settings; replace the block with:\n{want}"
    );
}

#[test]
fn settings_doc_matches_the_table() {
    check("docs/settings.md", "settings", &docs::settings_table());
}

#[test]
fn upstream_doc_matches_the_table() {
    check("docs/settings.md", "upstream", &docs::upstream_table());
}

#[test]
fn readme_summary_matches_the_table() {
    check("README.md", "upstream-summary", &docs::upstream_summary());
}

#[test]
fn readme_settings_match_the_table() {
    check("README.md", "settings", &docs::readme_settings());
}
