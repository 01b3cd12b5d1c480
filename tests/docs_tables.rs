//! The docs' generated tables, checked for drift:
//! - the chart values (`docs/configuration.md`), from the comments in
//!   `charts/certwright/values.yaml` (a value without one fails too);
//! - the controller's flags (`docs/configuration.md`), from the command
//!   line's own help;
//! - certwright's metrics (`docs/operations.md`): every series the registry
//!   defines has a row, and no row names a series it does not.
//!
//! Regenerate the first two with `UPDATE_DOCS=1 cargo test --test docs_tables`.

use certwright_testcluster::deploy::chart_dir;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

const BEGIN: &str =
    "<!-- values table: generated from charts/certwright/values.yaml by tests/docs_tables.rs -->";
const END: &str = "<!-- end of values table -->";
const FLAGS_BEGIN: &str =
    "<!-- flags table: generated from `certwright controller --help` by tests/docs_tables.rs -->";
const FLAGS_END: &str = "<!-- end of flags table -->";

fn doc(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name)
}

/// Checks that the text between `begin` and `end` in `path` is `table`
/// (or writes it there, with UPDATE_DOCS set).
fn generated(path: &Path, begin: &str, end: &str, table: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let shown = path.display();
    let (head, rest) = text
        .split_once(begin)
        .unwrap_or_else(|| panic!("{shown} holds the marker {begin}"));
    let (current, tail) = rest
        .split_once(end)
        .unwrap_or_else(|| panic!("{shown} holds the marker {end}"));
    let wanted = format!("\n{table}\n");
    if current == wanted {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, format!("{head}{begin}{wanted}{end}{tail}")).unwrap();
        return;
    }
    panic!(
        "{shown}: a generated table drifted; regenerate it with \
         `UPDATE_DOCS=1 cargo test --test docs_tables`.\nWanted:\n{wanted}"
    );
}

/// A key of values.yaml, with the comment block right above it.
#[derive(Debug, PartialEq)]
struct Key {
    path: String,
    comment: String,
}

/// Keys in file order. A comment belongs to the key on the next line; a blank
/// line in between makes it a comment on the file, not on a key.
fn keys(text: &str) -> Vec<Key> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            pending.clear();
        } else if let Some(c) = trimmed.strip_prefix('#') {
            pending.push(c.trim().to_string());
        } else if trimmed.starts_with("- ") {
            pending.clear();
        } else if let Some((name, _)) = trimmed.split_once(':') {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, name.trim().to_string()));
            let path = stack.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>();
            out.push(Key {
                path: path.join("."),
                comment: pending.join(" "),
            });
            pending.clear();
        }
    }
    out
}

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(values, |v, k| &v[k])
}

fn default_cell(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "none".into(),
        Value::String(s) => format!("`{s}`"),
        _ => format!("`{}`", serde_json::to_string(v).unwrap()),
    }
}

/// The markdown table, or the keys nothing explains.
fn table(text: &str) -> Result<String, Vec<String>> {
    let values: Value = serde_yaml_ng::from_str(text).expect("values.yaml parses");
    let keys = keys(text);
    let commented = |prefix: &str| {
        keys.iter()
            .any(|k| k.path.starts_with(&format!("{prefix}.")) && !k.comment.is_empty())
    };
    let mut rows = vec![
        "| value | default | meaning |".to_string(),
        "| --- | --- | --- |".to_string(),
    ];
    let mut unexplained = Vec::new();
    for key in &keys {
        let section = commented(&key.path);
        let v = lookup(&values, &key.path);
        let leaf = !matches!(v, Value::Mapping(m) if !m.is_empty());
        if !key.comment.is_empty() {
            let default = if section {
                "(below)".to_string()
            } else {
                default_cell(v)
            };
            let meaning = key.comment.replace('|', "\\|");
            rows.push(format!("| `{}` | {default} | {meaning} |", key.path));
        } else if leaf {
            // Explained by the nearest commented ancestor, unless that one is
            // a section whose other keys have comments of their own.
            let ancestor = keys
                .iter()
                .filter(|a| key.path.starts_with(&format!("{}.", a.path)) && !a.comment.is_empty())
                .max_by_key(|a| a.path.len());
            if ancestor.is_none_or(|a| commented(&a.path)) {
                unexplained.push(key.path.clone());
            }
        }
    }
    if unexplained.is_empty() {
        Ok(rows.join("\n"))
    } else {
        Err(unexplained)
    }
}

#[test]
fn the_values_table_is_generated_from_values_yaml() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let table = table(&text).unwrap_or_else(|keys| {
        panic!("values.yaml: give these keys a comment (the docs' table is made of them): {keys:?}")
    });
    generated(&doc("configuration.md"), BEGIN, END, &table);
}

/// One line of help text, for a table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[test]
fn the_flags_table_is_generated_from_the_command_line() {
    use clap::CommandFactory;
    let cli = certwright::cli::Cli::command();
    let controller = cli
        .find_subcommand("controller")
        .expect("a controller subcommand");
    let mut rows = vec![
        "| flag | env | default | meaning |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    for arg in controller.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let flag = match arg.get_short() {
            Some(short) => format!("`-{short}`, `--{long}`"),
            None => format!("`--{long}`"),
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| cell(&h.to_string()))
            .unwrap_or_default();
        rows.push(format!(
            "| {flag} | {env} | {} | {help} |",
            defaults.join(", ")
        ));
    }
    generated(
        &doc("configuration.md"),
        FLAGS_BEGIN,
        FLAGS_END,
        &rows.join("\n"),
    );
}

#[test]
fn every_certwright_series_has_a_row_in_the_metrics_table() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics/mod.rs"))
            .unwrap();
    let names = |text: &str, prefix: &str| -> std::collections::BTreeSet<String> {
        text.split(prefix)
            .skip(1)
            .map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                format!("certwright_{name}")
            })
            .collect()
    };
    let defined = names(
        source.split("#[cfg(test)]").next().unwrap_or_default(),
        "\"certwright_",
    );
    let page = std::fs::read_to_string(doc("operations.md")).unwrap();
    // The first cell of each row of certwright's series.
    let cells: String = page
        .lines()
        .filter(|l| l.starts_with("| `certwright_"))
        .filter_map(|l| l.split('|').nth(1))
        .collect();
    let documented = names(&cells, "`certwright_");
    assert_eq!(
        defined, documented,
        "docs/operations.md's table of certwright's series against src/metrics/mod.rs"
    );
}

#[test]
fn comments_attach_to_the_next_key_and_nesting_follows_indentation() {
    let text = "# file header\n\n# A.\na:\n  # B.\n  b: 1\n  c:\n    - x\n# D.\nd: {}\n";
    let got = keys(text);
    let want = [("a", "A."), ("a.b", "B."), ("a.c", ""), ("d", "D.")];
    let want: Vec<Key> = want
        .iter()
        .map(|(p, c)| Key {
            path: p.to_string(),
            comment: c.to_string(),
        })
        .collect();
    assert_eq!(got, want);
    // a.c is a list under a section whose other key has a comment: unexplained.
    assert_eq!(table(text), Err(vec!["a.c".to_string()]));
    let explained = "# E.\ne:\n  f: 1\n  g: \"\"\n";
    let t = table(explained).unwrap();
    assert!(t.contains("| `e` | `{\"f\":1,\"g\":\"\"}` | E. |"), "{t}");
}
