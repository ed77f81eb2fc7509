//! The line structure of LightGBM's text model (`model.txt`, `Booster.save_model`): a header
//! of `key=value` lines (plus bare flags such as `average_output`) after a first line `tree`,
//! then one `Tree=N` block of `key=value` lines per tree, then `end of trees`; what follows
//! (feature importances, the training parameters, `pandas_categorical`) does not affect
//! predictions and is not read. A model file is user input: every error names the line, and
//! where there is one, the field.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Longest excerpt of the file quoted in an error message.
const QUOTE_CHARS: usize = 40;

/// One `key=value` line.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'a> {
    /// 1-based line number in the file.
    pub line: usize,
    pub value: &'a str,
}

/// The header or one `Tree=N` block: its `key=value` lines by key.
#[derive(Debug)]
pub(super) struct Section<'a> {
    /// How errors name it: "the header" or "tree 3".
    pub name: String,
    /// Line where it starts (the `Tree=N` line; 1 for the header).
    pub line: usize,
    fields: HashMap<&'a str, Field<'a>>,
    /// Lines without `=` (the header's `tree` and `average_output`).
    flags: Vec<&'a str>,
}

impl<'a> Section<'a> {
    fn new(name: String, line: usize) -> Self {
        Section {
            name,
            line,
            fields: HashMap::new(),
            flags: Vec::new(),
        }
    }

    fn insert(&mut self, line: usize, key: &'a str, value: &'a str) -> Result<()> {
        if let Some(first) = self.fields.get(key) {
            return Err(Error::invalid(format!(
                "line {line}: a second '{}=' in {} (the first is on line {})",
                quote(key),
                self.name,
                first.line
            )));
        }
        self.fields.insert(key, Field { line, value });
        Ok(())
    }

    /// Whether a bare line `flag` is present.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        self.fields.get(key).copied()
    }

    /// The `key=` line, or an error naming the section.
    pub fn require(&self, key: &str) -> Result<Field<'a>> {
        self.get(key).ok_or_else(|| {
            Error::invalid(format!(
                "{} (line {}) has no '{key}=' line",
                self.name, self.line
            ))
        })
    }

    /// An error about field `key`, naming the section and the field's line.
    pub fn error(&self, key: &str, message: impl Display) -> Error {
        let line = self.get(key).map_or(self.line, |f| f.line);
        Error::invalid(format!("{}, '{key}' (line {line}): {message}", self.name))
    }

    /// A single integer.
    pub fn int(&self, key: &str) -> Result<i64> {
        let field = self.require(key)?;
        field
            .value
            .trim()
            .parse()
            .map_err(|_| self.error(key, format!("'{}' is not an integer", quote(field.value))))
    }

    /// Exactly `len` space-separated integers.
    pub fn ints(&self, key: &str, len: usize) -> Result<Vec<i64>> {
        self.list(key, len, "an integer")
    }

    /// Exactly `len` space-separated numbers (LightGBM writes doubles with 17 significant
    /// digits, so they parse back to the very doubles it compares with).
    pub fn floats(&self, key: &str, len: usize) -> Result<Vec<f64>> {
        self.list(key, len, "a number")
    }

    /// Exactly `len` space-separated words.
    pub fn words(&self, key: &str, len: usize) -> Result<Vec<String>> {
        self.list(key, len, "a word")
    }

    fn list<T: FromStr>(&self, key: &str, len: usize, what: &str) -> Result<Vec<T>> {
        let field = self.require(key)?;
        let values = field
            .value
            .split_whitespace()
            .enumerate()
            .map(|(i, token)| {
                token.parse::<T>().map_err(|_| {
                    self.error(
                        key,
                        format!("value {} '{}' is not {what}", i + 1, quote(token)),
                    )
                })
            })
            .collect::<Result<Vec<T>>>()?;
        if values.len() != len {
            return Err(self.error(
                key,
                format!("{} values where {len} were expected", values.len()),
            ));
        }
        Ok(values)
    }
}

/// A model file cut into its header and tree blocks.
#[derive(Debug)]
pub(super) struct Document<'a> {
    pub header: Section<'a>,
    pub trees: Vec<Section<'a>>,
}

/// Splits a model file into sections. Refuses a file that is not a LightGBM text model, one
/// cut short (no `end of trees`), and one whose `tree_sizes` disagrees with its tree count.
pub(super) fn read(text: &str) -> Result<Document<'_>> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()));
    let mut last_line = match lines.by_ref().find(|(_, line)| !line.is_empty()) {
        Some((n, "tree")) => n,
        Some((n, other)) => {
            return Err(Error::invalid(format!(
                "line {n}: '{}' where a LightGBM text model starts with 'tree' (is this a \
                 model.txt written by LightGBM's save_model?)",
                quote(other)
            )))
        }
        None => return Err(Error::invalid("the LightGBM model file is empty")),
    };
    let mut header = Section::new("the header".to_string(), 1);
    let mut trees: Vec<Section<'_>> = Vec::new();
    for (n, line) in lines {
        last_line = n;
        if line.is_empty() {
            continue;
        }
        if line == "end of trees" {
            return checked(Document { header, trees });
        }
        if let Some(index) = line.strip_prefix("Tree=") {
            start_tree(&mut trees, n, index)?;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            if trees.is_empty() {
                header.flags.push(line);
                continue;
            }
            return Err(Error::invalid(format!(
                "line {n}: '{}' in tree {} is not a 'key=value' line",
                quote(line),
                trees.len() - 1
            )));
        };
        let section = match trees.last_mut() {
            Some(tree) => tree,
            None => &mut header,
        };
        section.insert(n, key.trim(), value.trim())?;
    }
    let place = trees.last().map_or("the header", |t| t.name.as_str());
    Err(Error::invalid(format!(
        "the LightGBM model is truncated: no 'end of trees' line (the file ends at line \
         {last_line}, in {place})"
    )))
}

/// Opens block `Tree=index`; blocks must come in order from 0.
fn start_tree(trees: &mut Vec<Section<'_>>, line: usize, index: &str) -> Result<()> {
    let expected = trees.len();
    match index.trim().parse::<usize>() {
        Ok(i) if i == expected => {
            trees.push(Section::new(format!("tree {i}"), line));
            Ok(())
        }
        _ => Err(Error::invalid(format!(
            "line {line}: 'Tree={}' where Tree={expected} was expected",
            quote(index)
        ))),
    }
}

/// The whole-file checks once `end of trees` is reached.
fn checked(doc: Document<'_>) -> Result<Document<'_>> {
    if doc.trees.is_empty() {
        return Err(Error::invalid("the LightGBM model has no trees"));
    }
    // `tree_sizes` lists each tree's length in bytes: one entry per tree. A count that differs
    // means blocks were lost or added since LightGBM wrote the file.
    if let Some(sizes) = doc.header.get("tree_sizes") {
        let listed = sizes.value.split_whitespace().count();
        if listed != doc.trees.len() {
            return Err(doc.header.error(
                "tree_sizes",
                format!(
                    "it lists {listed} trees but the file holds {} (truncated or edited?)",
                    doc.trees.len()
                ),
            ));
        }
    }
    Ok(doc)
}

/// At most [`QUOTE_CHARS`] characters of `s`, for error messages.
pub(super) fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}...")
    } else {
        head
    }
}
