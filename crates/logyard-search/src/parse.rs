//! Reading a search: characters -> tokens -> an [`Expr`] tree. Positions are counted in
//! characters from 0, so that a console can put a caret under them.

use std::fmt;

use crate::SearchError;

/// How deeply parentheses and negations may nest (a bound on the parser's recursion).
const MAX_DEPTH: usize = 64;

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// The empty search: every event.
    All,
    /// A word or a quoted phrase, looked for in the text fields.
    Text {
        pattern: Pattern,
        at: usize,
    },
    /// `field:value`, `field:>=value`, ...
    Field {
        field: String,
        op: Op,
        value: Pattern,
        at: usize,
    },
    /// `field:*`: the field is present.
    Exists {
        field: String,
        at: usize,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// How a field is compared with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `:` equal to (or, with wildcards, matching) the value
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    /// The comparison as the search language writes it after the colon.
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

impl Expr {
    /// What the expression reads: `Some(field)` for each field it names (`field:value`,
    /// `field:*`), `None` for each word or phrase looked for in the text fields.
    pub fn reads(&self) -> Vec<Option<&str>> {
        let mut out = Vec::new();
        self.collect_reads(&mut out);
        out
    }

    fn collect_reads<'a>(&'a self, out: &mut Vec<Option<&'a str>>) {
        match self {
            Expr::All => {}
            Expr::Text { .. } => out.push(None),
            Expr::Field { field, .. } | Expr::Exists { field, .. } => out.push(Some(field)),
            Expr::Not(e) => e.collect_reads(out),
            Expr::And(list) | Expr::Or(list) => list.iter().for_each(|e| e.collect_reads(out)),
        }
    }
}

/// A value: literal text with wildcards (`*`, from bare words only) between.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `*`: any run of characters.
    Any,
}

impl Pattern {
    /// The value when it has no wildcard.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Any => return None,
            }
        }
        Some(out)
    }

    fn push_char(&mut self, c: char) {
        match self.parts.last_mut() {
            Some(Part::Text(t)) => t.push(c),
            _ => self.parts.push(Part::Text(c.to_string())),
        }
    }

    fn push_any(&mut self) {
        if self.parts.last() != Some(&Part::Any) {
            self.parts.push(Part::Any);
        }
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Reads a search. Whitespace only is [`Expr::All`].
pub fn parse(text: &str) -> Result<Expr, SearchError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Ok(Expr::All);
    }
    let mut parser = Parser { tokens, next: 0, end: text.chars().count() };
    let expr = parser.or(0)?;
    match parser.tokens.get(parser.next) {
        None => Ok(expr),
        Some(t) if t.kind == Tok::Close => Err(SearchError::new(t.at, "`)` without a matching `(`")),
        Some(t) => Err(SearchError::new(t.at, format!("unexpected {}", t.kind.describe()))),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    /// `-` directly before a term.
    Minus,
    /// A bare word or a quoted phrase (free text).
    Text(Pattern),
    Field {
        field: String,
        op: Op,
        value: Pattern,
    },
    Exists(String),
}

impl Tok {
    fn describe(&self) -> &'static str {
        match self {
            Tok::Open => "`(`",
            Tok::Close => "`)`",
            Tok::And => "AND",
            Tok::Or => "OR",
            Tok::Not => "NOT",
            Tok::Minus => "`-`",
            Tok::Text(_) | Tok::Field { .. } | Tok::Exists(_) => "term",
        }
    }
}

#[derive(Debug)]
struct Token {
    kind: Tok,
    at: usize,
}

/// The characters of the search with their positions, read one at a time.
struct Chars {
    chars: Vec<char>,
    next: usize,
}

impl Chars {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.next).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.next + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.next += 1;
        Some(c)
    }

    /// The character after a backslash at `at`.
    fn escaped(&mut self, at: usize) -> Result<char, SearchError> {
        self.bump().ok_or_else(|| SearchError::new(at, "nothing to escape after `\\`"))
    }

    /// A quoted string; the opening quote is next.
    fn quoted(&mut self) -> Result<Pattern, SearchError> {
        let open = self.next;
        self.bump();
        let mut value = Pattern::default();
        loop {
            let at = self.next;
            match self.bump() {
                None => return Err(SearchError::new(open, "`\"` is not closed")),
                Some('"') => break,
                Some('\\') => value.push_char(self.escaped(at)?),
                Some(c) => value.push_char(c),
            }
        }
        if value.is_empty() {
            return Err(SearchError::new(open, "an empty phrase matches nothing: write something between the quotes"));
        }
        Ok(value)
    }

    /// A bare word up to whitespace, a parenthesis or a quote; with `stop_at_colon`, also up
    /// to the first colon that is not escaped. `*` is a wildcard unless escaped.
    fn bare(&mut self, stop_at_colon: bool) -> Result<(Pattern, bool), SearchError> {
        let mut value = Pattern::default();
        let mut escaped_any = false;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, '(' | ')' | '"') || (stop_at_colon && c == ':') {
                break;
            }
            let at = self.next;
            self.bump();
            match c {
                '\\' => {
                    value.push_char(self.escaped(at)?);
                    escaped_any = true;
                }
                '*' => value.push_any(),
                c => value.push_char(c),
            }
        }
        Ok((value, escaped_any))
    }
}

