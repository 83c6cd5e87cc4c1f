//! Script text → tokens. DolphinDB's literals are read here: dates `2023.01.01`, timestamps
//! `2023.01.01T10:00:00.000`, symbols `` `a `` (adjacent ones, `` `a`b ``, form one vector),
//! ranges' `..`. A newline ends a statement only outside brackets, so one call may span lines.

use shoal_catalog::partition::parse_date;

use crate::error::{Position, Result, ScriptError};

const MS_PER_DAY: i64 = 86_400_000;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Int(i64),
    Double(f64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since 1970-01-01T00:00:00.
    Timestamp(i64),
    Str(String),
    /// `` `a `` (one) or `` `a`b`c `` (a vector).
    Symbols(Vec<String>),
    Op(&'static str),
    /// The end of a statement: a newline outside brackets.
    Newline,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte offsets of the token in the text.
    pub start: usize,
    pub end: usize,
    pub at: Position,
}

const TWO_CHAR_OPS: [&str; 8] = ["..", "==", "!=", "<>", "<=", ">=", "&&", "||"];
const ONE_CHAR_OPS: [&str; 17] = [
    "(", ")", "[", "]", "{", "}", ",", ";", ":", ".", "=", "<", ">", "+", "-", "*", "/",
];

pub fn tokenize(text: &str) -> Result<Vec<Token>> {
    Lexer {
        text,
        pos: 0,
        depth: 0,
        out: Vec::new(),
    }
    .run()
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn position(&self, offset: usize) -> Position {
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Position { line, column }
    }

    fn error<T>(&self, message: impl Into<String>, offset: usize) -> Result<T> {
        Err(ScriptError::Syntax {
            message: message.into(),
            at: self.position(offset),
        })
    }

    fn push(&mut self, tok: Tok, start: usize) {
        let at = self.position(start);
        self.out.push(Token {
            tok,
            start,
            end: self.pos,
            at,
        });
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += self.peek().map_or(0, char::len_utf8);
        }
        &self.text[start..self.pos]
    }

    fn run(mut self) -> Result<Vec<Token>> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c == '\n' {
                self.pos += 1;
                let ended = matches!(
                    self.out.last(),
                    None | Some(Token {
                        tok: Tok::Newline,
                        ..
                    })
                );
                if self.depth == 0 && !ended {
                    self.push(Tok::Newline, start);
                }
            } else if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if self.rest().starts_with("//") {
                self.take_while(|c| c != '\n');
            } else if self.rest().starts_with("/*") {
                let Some(end) = self.rest().find("*/") else {
                    return self.error("unterminated comment `/*`", start);
                };
                self.pos += end + 2;
            } else if c == '"' || c == '\'' {
                self.string(c)?;
            } else if c == '`' {
                self.symbols();
            } else if c.is_ascii_digit() {
                self.number()?;
            } else if c.is_alphabetic() || c == '_' {
                let word = self
                    .take_while(|c| c.is_alphanumeric() || c == '_')
                    .to_owned();
                self.push(Tok::Ident(word), start);
            } else {
                self.op(c)?;
            }
        }
        Ok(self.out)
    }

    fn string(&mut self, quote: char) -> Result<()> {
        let start = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return self.error(format!("unterminated string starting with {quote}"), start);
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    self.pos += 1;
                    let Some(e) = self.peek() else { continue };
                    self.pos += e.len_utf8();
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    s.push(c);
                }
            }
        }
        self.push(Tok::Str(s), start);
        Ok(())
    }

    fn symbols(&mut self) {
        let start = self.pos;
        let mut names = Vec::new();
        while self.peek() == Some('`') {
            self.pos += 1;
            names.push(
                self.take_while(|c| c.is_alphanumeric() || c == '_')
                    .to_owned(),
            );
        }
        self.push(Tok::Symbols(names), start);
    }

    /// An integer, a double, a date (`2023.01.01`) or a timestamp (`2023.01.01T10:00:00.000`).
    /// A `.` is part of the number only when a digit follows: `1..3` is a range.
    fn number(&mut self) -> Result<()> {
        let start = self.pos;
        let mut dots = 0;
        loop {
            self.take_while(|c| c.is_ascii_digit());
            if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
                dots += 1;
                self.pos += 1;
            } else {
                break;
            }
        }
        let text = self.text[start..self.pos].to_owned();
        let tok = match dots {
            0 => match text.parse() {
                Ok(n) => Tok::Int(n),
                Err(_) => return self.error(format!("integer `{text}` is out of range"), start),
            },
            1 => Tok::Double(text.parse().unwrap_or_default()),
            2 => {
                let Some(day) = parse_date(&text) else {
                    return self.error(format!("`{text}` is not a valid date (YYYY.MM.DD)"), start);
                };
                if self.peek() == Some('T') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                    Tok::Timestamp(i64::from(day) * MS_PER_DAY + self.time_of_day(&text)?)
                } else {
                    Tok::Date(day)
                }
            }
            _ => return self.error(format!("`{text}` is not a number or a date"), start),
        };
        self.push(tok, start);
        Ok(())
    }

    /// `HH:MM:SS[.mmm]` after a date's `T`, in milliseconds.
    fn time_of_day(&mut self, date: &str) -> Result<i64> {
        let start = self.pos;
        let text = self
            .take_while(|c| c.is_ascii_digit() || c == ':' || c == '.')
            .to_owned();
        let (hms, ms) = text.split_once('.').unwrap_or((&text, "0"));
        let parts: Vec<i64> = hms.split(':').filter_map(|p| p.parse().ok()).collect();
        let ms: Option<i64> = format!("{ms:0<3}").get(..3).and_then(|m| m.parse().ok());
        match (parts.as_slice(), ms) {
            ([h, m, s], Some(ms)) if *h < 24 && *m < 60 && *s < 60 => {
                Ok(((h * 60 + m) * 60 + s) * 1000 + ms)
            }
            _ => self.error(
                format!("`{date}T{text}` is not a valid timestamp (YYYY.MM.DDTHH:MM:SS.mmm)"),
                start,
            ),
        }
    }

    fn op(&mut self, c: char) -> Result<()> {
        let start = self.pos;
        let op = TWO_CHAR_OPS
            .iter()
            .chain(&ONE_CHAR_OPS)
            .find(|op| self.rest().starts_with(**op));
        let Some(op) = op else {
            return self.error(format!("unexpected character `{c}`"), start);
        };
        match *op {
            "(" | "[" | "{" => self.depth += 1,
            ")" | "]" | "}" => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.pos += op.len();
        self.push(Tok::Op(op), start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokenize(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn the_seeds_literals() {
        let day = |s| Tok::Date(parse_date(s).unwrap());
        assert_eq!(
            toks("2023.01.01..2023.01.10"),
            [day("2023.01.01"), Tok::Op(".."), day("2023.01.10")]
        );
        assert_eq!(
            toks("[`time,`name]"),
            [
                Tok::Op("["),
                Tok::Symbols(vec!["time".into()]),
                Tok::Op(","),
                Tok::Symbols(vec!["name".into()]),
                Tok::Op("]")
            ]
        );
        assert_eq!(toks("`a`b"), [Tok::Symbols(vec!["a".into(), "b".into()])]);
        assert_eq!(toks("1:0"), [Tok::Int(1), Tok::Op(":"), Tok::Int(0)]);
        assert_eq!(toks("1..3"), [Tok::Int(1), Tok::Op(".."), Tok::Int(3)]);
        assert_eq!(toks("1.5"), [Tok::Double(1.5)]);
        assert_eq!(
            toks("'TSDB' != \"a\\\"b\""),
            [
                Tok::Str("TSDB".into()),
                Tok::Op("!="),
                Tok::Str("a\"b".into())
            ]
        );
        assert_eq!(
            toks("2023.01.02T00:00:01.5"),
            [Tok::Timestamp(
                i64::from(parse_date("2023.01.02").unwrap()) * MS_PER_DAY + 1500
            )]
        );
    }

    #[test]
    fn newlines_end_statements_only_outside_brackets() {
        assert_eq!(
            toks("f(1,\n 2) // comment\n\n x /* block\n */ = 1\n"),
            [
                Tok::Ident("f".into()),
                Tok::Op("("),
                Tok::Int(1),
                Tok::Op(","),
                Tok::Int(2),
                Tok::Op(")"),
                Tok::Newline,
                Tok::Ident("x".into()),
                Tok::Op("="),
                Tok::Int(1),
                Tok::Newline,
            ]
        );
    }

    #[test]
    fn bad_text_names_the_place() {
        let e = tokenize("x = 1\ny = @").unwrap_err().to_string();
        assert_eq!(
            e,
            "syntax error at line 2, column 5: unexpected character `@`"
        );
        let e = tokenize("d = 2023.02.30").unwrap_err().to_string();
        assert!(e.contains("`2023.02.30` is not a valid date"), "{e}");
        let e = tokenize("s = \"abc").unwrap_err().to_string();
        assert!(e.contains("unterminated string"), "{e}");
    }
}
