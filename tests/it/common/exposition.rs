//! The text exposition format as the tests read it: a strict parser of a
//! `/metrics` body, and `promtool check metrics`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use super::find_tool;

/// One sample line of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub samples: Vec<Sample>,
    /// Metric family name → TYPE.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the text format strictly enough to catch broken escaping and
    /// duplicate series; panics with the offending line otherwise.
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice: {line}"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line));
        }
        let mut seen = std::collections::HashSet::new();
        for sample in &samples {
            assert!(
                seen.insert((sample.name.clone(), sample.labels.clone())),
                "series emitted twice: {sample:?}"
            );
        }
        Self {
            text: text.to_owned(),
            samples,
            types,
        }
    }

    /// The value of the sample with this name and exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// All samples of one metric.
    pub fn family(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let mut chars = line.chars().peekable();
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c == '{' || c == ' ' {
            break;
        }
        name.push(c);
        chars.next();
    }
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line}"
    );
    let mut labels = BTreeMap::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
            let mut label = String::new();
            loop {
                match chars.next() {
                    Some('=') => break,
                    Some(c) => label.push(c),
                    None => panic!("unterminated label name: {line}"),
                }
            }
            assert_eq!(
                chars.next(),
                Some('"'),
                "label value must be quoted: {line}"
            );
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            }
            assert!(labels.insert(label, value).is_none(), "label twice: {line}");
            match chars.next() {
                Some(',') => {}
                Some('}') => break,
                other => panic!("unexpected {other:?} after a label value: {line}"),
            }
        }
    }
    let rest: String = chars.collect();
    let value_text = rest.trim().split(' ').next().unwrap_or_default();
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse()
            .unwrap_or_else(|_| panic!("bad value {text:?} in {line}")),
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// Runs `promtool check metrics` on a scrape. Without promtool the check
/// fails when `CI` is set and is skipped loudly otherwise.
pub fn promtool_check_metrics(body: &str) {
    let Some(promtool) = find_tool("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package `prometheus`) but was not found"
        );
        eprintln!(
            "WARNING: promtool not found; skipping `promtool check metrics` (install Debian's `prometheus` package)"
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- body ---\n{body}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