fn lex(text: &str) -> Result<Vec<Token>, SearchError> {
    let mut s = Chars { chars: text.chars().collect(), next: 0 };
    let mut tokens = Vec::new();
    while let Some(c) = s.peek() {
        let at = s.next;
        if c.is_whitespace() {
            s.bump();
            continue;
        }
        let kind = match c {
            '(' => {
                s.bump();
                Tok::Open
            }
            ')' => {
                s.bump();
                Tok::Close
            }
            '"' => Tok::Text(s.quoted()?),
            '-' if s.peek_at(1).is_some_and(|n| !n.is_whitespace() && n != ')') => {
                s.bump();
                Tok::Minus
            }
            _ => term(&mut s, at)?,
        };
        tokens.push(Token { kind, at });
    }
    Ok(tokens)
}

/// A bare word, an operator or `field:value`.
fn term(s: &mut Chars, at: usize) -> Result<Tok, SearchError> {
    let (word, escaped) = s.bare(true)?;
    if s.peek() != Some(':') {
        if !escaped && let Some(op) = word.literal() {
            match op.as_str() {
                "AND" => return Ok(Tok::And),
                "OR" => return Ok(Tok::Or),
                "NOT" => return Ok(Tok::Not),
                _ => {}
            }
        }
        return Ok(Tok::Text(word));
    }
    s.bump(); // the colon
    let field = match word.literal() {
        Some(field) if field.is_empty() => return Err(SearchError::new(at, "expected a field name before `:`")),
        Some(field) => field,
        None => return Err(SearchError::new(at, "a field name is plain text: escape `*` as `\\*`")),
    };
    let op = match (s.peek(), s.peek_at(1)) {
        (Some('>'), Some('=')) => Op::Ge,
        (Some('<'), Some('=')) => Op::Le,
        (Some('>'), _) => Op::Gt,
        (Some('<'), _) => Op::Lt,
        _ => Op::Eq,
    };
    for _ in 0..op.as_str().len() {
        s.bump();
    }
    let value_at = s.next;
    let value = if s.peek() == Some('"') {
        s.quoted()?
    } else {
        let (value, _) = s.bare(false)?;
        if value.is_empty() {
            return Err(SearchError::new(value_at, format!("expected a value after `{field}:{}`", op.as_str())));
        }
        if value.parts == [Part::Any] && op == Op::Eq {
            return Ok(Tok::Exists(field));
        }
        value
    };
    if op != Op::Eq && value.literal().is_none() {
        return Err(SearchError::new(value_at, "a comparison takes one value, not a pattern with `*`"));
    }
    Ok(Tok::Field { field, op, value })
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// The length of the search, where "expected ... at the end" points.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.next).map(|t| &t.kind)
    }

    fn here(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |t| t.at)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, SearchError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.next += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 { terms.pop().unwrap() } else { Expr::Or(terms) })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, SearchError> {
        let mut terms = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.next += 1;
                    terms.push(self.unary(depth)?);
                }
                Some(Tok::Or | Tok::Close) | None => break,
                Some(_) => terms.push(self.unary(depth)?),
            }
        }
        Ok(if terms.len() == 1 { terms.pop().unwrap() } else { Expr::And(terms) })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, SearchError> {
        if depth >= MAX_DEPTH {
            return Err(SearchError::new(self.here(), format!("nested more than {MAX_DEPTH} deep")));
        }
        let at = self.here();
        let Some(token) = self.tokens.get(self.next) else {
            return Err(SearchError::new(at, "expected a term at the end"));
        };
        self.next += 1;
        Ok(match token.kind.clone() {
            Tok::Not | Tok::Minus => Expr::Not(Box::new(self.unary(depth + 1)?)),
            Tok::Open => {
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(SearchError::new(at, "`(` is not closed"));
                }
                self.next += 1;
                inner
            }
            Tok::Text(pattern) => Expr::Text { pattern, at },
            Tok::Field { field, op, value } => Expr::Field { field, op, value, at },
            Tok::Exists(field) => Expr::Exists { field, at },
            kind @ (Tok::And | Tok::Or | Tok::Close) => {
                return Err(SearchError::new(at, format!("expected a term before {}", kind.describe())));
            }
        })
    }
}

