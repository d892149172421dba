//! Templates of derived values and eval settings: `{a.b}` references to the job's config so
//! far, combined with integer arithmetic (`+ - * /`, parentheses, unary minus, integer
//! literals). Division must be exact. A template that is exactly one reference yields the
//! referenced value unchanged, whatever its type. A template with letters outside its
//! references (`sliding-window:r={train.seq_len}`) is text: each reference is replaced by its
//! value.
use std::fmt;

use serde_json::Value;

use super::keys::KeyPath;

/// Why a template could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprError {
    /// `a / b` leaves a remainder; `expr` is the template with its references substituted.
    Inexact { expr: String, a: i64, b: i64 },
    /// Anything else: a syntax error, a missing or non-integer reference, overflow.
    Invalid { template: String, msg: String },
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExprError::Inexact { expr, a, b } if *expr == format!("{a} / {b}") => {
                write!(f, "{expr} is not an integer")
            }
            ExprError::Inexact { expr, a, b } => write!(f, "{expr}: {a} / {b} is not an integer"),
            ExprError::Invalid { template, msg } => write!(f, "`{template}`: {msg}"),
        }
    }
}

/// Whether a string is a template (contains a `{...}` reference).
pub fn is_template(s: &str) -> bool {
    s.find('{').is_some_and(|open| s[open..].contains('}'))
}

/// The longest template evaluated, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 4096;
/// The deepest nesting of parentheses and unary minuses (the parser recurses on each).
pub const MAX_DEPTH: usize = 64;

/// Evaluates `template` against `ctx`.
pub fn evaluate(template: &str, ctx: &Value) -> Result<Value, ExprError> {
    if template.len() > MAX_TEMPLATE_LEN {
        let head: String = template.chars().take(40).collect();
        return Err(ExprError::Invalid {
            template: format!("{head}..."),
            msg: format!("the template is {} bytes long, more than the limit {MAX_TEMPLATE_LEN}", template.len()),
        });
    }
    let invalid = |msg: String| ExprError::Invalid { template: template.to_string(), msg };
    let trimmed = template.trim();
    if let Some(inner) = trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        if !inner.contains(['{', '}']) {
            return lookup(inner, ctx).cloned().map_err(invalid);
        }
    }
    if is_text(template) {
        return interpolate(template, ctx).map(Value::String).map_err(invalid);
    }
    let (tokens, expr) = tokenize(template, ctx).map_err(invalid)?;
    let mut parser = Parser { tokens, pos: 0, expr, depth: 0 };
    let value = parser.sum()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(Value::from(value)),
        Some(t) => Err(invalid(format!("unexpected `{t}`"))),
    }
}

/// Whether the template has letters outside its `{...}` references.
fn is_text(template: &str) -> bool {
    let mut depth = 0;
    template.chars().any(|c| {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        depth == 0 && c.is_alphabetic()
    })
}

/// Replaces every `{ref}` by the text of its value.
fn interpolate(template: &str, ctx: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').ok_or_else(|| "unclosed `{`".to_string())? + open;
        match lookup(&rest[open + 1..close], ctx)? {
            Value::String(s) => out.push_str(s),
            v => out.push_str(&v.to_string()),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Int(i64),
    Op(char),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Int(n) => write!(f, "{n}"),
            Token::Op(c) => write!(f, "{c}"),
        }
    }
}

fn lookup<'a>(path: &str, ctx: &'a Value) -> Result<&'a Value, String> {
    let key = KeyPath::parse(path.trim())?;
    match key.get(ctx) {
        None | Some(Value::Null) => Err(format!("`{{{key}}}` is not set (by the base config, the grid or an earlier derived key)")),
        Some(v) => Ok(v),
    }
}

fn as_int(path: &str, v: &Value) -> Result<i64, String> {
    let exact_float = v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64);
    v.as_i64().or(exact_float).ok_or_else(|| format!("`{{{}}}` is {v}, not an integer", path.trim()))
}

/// Integers and operators, with references resolved; also the template with each reference
/// replaced by its value (for messages).
fn tokenize(template: &str, ctx: &Value) -> Result<(Vec<Token>, String), String> {
    let mut tokens = Vec::new();
    let mut expr = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        match c {
            c if c.is_whitespace() => {
                expr.push(c);
                rest = &rest[c.len_utf8()..];
            }
            '0'..='9' => {
                let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                let n = rest[..end].parse::<i64>().map_err(|_| format!("{} is too large", &rest[..end]))?;
                tokens.push(Token::Int(n));
                expr.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            '{' => {
                let end = rest.find('}').ok_or("unclosed `{`")?;
                let path = &rest[1..end];
                let n = as_int(path, lookup(path, ctx)?)?;
                tokens.push(Token::Int(n));
                expr.push_str(&n.to_string());
                rest = &rest[end + 1..];
            }
            '+' | '-' | '*' | '/' | '(' | ')' => {
                tokens.push(Token::Op(c));
                expr.push(c);
                rest = &rest[1..];
            }
            other => return Err(format!("unexpected `{other}` (expressions use integers, {{key}} references, + - * / and parentheses)")),
        }
    }
    if tokens.is_empty() {
        return Err("the expression is empty".into());
    }
    Ok((tokens, expr.trim().to_string()))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The substituted template, for messages.
    expr: String,
    /// Nesting of the factor being parsed (bounded by MAX_DEPTH: no stack overflow).
    depth: usize,
}

impl Parser {
    fn invalid(&self, msg: String) -> ExprError {
        ExprError::Invalid { template: self.expr.clone(), msg }
    }

