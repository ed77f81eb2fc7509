//! `run_if` conditions of DAG tasks: a small boolean language, parsed when a DAG file is
//! loaded and evaluated by the runner just before a task would start.
//!
//! Why a language of our own rather than a scripting engine: the conditions are one-liners
//! over the outputs of upstream tasks (`drift.dataset_drift`, `train.auc_roc`) and a few
//! facts about the run (`weekday`, `hour`), and the loader must be able to *check* them
//! statically: every name a condition reads has to be an upstream task or a built-in, so a
//! typo fails when the file is loaded, not at 02:00 on a Sunday. A hand-written
//! recursive-descent parser keeps that check, the error positions and the evaluation rules
//! in one short file with no parser dependency.
//!
//! Grammar (lowest precedence first; keywords are lowercase):
//!
//! ```text
//! condition  := or_expr
//! or_expr    := and_expr ("or" and_expr)*
//! and_expr   := not_expr ("and" not_expr)*
//! not_expr   := "not" not_expr | primary
//! primary    := "(" or_expr ")" | "always" | "never" | operand (cmp_op operand)?
//! cmp_op     := "==" | "!=" | "<" | "<=" | ">" | ">="
//! operand    := path | string | number | "true" | "false"
//! path       := name ("." name)*          name := [A-Za-z_][A-Za-z0-9_]*
//! string     := '...' | "..."             escapes: \\ \' \" \n \t
//! number     := -?[0-9]+(.[0-9]+)?([eE][+-]?[0-9]+)?
//! ```
//!
//! Evaluation rules (the "decide and document" part):
//! * `and` / `or` short-circuit, left to right.
//! * A bare operand is *truthy*: `true`, a non-zero number, a non-empty string, array or
//!   object. A missing value (or JSON `null`) is false.
//! * A comparison with a missing (or `null`) operand is **false**, whatever the operator
//!   (`!=` included): an upstream task that did not produce the field never triggers a branch.
//! * Numbers compare numerically (`1 == 1.0`), strings by bytes (so ISO dates order
//!   correctly), booleans only with `==` / `!=`.
//! * Anything else (a string against a number, ordering booleans, arrays, objects) is an
//!   [`EvalError`], not a silent `false`: `train.auc_roc > '0.8'` is a bug in the DAG file
//!   and the runner should fail the task with this message rather than quietly skip it.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde_json::{Number, Value};

/// Names every run provides; they are not task ids (the loader rejects tasks with these ids).
pub const BUILTINS: &[&str] = &[
    "weekday",
    "day",
    "hour",
    "logical_date",
    "dag",
    "data_interval_start",
    "data_interval_end",
    // Whether the lake had a champion model when the run started (false on a new lake).
    "has_champion",
];

/// Words with a meaning in the grammar; they cannot be used as names.
pub const KEYWORDS: &[&str] = &["and", "or", "not", "true", "false", "always", "never"];

/// A parsed `run_if` condition, with the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// The syntax tree of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `always` (true) or `never` (false).
    Const(bool),
    /// A bare operand, tested for truthiness.
    Truthy(Operand),
    /// `left op right`.
    Compare {
        /// Left-hand side.
        left: Operand,
        /// The operator.
        op: CmpOp,
        /// Right-hand side.
        right: Operand,
    },
    /// `not e`.
    Not(Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
}

/// A value in a condition: a dotted name looked up in the context, or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `drift.dataset_drift` as `["drift", "dataset_drift"]`.
    Path(Vec<String>),
    /// A string, number or boolean literal.
    Literal(Value),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A condition that does not parse: where (1-based character column), what the parser
/// expected there, and what it found instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: expected {expected}, found {found}")]
pub struct ConditionError {
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What would have been valid here, e.g. `"an operand (a name, a string, a number, true or false) or '('"`.
    pub expected: String,
    /// What was there, e.g. `"end of input"` or `"'&&'"`.
    pub found: String,
}

