//! The README's table of chart values is generated from the comments in
//! `charts/certwright/values.yaml`; this test fails when the two drift apart,
//! or when a value has no comment to explain it.
//!
//! Regenerate with `UPDATE_README=1 cargo test --test chart_values`.

use certwright_testcluster::deploy::chart_dir;
use serde_yaml_ng::Value;
use std::path::Path;

const BEGIN: &str =
    "<!-- values table: generated from charts/certwright/values.yaml by tests/chart_values.rs -->";
const END: &str = "<!-- end of values table -->";

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
fn the_readme_values_table_is_generated_from_values_yaml() {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let table = table(&text).unwrap_or_else(|keys| {
        panic!(
            "values.yaml: give these keys a comment (the README's table is made of them): {keys:?}"
        )
    });
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let (head, rest) = readme
        .split_once(BEGIN)
        .expect("README.md holds the values table's begin marker");
    let (current, tail) = rest
        .split_once(END)
        .expect("README.md holds the values table's end marker");
    let wanted = format!("\n{table}\n");
    if current == wanted {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&readme_path, format!("{head}{BEGIN}{wanted}{END}{tail}")).unwrap();
        return;
    }
    panic!(
        "README.md's values table differs from values.yaml; regenerate it with \
         `UPDATE_README=1 cargo test --test chart_values`.\nWanted:\n{wanted}"
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