    fn next_op(&self, ops: &[char]) -> Option<char> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(c)) if ops.contains(c) => Some(*c),
            _ => None,
        }
    }

    fn overflow(&self) -> ExprError {
        self.invalid("integer overflow".into())
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<i64, ExprError> {
        let mut acc = self.product()?;
        while let Some(op) = self.next_op(&['+', '-']) {
            self.pos += 1;
            let rhs = self.product()?;
            let r = if op == '+' { acc.checked_add(rhs) } else { acc.checked_sub(rhs) };
            acc = r.ok_or_else(|| self.overflow())?;
        }
        Ok(acc)
    }

    /// product := factor (('*' | '/') factor)*
    fn product(&mut self) -> Result<i64, ExprError> {
        let mut acc = self.factor()?;
        while let Some(op) = self.next_op(&['*', '/']) {
            self.pos += 1;
            let rhs = self.factor()?;
            acc = if op == '*' {
                acc.checked_mul(rhs).ok_or_else(|| self.overflow())?
            } else if rhs == 0 {
                return Err(self.invalid(format!("{acc} / 0 divides by zero")));
            } else if acc.checked_rem(rhs).ok_or_else(|| self.overflow())? != 0 {
                return Err(ExprError::Inexact { expr: self.expr.clone(), a: acc, b: rhs });
            } else {
                acc.checked_div(rhs).ok_or_else(|| self.overflow())?
            };
        }
        Ok(acc)
    }

    /// factor := '-' factor | '(' sum ')' | integer
    fn factor(&mut self) -> Result<i64, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.invalid(format!("parentheses and minus signs nested more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let v = self.factor_inner();
        self.depth -= 1;
        v
    }

    fn factor_inner(&mut self) -> Result<i64, ExprError> {
        let token = self.tokens.get(self.pos).copied();
        self.pos += 1;
        match token {
            Some(Token::Int(n)) => Ok(n),
            Some(Token::Op('-')) => self.factor()?.checked_neg().ok_or_else(|| self.overflow()),
            Some(Token::Op('(')) => {
                let v = self.sum()?;
                if self.next_op(&[')']).is_none() {
                    return Err(self.invalid("missing `)`".into()));
                }
                self.pos += 1;
                Ok(v)
            }
            Some(t) => Err(self.invalid(format!("unexpected `{t}`"))),
            None => Err(self.invalid("the expression ends too early".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"train": {"seq_len": 256, "tokens_per_step": 4096, "lr": 0.001, "device": "cpu"}, "n": 3.0})
    }

    #[test]
    fn integer_arithmetic_with_references() {
        let c = ctx();
        assert_eq!(evaluate("{train.tokens_per_step} / {train.seq_len}", &c), Ok(json!(16)));
        assert_eq!(evaluate("16 * {train.seq_len}", &c), Ok(json!(4096)));
        assert_eq!(evaluate("-(2 + 3) * 4 - -1", &c), Ok(json!(-19)));
        assert_eq!(evaluate("{n} * 2", &c), Ok(json!(6)));
        assert_eq!(evaluate("7", &c), Ok(json!(7)));
    }

    #[test]
    fn deep_nesting_and_long_templates_are_errors_not_stack_overflows() {
        let c = ctx();
        for t in ["(".repeat(20_000) + "1" + &")".repeat(20_000), "-".repeat(100_000) + "1", "(-".repeat(3000) + "1" + &")".repeat(3000)] {
            let e = evaluate(&t, &c).unwrap_err().to_string();
            assert!(e.contains("limit") || e.contains("nested more than"), "{e}");
        }
        let deep = "(".repeat(65) + "1" + &")".repeat(65);
        assert!(evaluate(&deep, &c).unwrap_err().to_string().contains("nested more than 64 deep"));
        let ok = "(".repeat(60) + "1" + &")".repeat(60);
        assert_eq!(evaluate(&ok, &c), Ok(json!(1)));
        assert_eq!(evaluate(&("-".repeat(63) + "1"), &c), Ok(json!(-1)));
    }

    #[test]
    fn a_single_reference_keeps_its_type() {
        assert_eq!(evaluate("{train.lr}", &ctx()), Ok(json!(0.001)));
        assert_eq!(evaluate(" {train.device} ", &ctx()), Ok(json!("cpu")));
    }

    #[test]
    fn division_must_be_exact() {
        let e = evaluate("1000 / 3", &ctx()).unwrap_err();
        assert_eq!(e.to_string(), "1000 / 3 is not an integer");
        let e = evaluate("{train.seq_len} / 3 + 1", &ctx()).unwrap_err();
        assert_eq!(e.to_string(), "256 / 3 + 1: 256 / 3 is not an integer");
    }

    #[test]
    fn errors_name_the_problem() {
        let c = ctx();
        for (t, want) in [
            ("{train.nope} * 2", "is not set"),
            ("{train.lr} * 2", "not an integer"),
            ("2 +", "ends too early"),
            ("(2 + 3", "missing `)`"),
            ("2 3", "unexpected `3`"),
            ("2 ^ 3", "unexpected `^`"),
            ("4 / (2 - 2)", "divides by zero"),
            ("9223372036854775807 + 1", "overflow"),
        ] {
            let e = evaluate(t, &c).unwrap_err().to_string();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn text_templates_interpolate() {
        let ctx = serde_json::json!({"train": {"seq_len": 256}});
        assert_eq!(evaluate("sliding-window:r={train.seq_len}", &ctx).unwrap(), Value::String("sliding-window:r=256".into()));
        assert_eq!(evaluate("16 * {train.seq_len}", &ctx).unwrap(), Value::from(4096));
    }
}