/// A condition that cannot be evaluated against a context: it compares values of types that
/// have no order between them. Missing values are not an error (they make comparisons false).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot evaluate `{comparison}`: cannot compare {left} with {right} using '{op}'")]
pub struct EvalError {
    /// The comparison, as written back from the syntax tree.
    pub comparison: String,
    /// The operator.
    pub op: CmpOp,
    /// The left value with its type, e.g. `string "Sun"`.
    pub left: String,
    /// The right value with its type, e.g. `number 1`.
    pub right: String,
}

impl Condition {
    /// Parses a condition; surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            after_bare_operand: false,
        };
        let expr = parser.or_expr()?;
        let tok = parser.peek();
        if tok.kind != Tok::End {
            let expected = if tok.kind == Tok::RParen {
                "'and', 'or' or end of input (this ')' has no matching '(')"
            } else if parser.after_bare_operand {
                "a comparison operator, 'and', 'or' or end of input"
            } else {
                "'and', 'or' or end of input"
            };
            return Err(parser.error_here(expected));
        }
        Ok(Condition {
            source: text.trim().to_string(),
            expr,
        })
    }

    /// The condition that always holds (a task without `run_if`).
    pub fn always() -> Condition {
        Condition {
            source: "always".to_string(),
            expr: Expr::Const(true),
        }
    }

    /// True for `always` (written or implied): nothing to evaluate, nothing to draw.
    pub fn is_always(&self) -> bool {
        self.expr == Expr::Const(true)
    }

    /// The text the condition was parsed from (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Evaluates the condition against a context object such as
    /// `{"drift": {"dataset_drift": true}, "weekday": "Sun"}`. See the module docs for the
    /// rules on missing values and types.
    pub fn evaluate(&self, ctx: &Value) -> Result<bool, EvalError> {
        self.expr.evaluate(ctx)
    }

    /// Task ids the condition reads: the first segment of every dotted name that is not a
    /// [built-in](BUILTINS), without duplicates, in order of appearance. The loader checks
    /// that each is an (indirect) upstream dependency of the task.
    pub fn referenced_tasks(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.expr.visit_paths(&mut |path| {
            if let Some(first) = path.first() {
                if !BUILTINS.contains(&first.as_str()) && !out.contains(first) {
                    out.push(first.clone());
                }
            }
        });
        out
    }

    /// Every dotted name the condition reads, as written, without duplicates (for the reason
    /// a task was skipped: `has_champion = false`).
    pub fn paths(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.expr.visit_paths(&mut |path| {
            let name = path.join(".");
            if !out.contains(&name) {
                out.push(name);
            }
        });
        out
    }
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(s: &str) -> Result<Condition, ConditionError> {
        Condition::parse(s)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Expr {
    fn evaluate(&self, ctx: &Value) -> Result<bool, EvalError> {
        match self {
            Expr::Const(b) => Ok(*b),
            Expr::Truthy(operand) => Ok(operand.resolve(ctx).is_some_and(truthy)),
            Expr::Compare { left, op, right } => {
                let (Some(l), Some(r)) = (left.resolve(ctx), right.resolve(ctx)) else {
                    return Ok(false);
                };
                compare(l, *op, r).ok_or_else(|| EvalError {
                    comparison: self.to_string(),
                    op: *op,
                    left: describe_value(l),
                    right: describe_value(r),
                })
            }
            Expr::Not(e) => Ok(!e.evaluate(ctx)?),
            Expr::And(a, b) => Ok(a.evaluate(ctx)? && b.evaluate(ctx)?),
            Expr::Or(a, b) => Ok(a.evaluate(ctx)? || b.evaluate(ctx)?),
        }
    }

    fn visit_paths(&self, f: &mut dyn FnMut(&[String])) {
        let mut operand = |o: &Operand| {
            if let Operand::Path(p) = o {
                f(p)
            }
        };
        match self {
            Expr::Const(_) => {}
            Expr::Truthy(o) => operand(o),
            Expr::Compare { left, right, .. } => {
                operand(left);
                operand(right);
            }
            Expr::Not(e) => e.visit_paths(f),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.visit_paths(f);
                b.visit_paths(f);
            }
        }
    }
}

