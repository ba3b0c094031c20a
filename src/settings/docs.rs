//! The Markdown tables generated from [`super::TABLE`] and [`super::upstream::UPSTREAM`]:
//! `docs/settings.md` holds both in full, README the upstream summary. `tests/settings_docs.rs`
//! fails when a file and the tables disagree, and prints the text to paste.

use super::upstream::{Treatment, UPSTREAM};
use super::TABLE;
use std::fmt::Write;

/// Every setting: flag, env, upstream twin, default, meaning.
pub fn settings_table() -> String {
    let mut out =
        String::from("| flag | env | upstream twin | default | meaning |\n|---|---|---|---|---|\n");
    for s in TABLE {
        let flag = if s.switch {
            format!("`--{}[=BOOL]`", s.flag)
        } else {
            format!("`--{} {}`", s.flag, s.hint)
        };
        let upstream = if s.upstream.is_empty() {
            "—".to_owned()
        } else {
            s.upstream
                .split(", ")
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let default = default_text(s.default);
        let _ = writeln!(
            out,
            "| {flag} | `{}` | {upstream} | {default} | {} |",
            s.env(),
            s.help.replace('|', "\\|")
        );
    }
    out
}

/// The settings the README shows (the rest are in docs/settings.md).
pub const README_SETTINGS: &[&str] = &[
    "rules_dir",
    "grpc_addr",
    "http_addr",
    "backend",
    "redis_nodes",
    "fallback",
    "response_headers",
    "config_type",
    "grpc_tls",
];

/// The README's short settings table: flag, env, default, meaning.
pub fn readme_settings() -> String {
    let mut out = String::from("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for name in README_SETTINGS {
        let Some(s) = TABLE.iter().find(|s| s.name == *name) else {
            continue;
        };
        let default = default_text(s.default);
        let _ = writeln!(
            out,
            "| `--{}` | `{}` | {default} | {} |",
            s.flag,
            s.env(),
            s.help.replace('|', "\\|")
        );
    }
    out
}

/// A default as the tables show it.
fn default_text(default: &str) -> String {
    if default.is_empty() {
        "none".to_owned()
    } else {
        format!("`{default}`")
    }
}

fn treatment_name(t: Treatment) -> &'static str {
    match t {
        Treatment::Honoured => "honoured",
        Treatment::Ignored => "ignored (logged)",
        Treatment::Refused => "refused",
    }
}

/// Every upstream variable: what sluice does with it.
pub fn upstream_table() -> String {
    let mut out = String::from("| variable | sluice | how |\n|---|---|---|\n");
    for (name, t, note) in UPSTREAM {
        let _ = writeln!(out, "| `{name}` | {} | {note} |", treatment_name(*t));
    }
    out
}

/// The README's summary: one line per treatment, listing the variables.
pub fn upstream_summary() -> String {
    let mut out = String::from("| sluice | envoyproxy/ratelimit variables |\n|---|---|\n");
    for t in [Treatment::Honoured, Treatment::Ignored, Treatment::Refused] {
        let names: Vec<String> = UPSTREAM
            .iter()
            .filter(|(_, tt, _)| *tt == t)
            .map(|(n, _, _)| format!("`{n}`"))
            .collect();
        let _ = writeln!(out, "| {} | {} |", treatment_name(t), names.join(", "));
    }
    out
}

/// The text between `<!-- generated:NAME -->` and `<!-- end:NAME -->` in `doc`, if present.
pub fn block<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let start = format!("<!-- generated:{name} -->\n");
    let end = format!("<!-- end:{name} -->");
    let from = doc.find(&start)? + start.len();
    let to = from + doc[from..].find(&end)?;
    Some(&doc[from..to])
}