/// Writes a search back in the language: reading the text gives the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => Ok(()),
            Expr::Text { pattern, .. } => write_value(f, pattern, false),
            Expr::Field { field, op, value, .. } => {
                write_field(f, field)?;
                write!(f, ":{}", op.as_str())?;
                write_value(f, value, true)
            }
            Expr::Exists { field, .. } => {
                write_field(f, field)?;
                f.write_str(":*")
            }
            Expr::Not(inner) => {
                f.write_str("NOT ")?;
                write_grouped(f, inner, |e| matches!(e, Expr::And(_) | Expr::Or(_)))
            }
            Expr::And(terms) => write_joined(f, terms, " AND ", |e| matches!(e, Expr::Or(_) | Expr::And(_))),
            Expr::Or(terms) => write_joined(f, terms, " OR ", |e| matches!(e, Expr::Or(_))),
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, terms: &[Expr], sep: &str, group: fn(&Expr) -> bool) -> fmt::Result {
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write_grouped(f, term, group)?;
    }
    Ok(())
}

fn write_grouped(f: &mut fmt::Formatter<'_>, e: &Expr, group: fn(&Expr) -> bool) -> fmt::Result {
    if group(e) { write!(f, "({e})") } else { write!(f, "{e}") }
}

fn write_field(f: &mut fmt::Formatter<'_>, field: &str) -> fmt::Result {
    for (i, c) in field.chars().enumerate() {
        if c.is_whitespace() || matches!(c, '(' | ')' | '"' | ':' | '*' | '\\') || (i == 0 && c == '-') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

/// A value as a phrase when it has no wildcard (and is not an operator word or a field
/// name), else as a bare word with its special characters escaped.
fn write_value(f: &mut fmt::Formatter<'_>, value: &Pattern, after_colon: bool) -> fmt::Result {
    if let Some(text) = value.literal() {
        f.write_str("\"")?;
        for c in text.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        return f.write_str("\"");
    }
    for (i, part) in value.parts.iter().enumerate() {
        match part {
            Part::Any => f.write_str("*")?,
            Part::Text(t) => {
                for (j, c) in t.chars().enumerate() {
                    let first = i == 0 && j == 0;
                    let special = c.is_whitespace() || matches!(c, '(' | ')' | '"' | '*' | '\\');
                    // A colon would make a free-text word a field, a leading `-` a negation;
                    // a leading `<` or `>` after the colon a comparison.
                    let leading = if after_colon { matches!(c, '<' | '>') } else { c == '-' };
                    if special || (!after_colon && c == ':') || (first && leading) {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Pattern {
        Pattern { parts: vec![Part::Text(s.into())] }
    }

    /// The tree without positions, written compactly, for assertions.
    fn shape(e: &Expr) -> String {
        match e {
            Expr::All => "ALL".into(),
            Expr::Text { pattern, .. } => format!("text({})", pat(pattern)),
            Expr::Field { field, op, value, .. } => format!("{field}{}{}", op_str(*op), pat(value)),
            Expr::Exists { field, .. } => format!("{field}?"),
            Expr::Not(inner) => format!("!{}", shape(inner)),
            Expr::And(t) => format!("and({})", t.iter().map(shape).collect::<Vec<_>>().join(", ")),
            Expr::Or(t) => format!("or({})", t.iter().map(shape).collect::<Vec<_>>().join(", ")),
        }
    }

    fn op_str(op: Op) -> &'static str {
        match op {
            Op::Eq => "=",
            o => o.as_str(),
        }
    }

    fn pat(p: &Pattern) -> String {
        p.parts
            .iter()
            .map(|part| match part {
                Part::Text(t) => t.clone(),
                Part::Any => "*".into(),
            })
            .collect()
    }

    fn parsed(s: &str) -> String {
        shape(&parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}")))
    }

    fn error(s: &str) -> SearchError {
        parse(s).expect_err(s)
    }

    #[test]
    fn words_phrases_and_fields() {
        assert_eq!(parsed(""), "ALL");
        assert_eq!(parsed("   "), "ALL");
        assert_eq!(parsed("checkout"), "text(checkout)");
        assert_eq!(parsed("\"payment declined\""), "text(payment declined)");
        assert_eq!(parsed("status:500"), "status=500");
        assert_eq!(parsed("status:>=500"), "status>=500");
        assert_eq!(parsed("status:>500 status:<600 latency_ms:<=2.5"), "and(status>500, status<600, latency_ms<=2.5)");
        assert_eq!(parsed("route:/api/*"), "route=/api/*");
        assert_eq!(parsed("order_id:*"), "order_id?");
        assert_eq!(parsed("http.method:POST"), "http.method=POST");
        assert_eq!(parsed("message:\"card declined: 51\""), "message=card declined: 51");
        assert_eq!(parsed("time:12:30"), "time=12:30");
        assert_eq!(parsed("o-0012345"), "text(o-0012345)");
    }

    #[test]
    fn not_binds_tightest_then_and_then_or() {
        assert_eq!(parsed("a b OR c"), "or(and(text(a), text(b)), text(c))");
        assert_eq!(parsed("a AND b OR c AND d"), "or(and(text(a), text(b)), and(text(c), text(d)))");
        assert_eq!(parsed("a OR b c"), "or(text(a), and(text(b), text(c)))");
        assert_eq!(parsed("a (b OR c)"), "and(text(a), or(text(b), text(c)))");
        assert_eq!(parsed("NOT a b"), "and(!text(a), text(b))");
        assert_eq!(parsed("-level:debug checkout"), "and(!level=debug, text(checkout))");
        assert_eq!(parsed("-(a OR b)"), "!or(text(a), text(b))");
        assert_eq!(parsed("NOT NOT a"), "!!text(a)");
        assert_eq!(parsed("-\"x y\""), "!text(x y)");
        // Lower case is text; a lone dash is text.
        assert_eq!(
            parsed("a or b and c not d"),
            "and(text(a), text(or), text(b), text(and), text(c), text(not), text(d))"
        );
        assert_eq!(parsed("a - b"), "and(text(a), text(-), text(b))");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            parse(r"path:a\:b").unwrap(),
            Expr::Field { field: "path".into(), op: Op::Eq, value: text("a:b"), at: 0 }
        );
        assert_eq!(parsed(r"a\*b"), "text(a*b)");
        assert_eq!(parse(r"a\*b").unwrap(), Expr::Text { pattern: text("a*b"), at: 0 });
        assert_eq!(parsed(r#""say \"hi\" \\ there""#), r#"text(say "hi" \ there)"#);
        assert_eq!(parsed(r"\AND"), "text(AND)");
        assert_eq!(parsed(r"\-a"), "text(-a)");
        assert_eq!(parsed(r"my\ field:1"), "my field=1");
        assert_eq!(parsed(r"a\(b\)"), "text(a(b))");
    }

    #[test]
    fn errors_name_their_position() {
        let e = error("status:");
        assert_eq!((e.at, e.message.as_str()), (7, "expected a value after `status:`"));
        assert_eq!(error("status:>=").at, 9);
        let e = error("a \"open");
        assert_eq!((e.at, e.message.as_str()), (2, "`\"` is not closed"));
        let e = error("(a OR b");
        assert_eq!((e.at, e.message.as_str()), (0, "`(` is not closed"));
        let e = error("a OR b)");
        assert_eq!((e.at, e.message.as_str()), (6, "`)` without a matching `(`"));
        assert_eq!(error("a OR").message, "expected a term at the end");
        assert_eq!(error("a OR").at, 4);
        assert_eq!(error("OR a").message, "expected a term before OR");
        assert_eq!(error("a AND AND b").at, 6);
        assert_eq!(error("NOT").at, 3);
        assert_eq!(error("()").message, "expected a term before `)`");
        assert_eq!(error(r"a\").message, "nothing to escape after `\\`");
        assert_eq!(error("status:>5*").message, "a comparison takes one value, not a pattern with `*`");
        assert_eq!(error("*:x").message, "a field name is plain text: escape `*` as `\\*`");
        assert_eq!(error(":x").message, "expected a field name before `:`");
        assert_eq!(error("\"\"").message, "an empty phrase matches nothing: write something between the quotes");
        assert_eq!(error("é ü x:").at, 6, "positions count characters, not bytes");
        assert!(error(&"(".repeat(100)).message.contains("nested more than 64"));
        assert!(error(&"-".repeat(200)).message.contains("nested more than 64"));
    }

    #[test]
    fn display_reads_back_as_the_same_search() {
        for s in [
            "checkout",
            "status:>=500 checkout",
            "a b OR c",
            "a OR b c",
            "-(a OR b) c",
            "NOT NOT a",
            "route:/api/* -level:debug",
            r#""payment declined" message:"x \"y\"""#,
            r"a\*b path:a\:b my\ field:1 \AND \-x",
            "order_id:* (a OR (b AND (c OR d)))",
            "t:12:30 http.method:POST",
            r"x:\>5* \-f:1 -\-g:* v:a\ b*",
        ] {
            let e = parse(s).unwrap();
            let written = e.to_string();
            let again = parse(&written).unwrap_or_else(|err| panic!("{s:?} -> {written:?}: {err}"));
            assert_eq!(shape(&again), shape(&e), "{s:?} -> {written:?}");
        }
    }
}