/// Writes the tree back with the grouping made explicit: `a or b and c` prints as
/// `a or (b and c)`, which is how tests and error messages show what was understood.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        match self {
            Expr::Const(true) => f.write_str("always"),
            Expr::Const(false) => f.write_str("never"),
            Expr::Truthy(o) => write!(f, "{o}"),
            Expr::Compare { left, op, right } => write!(f, "{left} {op} {right}"),
            Expr::Not(e) => {
                f.write_str("not ")?;
                child(f, e, matches!(**e, Expr::And(..) | Expr::Or(..)))
            }
            Expr::And(a, b) => {
                child(f, a, matches!(**a, Expr::Or(..)))?;
                f.write_str(" and ")?;
                child(f, b, matches!(**b, Expr::Or(..) | Expr::And(..)))
            }
            Expr::Or(a, b) => {
                child(f, a, matches!(**a, Expr::And(..)))?;
                f.write_str(" or ")?;
                child(f, b, matches!(**b, Expr::Or(..) | Expr::And(..)))
            }
        }
    }
}

impl Operand {
    /// The value in the context, `None` when missing or `null`.
    fn resolve<'a>(&'a self, ctx: &'a Value) -> Option<&'a Value> {
        let v = match self {
            Operand::Literal(v) => v,
            Operand::Path(path) => path.iter().try_fold(ctx, |v, seg| v.get(seg.as_str()))?,
        };
        (!v.is_null()).then_some(v)
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Path(p) => f.write_str(&p.join(".")),
            Operand::Literal(Value::String(s)) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\'' => f.write_str("\\'")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\t' => f.write_str("\\t")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            Operand::Literal(v) => write!(f, "{v}"),
        }
    }
}

impl CmpOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `None` when the two values cannot be compared with `op`.
fn compare(l: &Value, op: CmpOp, r: &Value) -> Option<bool> {
    match (l, r) {
        (Value::Number(a), Value::Number(b)) => Some(op.holds(compare_numbers(a, b)?)),
        (Value::String(a), Value::String(b)) => Some(op.holds(a.cmp(b))),
        (Value::Bool(a), Value::Bool(b)) => match op {
            CmpOp::Eq => Some(a == b),
            CmpOp::Ne => Some(a != b),
            _ => None,
        },
        _ => None,
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Path(Vec<String>),
    Str(String),
    Num(Number),
    Cmp(CmpOp),
    LParen,
    RParen,
    And,
    Or,
    Not,
    True,
    False,
    Always,
    Never,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    /// 1-based character column of the token's first character.
    column: usize,
    /// How the token is shown in an error ("end of input", "'=='", "name 'foo'").
    shown: String,
}

fn lex(text: &str) -> Result<Vec<Token>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |column: usize, expected: &str, found: String| ConditionError {
        column,
        expected: expected.to_string(),
        found,
    };
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (kind, len) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
            ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
            ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
            ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('=', _) => return Err(err(column, "'=='", "'='".into())),
            ('&', Some('&')) => return Err(err(column, "'and'", "'&&'".into())),
            ('|', Some('|')) => return Err(err(column, "'or'", "'||'".into())),
            ('!', _) => return Err(err(column, "'not' or '!='", "'!'".into())),
            ('\'' | '"', _) => {
                let (s, len) = lex_string(&chars, i)?;
                (Tok::Str(s), len)
            }
            _ if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                lex_number(&chars, i)?
            }
            _ if c.is_ascii_alphabetic() || c == '_' => lex_name(&chars, i)?,
            _ => {
                return Err(err(
                    column,
                    "a name, a string, a number, an operator or a parenthesis",
                    format!("{c:?}"),
                ))
            }
        };
        let raw: String = chars[i..i + len].iter().collect();
        let shown = match &kind {
            Tok::Path(_) => format!("name '{raw}'"),
            Tok::Str(_) => format!("string {raw}"),
            Tok::Num(_) => format!("number {raw}"),
            _ => format!("'{raw}'"),
        };
        tokens.push(Token {
            kind,
            column,
            shown,
        });
        i += len;
    }
    tokens.push(Token {
        kind: Tok::End,
        column: chars.len() + 1,
        shown: "end of input".to_string(),
    });
    Ok(tokens)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ConditionError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(ConditionError {
                    column: chars.len() + 1,
                    expected: format!(
                        "a closing {quote} for the string starting at column {}",
                        start + 1
                    ),
                    found: "end of input".to_string(),
                })
            }
            Some(&c) if c == quote => return Ok((out, i + 1 - start)),
            Some('\\') => {
                let escaped = match chars.get(i + 1) {
                    Some('\\') => '\\',
                    Some('\'') => '\'',
                    Some('"') => '"',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    other => {
                        return Err(ConditionError {
                            column: i + 2,
                            expected: r#"an escape (\\, \', \", \n or \t)"#.to_string(),
                            found: other.map_or("end of input".to_string(), |c| format!("{c:?}")),
                        })
                    }
                };
                out.push(escaped);
                i += 2;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
        }
    }
}

fn lex_number(chars: &[char], start: usize) -> Result<(Tok, usize), ConditionError> {
    let mut i = start;
    if chars[i] == '-' {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let from = *i;
        while chars.get(*i).is_some_and(|c| c.is_ascii_digit()) {
            *i += 1;
        }
        *i > from
    };
    digits(&mut i);
    let mut integral = true;
    if chars.get(i) == Some(&'.') {
        integral = false;
        i += 1;
        if !digits(&mut i) {
            return Err(ConditionError {
                column: i + 1,
                expected: "digits after the decimal point".to_string(),
                found: chars
                    .get(i)
                    .map_or("end of input".to_string(), |c| format!("{c:?}")),
            });
        }
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        integral = false;
        i += 1;
        if matches!(chars.get(i), Some('+' | '-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return Err(ConditionError {
                column: i + 1,
                expected: "digits in the exponent".to_string(),
                found: chars
                    .get(i)
                    .map_or("end of input".to_string(), |c| format!("{c:?}")),
            });
        }
    }
    if chars
        .get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_')
    {
        return Err(ConditionError {
            column: i + 1,
            expected: "an operator, 'and', 'or', ')' or end of input after a number".to_string(),
            found: format!("{:?}", chars[i]),
        });
    }
    let text: String = chars[start..i].iter().collect();
    let number = if integral {
        text.parse::<i64>().ok().map(Number::from)
    } else {
        None
    }
    .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64));
    match number {
        Some(n) => Ok((Tok::Num(n), i - start)),
        None => Err(ConditionError {
            column: start + 1,
            expected: "a finite number".to_string(),
            found: format!("number {text}"),
        }),
    }
}

fn lex_name(chars: &[char], start: usize) -> Result<(Tok, usize), ConditionError> {
    let is_name_char = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut segments = Vec::new();
    let mut i = start;
    loop {
        let from = i;
        while chars.get(i).is_some_and(is_name_char) {
            i += 1;
        }
        let segment: String = chars[from..i].iter().collect();
        if segment.is_empty() || segment.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(ConditionError {
                column: from + 1,
                expected: "a field name after '.'".to_string(),
                found: chars
                    .get(from)
                    .map_or("end of input".to_string(), |c| format!("{c:?}")),
            });
        }
        segments.push(segment);
        if chars.get(i) == Some(&'.') {
            i += 1;
        } else {
            break;
        }
    }
    let len = i - start;
    if segments.len() == 1 {
        let keyword = match segments[0].as_str() {
            "and" => Some(Tok::And),
            "or" => Some(Tok::Or),
            "not" => Some(Tok::Not),
            "true" => Some(Tok::True),
            "false" => Some(Tok::False),
            "always" => Some(Tok::Always),
            "never" => Some(Tok::Never),
            _ => None,
        };
        if let Some(k) = keyword {
            return Ok((k, len));
        }
    }
    Ok((Tok::Path(segments), len))
}

// ---------------------------------------------------------------------------------------
// Parser

const EXPECTED_OPERAND: &str = "an operand (a name, a string, a number, true or false) or '('";
const EXPECTED_RIGHT_OPERAND: &str = "an operand (a name, a string, a number, true or false)";

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The last primary was a bare operand, so a comparison operator would have been valid.
    after_bare_operand: bool,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`; `pos` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let t = self.peek().clone();
        if t.kind != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn error_here(&self, expected: &str) -> ConditionError {
        let t = self.peek();
        ConditionError {
            column: t.column,
            expected: expected.to_string(),
            found: t.shown.clone(),
        }
    }

    fn or_expr(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and_expr()?;
        while self.peek().kind == Tok::Or {
            self.advance();
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.not_expr()?;
        while self.peek().kind == Tok::And {
            self.advance();
            let right = self.not_expr()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, ConditionError> {
        if self.peek().kind == Tok::Not {
            self.advance();
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ConditionError> {
        self.after_bare_operand = false;
        match self.peek().kind {
            Tok::LParen => {
                self.advance();
                let e = self.or_expr()?;
                if self.peek().kind != Tok::RParen {
                    let expected = if self.after_bare_operand {
                        "a comparison operator, 'and', 'or' or ')'"
                    } else {
                        "'and', 'or' or ')'"
                    };
                    return Err(self.error_here(expected));
                }
                self.advance();
                self.after_bare_operand = false;
                Ok(e)
            }
            Tok::Always => {
                self.advance();
                Ok(Expr::Const(true))
            }
            Tok::Never => {
                self.advance();
                Ok(Expr::Const(false))
            }
            _ => {
                let left = self.operand(EXPECTED_OPERAND)?;
                if let Tok::Cmp(op) = self.peek().kind {
                    self.advance();
                    let right = self.operand(EXPECTED_RIGHT_OPERAND)?;
                    if let Tok::Cmp(_) = self.peek().kind {
                        return Err(self.error_here(
                            "'and', 'or' or end of input (comparisons do not chain; use 'and')",
                        ));
                    }
                    return Ok(Expr::Compare { left, op, right });
                }
                self.after_bare_operand = true;
                Ok(Expr::Truthy(left))
            }
        }
    }

    fn operand(&mut self, expected: &str) -> Result<Operand, ConditionError> {
        let operand = match &self.peek().kind {
            Tok::Path(p) => Operand::Path(p.clone()),
            Tok::Str(s) => Operand::Literal(Value::String(s.clone())),
            Tok::Num(n) => Operand::Literal(Value::Number(n.clone())),
            Tok::True => Operand::Literal(Value::Bool(true)),
            Tok::False => Operand::Literal(Value::Bool(false)),
            _ => return Err(self.error_here(expected)),
        };
        self.advance();
        Ok(operand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Condition {
        match Condition::parse(s) {
            Ok(c) => c,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match Condition::parse(s) {
            Ok(c) => panic!("{s:?} should not parse, got {}", c.expr()),
            Err(e) => e.to_string(),
        }
    }

    fn eval(s: &str, ctx: &Value) -> bool {
        match parse(s).evaluate(ctx) {
            Ok(b) => b,
            Err(e) => panic!("{s:?} should evaluate: {e}"),
        }
    }

    fn ctx() -> Value {
        json!({
            "drift": {"dataset_drift": true, "share": 0.25, "n_drifted": 3, "note": ""},
            "train": {"auc_roc": 0.87, "version": 12, "ok": false},
            "weekday": "Sun",
            "day": 7,
            "hour": 2,
            "logical_date": "2024-06-02T02:00:00+00:00",
            "nothing": null,
            "list": [1],
        })
    }

    #[test]
    fn always_and_never() {
        assert!(parse("always").is_always());
        assert!(parse("  always ").is_always());
        assert!(!parse("never").is_always());
        assert!(Condition::always().is_always());
        assert!(eval("always", &json!({})));
        assert!(!eval("never", &json!({})));
        assert_eq!(
            parse("never or always").expr().to_string(),
            "never or always"
        );
    }

    #[test]
    fn precedence_or_binds_looser_than_and() {
        let c = parse("a or b and c");
        assert_eq!(c.expr().to_string(), "a or (b and c)");
        assert_eq!(
            c.expr(),
            &Expr::Or(
                Box::new(Expr::Truthy(Operand::Path(vec!["a".into()]))),
                Box::new(Expr::And(
                    Box::new(Expr::Truthy(Operand::Path(vec!["b".into()]))),
                    Box::new(Expr::Truthy(Operand::Path(vec!["c".into()]))),
                )),
            )
        );
        assert_eq!(parse("a and b or c").expr().to_string(), "(a and b) or c");
        assert_eq!(parse("(a or b) and c").expr().to_string(), "(a or b) and c");
        assert_eq!(parse("a or b or c").expr().to_string(), "a or b or c");
        assert_eq!(parse("not a and b").expr().to_string(), "not a and b");
        assert_eq!(parse("not (a and b)").expr().to_string(), "not (a and b)");
        assert_eq!(parse("not not a").expr().to_string(), "not not a");
        assert_eq!(parse("not x.y == 3").expr().to_string(), "not x.y == 3");
        // a or b and c with a=true, b=false, c=false: true (would be false as (a or b) and c).
        let v = json!({"a": true, "b": false, "c": false});
        assert!(eval("a or b and c", &v));
        assert!(!eval("(a or b) and c", &v));
    }

    #[test]
    fn not_binds_tighter_than_and_but_looser_than_comparison() {
        let v = json!({"x": 1, "y": true});
        assert!(!eval("not x == 1", &v));
        assert!(eval("not x == 2", &v));
        assert!(!eval("not y and y", &v));
        assert!(eval("not (not y)", &v));
    }

    #[test]
    fn the_shipped_example() {
        let c = parse("drift.dataset_drift or weekday == 'Sun'");
        assert_eq!(c.referenced_tasks(), vec!["drift".to_string()]);
        assert!(eval(
            c.source(),
            &json!({"drift": {"dataset_drift": true}, "weekday": "Mon"})
        ));
        assert!(eval(
            c.source(),
            &json!({"drift": {"dataset_drift": false}, "weekday": "Sun"})
        ));
        assert!(!eval(
            c.source(),
            &json!({"drift": {"dataset_drift": false}, "weekday": "Mon"})
        ));
        // drift skipped (no output) on a Monday: false, not an error.
        assert!(!eval(c.source(), &json!({"weekday": "Mon"})));
    }

    #[test]
    fn truthiness() {
        let v = ctx();
        assert!(eval("drift.dataset_drift", &v));
        assert!(eval("drift.share", &v));
        assert!(eval("weekday", &v));
        assert!(eval("list", &v));
        assert!(eval("drift", &v)); // a non-empty object
        assert!(!eval("drift.note", &v)); // empty string
        assert!(!eval("train.ok", &v));
        assert!(!eval("nothing", &v)); // null
        assert!(!eval("missing", &v));
        assert!(!eval("drift.missing.deeper", &v));
        assert!(!eval("weekday.x", &v)); // a field of a string
        assert!(!eval("0", &v));
        assert!(eval("-1.5", &v));
        assert!(eval("'x'", &v));
        assert!(!eval("''", &v));
        assert!(eval("true", &v));
        assert!(!eval("false", &v));
    }

    #[test]
    fn comparisons() {
        let v = ctx();
        assert!(eval("train.auc_roc >= 0.85", &v));
        assert!(eval("train.auc_roc > 0.85 and train.auc_roc < 0.9", &v));
        assert!(!eval("train.auc_roc <= 0.5", &v));
        assert!(eval("train.version == 12", &v));
        assert!(eval("train.version == 12.0", &v)); // numbers compare numerically
        assert!(eval("train.version != 11", &v));
        assert!(eval("day >= 7 and hour < 3", &v));
        assert!(eval("weekday == \"Sun\"", &v));
        assert!(eval("weekday != 'Mon'", &v));
        assert!(eval("logical_date >= '2024-06-01'", &v)); // ISO dates order as strings
        assert!(!eval("logical_date < '2024-06-01'", &v));
        assert!(eval("drift.dataset_drift == true", &v));
        assert!(eval("train.ok != true", &v));
        assert!(eval("-3 < -2.5", &v));
        assert!(eval("1e3 == 1000", &v));
        assert!(eval("9007199254740993 > 9007199254740992", &v)); // exact for large integers
    }

    #[test]
    fn missing_values_make_every_comparison_false() {
        let v = ctx();
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            assert!(!eval(&format!("missing.x {op} 1"), &v), "{op}");
            assert!(!eval(&format!("1 {op} nothing"), &v), "{op}");
            assert!(eval(&format!("not missing.x {op} 1"), &v), "{op}");
        }
    }

    #[test]
    fn type_mismatches_are_errors() {
        let v = ctx();
        let err = |s: &str| match parse(s).evaluate(&v) {
            Ok(b) => panic!("{s:?} should not evaluate, got {b}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            err("train.auc_roc > '0.8'"),
            "cannot evaluate `train.auc_roc > '0.8'`: cannot compare number 0.87 with string \"0.8\" using '>'"
        );
        assert_eq!(
            err("weekday == 1"),
            "cannot evaluate `weekday == 1`: cannot compare string \"Sun\" with number 1 using '=='"
        );
        assert_eq!(
            err("drift.dataset_drift < false"),
            "cannot evaluate `drift.dataset_drift < false`: cannot compare boolean true with boolean false using '<'"
        );
        assert_eq!(
            err("list == 1"),
            "cannot evaluate `list == 1`: cannot compare an array with number 1 using '=='"
        );
        // Short-circuit: the mismatch on the right is never reached.
        assert!(eval("drift.dataset_drift or weekday == 1", &v));
        assert!(!eval("train.ok and weekday == 1", &v));
    }

    #[test]
    fn strings_and_escapes() {
        let c = parse(r#"x == 'it\'s' or y == "say \"hi\"" or z == 'a\\b\n'"#);
        let v = json!({"x": "it's", "y": "no", "z": "no"});
        assert!(c.evaluate(&v).unwrap_or(false));
        let v = json!({"x": "no", "y": "say \"hi\"", "z": "no"});
        assert!(c.evaluate(&v).unwrap_or(false));
        let v = json!({"x": "no", "y": "no", "z": "a\\b\n"});
        assert!(c.evaluate(&v).unwrap_or(false));
        assert_eq!(
            c.expr().to_string(),
            r#"x == 'it\'s' or y == 'say "hi"' or z == 'a\\b\n'"#
        );
    }

    #[test]
    fn referenced_tasks_skip_builtins_and_literals() {
        let c = parse(
            "(drift.dataset_drift and not train.ok) or weekday == 'Sun' or hour > 3 \
             or day == 1 or dag == 'x' or logical_date > data_interval_start \
             or data_interval_end or drift.share > 0.3 or evaluate",
        );
        assert_eq!(c.referenced_tasks(), vec!["drift", "train", "evaluate"]);
        assert!(parse("always").referenced_tasks().is_empty());
        assert!(parse("'drift' == 'x'").referenced_tasks().is_empty());
    }

    #[test]
    fn parse_errors_name_the_column_and_what_was_expected() {
        assert_eq!(
            parse_err(""),
            "at column 1: expected an operand (a name, a string, a number, true or false) or '(', found end of input"
        );
        assert_eq!(
            parse_err("drift.dataset_drift or"),
            "at column 23: expected an operand (a name, a string, a number, true or false) or '(', found end of input"
        );
        assert_eq!(
            parse_err("a && b"),
            "at column 3: expected 'and', found '&&'"
        );
        assert_eq!(
            parse_err("a || b"),
            "at column 3: expected 'or', found '||'"
        );
        assert_eq!(
            parse_err("!a"),
            "at column 1: expected 'not' or '!=', found '!'"
        );
        assert_eq!(
            parse_err("weekday = 'Sun'"),
            "at column 9: expected '==', found '='"
        );
        assert_eq!(
            parse_err("weekday == 'Sun"),
            "at column 16: expected a closing ' for the string starting at column 12, found end of input"
        );
        assert_eq!(
            parse_err("(a or b"),
            "at column 8: expected a comparison operator, 'and', 'or' or ')', found end of input"
        );
        assert_eq!(
            parse_err("(a == 1"),
            "at column 8: expected 'and', 'or' or ')', found end of input"
        );
        assert_eq!(
            parse_err("a or b)"),
            "at column 7: expected 'and', 'or' or end of input (this ')' has no matching '('), found ')'"
        );
        assert_eq!(
            parse_err("a b"),
            "at column 3: expected a comparison operator, 'and', 'or' or end of input, found name 'b'"
        );
        assert_eq!(
            parse_err("a == 1 b"),
            "at column 8: expected 'and', 'or' or end of input, found name 'b'"
        );
        assert_eq!(
            parse_err("1 < x < 3"),
            "at column 7: expected 'and', 'or' or end of input (comparisons do not chain; use 'and'), found '<'"
        );
        assert_eq!(
            parse_err("x == == 1"),
            "at column 6: expected an operand (a name, a string, a number, true or false), found '=='"
        );
        assert_eq!(
            parse_err("x == and"),
            "at column 6: expected an operand (a name, a string, a number, true or false), found 'and'"
        );
        assert_eq!(
            parse_err("drift. x"),
            "at column 7: expected a field name after '.', found ' '"
        );
        assert_eq!(
            parse_err("drift.1st"),
            "at column 7: expected a field name after '.', found '1'"
        );
        assert_eq!(
            parse_err("x > 1.5.2"),
            "at column 8: expected a name, a string, a number, an operator or a parenthesis, found '.'"
        );
        assert_eq!(
            parse_err("x > 1."),
            "at column 7: expected digits after the decimal point, found end of input"
        );
        assert_eq!(
            parse_err("x > 10days"),
            "at column 7: expected an operator, 'and', 'or', ')' or end of input after a number, found 'd'"
        );
        assert_eq!(
            parse_err("x == 'a\\q'"),
            "at column 9: expected an escape (\\\\, \\', \\\", \\n or \\t), found 'q'"
        );
        assert_eq!(
            parse_err("weekday == 'Sun' AND hour > 1"),
            "at column 18: expected 'and', 'or' or end of input, found name 'AND'"
        );
        assert_eq!(
            parse_err("x == 1 # comment"),
            "at column 8: expected a name, a string, a number, an operator or a parenthesis, found '#'"
        );
        assert_eq!(
            parse_err("x == ()"),
            "at column 6: expected an operand (a name, a string, a number, true or false), found '('"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            parse_err("x == 'é' and"),
            "at column 13: expected an operand (a name, a string, a number, true or false) or '(', found end of input"
        );
    }

    #[test]
    fn from_str_and_display() {
        let c: Condition = "  a.b  or  c ".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.to_string(), "a.b  or  c");
        assert_eq!(c.source(), "a.b  or  c");
        assert_eq!(c.expr().to_string(), "a.b or c");
    }
}
