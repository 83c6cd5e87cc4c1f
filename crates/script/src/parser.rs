//! Tokens → statements. Precedence, lowest first: `or`, `and`, `not`, comparisons (`==` `=`
//! `!=` `<>` `<` `<=` `>` `>=` `like` `in`), `:` and `..`, `+ -`, `* /`, unary `-`, then calls
//! `f(x)`, partial application `f{x}` and method calls `x.f(y)`. DolphinDB syntax beyond the
//! subset (`def`, loops, `update`, `context by`, ...) is refused by name.

use crate::ast::{BinaryOp, Expr, Literal, Select, Stmt};
use crate::error::{Position, Result, ScriptError};
use crate::functions;
use crate::lexer::{Tok, Token, tokenize};

/// Words that start a statement of Shoal's SQL DDL inside a script.
const DDL_WORDS: [&str; 4] = ["create", "drop", "alter", "show"];

/// DolphinDB statements and clauses outside the subset, with how to name them in an error.
const UNSUPPORTED_WORDS: [(&str, &str); 16] = [
    ("def", "function definitions (`def`)"),
    ("for", "`for` loops"),
    ("while", "`while` loops"),
    ("do", "`do` loops"),
    ("if", "`if` statements"),
    ("try", "`try`/`catch`"),
    ("return", "`return`"),
    ("share", "`share`"),
    ("go", "`go`"),
    ("module", "modules"),
    ("use", "`use` (modules)"),
    (
        "insert",
        "`insert into` (append with the client API or Flight SQL bulk ingest)",
    ),
    ("update", "`update`"),
    ("delete", "`delete` (drop partitions with dropPartition)"),
    ("exec", "`exec`"),
    ("undef", "`undef`"),
];

const CLAUSE_UNSUPPORTED: [(&str, &str); 4] = [
    ("context", "`context by`"),
    ("pivot", "`pivot by`"),
    ("having", "`having`"),
    ("cgroup", "`cgroup by`"),
];

pub fn parse(text: &str) -> Result<Vec<Stmt>> {
    Parser {
        text,
        toks: tokenize(text)?,
        pos: 0,
        in_select: 0,
    }
    .script()
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Inside a select, a newline before a clause (`where`, `and`, ...) does not end it.
    in_select: usize,
}

fn unsupported(construct: impl Into<String>) -> ScriptError {
    ScriptError::Unsupported {
        construct: construct.into(),
        supported: functions::supported(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|t| &t.tok)
    }

    fn position(&self) -> Position {
        self.toks.get(self.pos).map_or_else(
            || {
                let line = self.text.matches('\n').count() + 1;
                let column = self
                    .text
                    .rsplit('\n')
                    .next()
                    .map_or(0, |l| l.chars().count())
                    + 1;
                Position { line, column }
            },
            |t| t.at,
        )
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the script".into(),
            Some(Tok::Newline) => "the end of the line".into(),
            Some(Tok::Op(op)) => format!("`{op}`"),
            Some(Tok::Ident(w)) => format!("`{w}`"),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::Symbols(s)) => format!("`{}", s.join("`")),
            Some(t) => format!("{t:?}"),
        }
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T> {
        Err(ScriptError::Syntax {
            message: message.into(),
            at: self.position(),
        })
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_op(&mut self, op: &str) -> Result<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            self.error(format!("expected `{op}`, found {}", self.found()))
        }
    }

    fn word_at(&self, n: usize) -> Option<String> {
        match self.peek_at(n) {
            Some(Tok::Ident(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        self.word_at(0).as_deref() == Some(w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.is_word(w);
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// Inside a select: whether `w` comes next, past any newlines (which it then skips).
    fn eat_clause(&mut self, w: &str) -> bool {
        if self.in_select == 0 {
            return self.eat_word(w);
        }
        let mut n = 0;
        while self.peek_at(n) == Some(&Tok::Newline) {
            n += 1;
        }
        if self.word_at(n).as_deref() == Some(w) {
            self.pos += n + 1;
            true
        } else {
            false
        }
    }

    fn at_statement_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Newline | Tok::Op(";")))
    }

    fn script(mut self) -> Result<Vec<Stmt>> {
        let mut stmts = Vec::new();
        loop {
            while matches!(self.peek(), Some(Tok::Newline | Tok::Op(";"))) {
                self.pos += 1;
            }
            if self.peek().is_none() {
                return Ok(stmts);
            }
            stmts.push(self.statement()?);
            if !self.at_statement_end() {
                return self.error(format!(
                    "expected the end of the statement, found {}",
                    self.found()
                ));
            }
        }
    }

    fn statement(&mut self) -> Result<Stmt> {
        let word = self.word_at(0).unwrap_or_default();
        let next_is_name = matches!(self.peek_at(1), Some(Tok::Ident(_) | Tok::Str(_)));
        if DDL_WORDS.contains(&word.as_str()) && next_is_name {
            return Ok(Stmt::Ddl(self.raw_statement()));
        }
        if let Some((_, what)) = UNSUPPORTED_WORDS.iter().find(|(w, _)| *w == word) {
            return Err(unsupported(*what));
        }
        if let (Some(Tok::Ident(name)), Some(Tok::Op("="))) = (self.peek(), self.peek_at(1)) {
            let name = name.clone();
            self.pos += 2;
            return Ok(Stmt::Assign {
                name,
                value: self.expr()?,
            });
        }
        Ok(Stmt::Expr(self.expr()?))
    }

    /// The text of a DDL statement: to `;` or the end of a line outside brackets, unless the
    /// next line goes on with `partitioned by` or a `,`.
    fn raw_statement(&mut self) -> String {
        let start = self.toks[self.pos].start;
        let mut end = start;
        while let Some(t) = self.toks.get(self.pos) {
            let continues = t.tok == Tok::Newline
                && (self.word_at(1).as_deref() == Some("partitioned")
                    || self.peek_at(1) == Some(&Tok::Op(",")));
            if matches!(t.tok, Tok::Op(";")) || (t.tok == Tok::Newline && !continues) {
                break;
            }
            end = t.end;
            self.pos += 1;
        }
        self.text[start..end].to_owned()
    }

    fn expr(&mut self) -> Result<Expr> {
        self.or()
    }

    /// `next (op next)*`, left-associative.
    fn fold(
        &mut self,
        next: fn(&mut Self) -> Result<Expr>,
        op: fn(&mut Self) -> Option<BinaryOp>,
    ) -> Result<Expr> {
        let mut left = next(self)?;
        while let Some(op) = op(self) {
            let right = next(self)?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr> {
        self.fold(Self::and, |p| {
            (p.eat_clause("or") || p.eat_op("||")).then_some(BinaryOp::Or)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        self.fold(Self::not, |p| {
            (p.eat_clause("and") || p.eat_op("&&")).then_some(BinaryOp::And)
        })
    }

    fn not(&mut self) -> Result<Expr> {
        if self.eat_word("not") || self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr> {
        const OPS: [(&str, BinaryOp); 8] = [
            ("==", BinaryOp::Eq),
            ("=", BinaryOp::Eq),
            ("!=", BinaryOp::Ne),
            ("<>", BinaryOp::Ne),
            ("<=", BinaryOp::Le),
            (">=", BinaryOp::Ge),
            ("<", BinaryOp::Lt),
            (">", BinaryOp::Gt),
        ];
        self.fold(Self::range_or_pair, |p| {
            if p.eat_word("like") {
                return Some(BinaryOp::Like);
            }
            if p.eat_word("in") {
                return Some(BinaryOp::In);
            }
            p.eat_any(&OPS)
        })
    }

    /// `a:b` and `a..b` over sums: `d..d+9` is ten days.
    fn range_or_pair(&mut self) -> Result<Expr> {
        let left = self.sum()?;
        if self.eat_op(":") {
            return Ok(Expr::Pair(Box::new(left), Box::new(self.sum()?)));
        }
        if self.eat_op("..") {
            return Ok(Expr::Range(Box::new(left), Box::new(self.sum()?)));
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr> {
        self.fold(Self::product, |p| {
            p.eat_any(&[("+", BinaryOp::Add), ("-", BinaryOp::Sub)])
        })
    }

    fn product(&mut self) -> Result<Expr> {
        self.fold(Self::unary, |p| {
            p.eat_any(&[("*", BinaryOp::Mul), ("/", BinaryOp::Div)])
        })
    }

    /// The first of `ops` that comes next, consumed.
    fn eat_any(&mut self, ops: &[(&str, BinaryOp)]) -> Option<BinaryOp> {
        ops.iter().find(|(o, _)| self.eat_op(o)).map(|(_, op)| *op)
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.eat_op("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr> {
        let mut e = self.primary()?;
        while self.is_op(".") {
            self.pos += 1;
            let at = self.position();
            let Some(Tok::Ident(name)) = self.peek().cloned() else {
                return self.error(format!(
                    "expected a method name after `.`, found {}",
                    self.found()
                ));
            };
            self.pos += 1;
            if !self.is_op("(") {
                return Err(unsupported(format!("member access `.{name}`")));
            }
            let mut args = vec![e];
            args.extend(self.arguments(")")?);
            e = Expr::Call { name, args, at };
        }
        Ok(e)
    }

    /// `(a, , c)` or `{a}` after the opening bracket was seen; empty places are `Void`.
    fn arguments(&mut self, close: &str) -> Result<Vec<Expr>> {
        self.pos += 1;
        let mut args = Vec::new();
        if self.eat_op(close) {
            return Ok(args);
        }
        loop {
            if self.is_op(",") || self.is_op(close) {
                args.push(Expr::Lit(Literal::Void));
            } else {
                args.push(self.expr()?);
            }
            if self.eat_op(close) {
                return Ok(args);
            }
            self.expect_op(",")?;
        }
    }

    fn primary(&mut self) -> Result<Expr> {
        let at = self.position();
        let Some(tok) = self.peek().cloned() else {
            return self.error("expected an expression, found the end of the script");
        };
        let lit = |l| Ok(Expr::Lit(l));
        self.pos += 1;
        match tok {
            Tok::Int(n) => lit(Literal::Int(n)),
            Tok::Double(d) => lit(Literal::Double(d)),
            Tok::Date(d) => lit(Literal::Date(d)),
            Tok::Timestamp(t) => lit(Literal::Timestamp(t)),
            Tok::Str(s) => lit(Literal::Str(s)),
            Tok::Symbols(mut names) if names.len() == 1 => lit(Literal::Symbol(names.remove(0))),
            Tok::Symbols(names) => Ok(Expr::Vector(
                names
                    .into_iter()
                    .map(|n| Expr::Lit(Literal::Symbol(n)))
                    .collect(),
            )),
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                self.pos -= 1;
                let items = self.arguments("]")?;
                if items.contains(&Expr::Lit(Literal::Void)) {
                    return self.error("a vector has an empty element");
                }
                Ok(Expr::Vector(items))
            }
            Tok::Op("*") => Ok(Expr::Star),
            Tok::Ident(name) => self.named(name, at),
            _ => {
                self.pos -= 1;
                self.error(format!("expected an expression, found {}", self.found()))
            }
        }
    }

    /// What follows a name: a call, a partial application, a select, or the name itself.
    fn named(&mut self, name: String, at: Position) -> Result<Expr> {
        match name.to_ascii_lowercase().as_str() {
            "select" => return self.select(),
            "true" => return Ok(Expr::Lit(Literal::Bool(true))),
            "false" => return Ok(Expr::Lit(Literal::Bool(false))),
            _ => {}
        }
        if self.is_op("(") {
            let args = self.arguments(")")?;
            return Ok(Expr::Call { name, args, at });
        }
        if self.is_op("{") {
            let args = self.arguments("}")?;
            return Ok(Expr::Partial { name, args, at });
        }
        Ok(Expr::Name { name, at })
    }

    fn select(&mut self) -> Result<Expr> {
        self.in_select += 1;
        let select = self.select_clauses();
        self.in_select -= 1;
        Ok(Expr::Select(Box::new(select?)))
    }

    fn select_clauses(&mut self) -> Result<Select> {
        let mut limit = None;
        if self.eat_word("top") {
            limit = Some(self.count("top")?);
        }
        let mut columns = Vec::new();
        loop {
            let e = self.expr()?;
            let alias = if self.eat_word("as") {
                let Some(Tok::Ident(a)) = self.peek().cloned() else {
                    return self.error(format!(
                        "expected a column name after `as`, found {}",
                        self.found()
                    ));
                };
                self.pos += 1;
                Some(a)
            } else {
                None
            };
            columns.push((e, alias));
            if !self.eat_op(",") {
                break;
            }
        }
        if !self.eat_clause("from") {
            return self.error(format!("expected `from` in select, found {}", self.found()));
        }
        let from = self.sum()?;
        let filter = if self.eat_clause("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_clause("group") {
            self.by()?;
            group_by = self.list(|p| p.expr())?;
        }
        let mut order_by = Vec::new();
        if self.eat_clause("order") {
            self.by()?;
            order_by = self.list(|p| {
                let e = p.expr()?;
                let desc = p.eat_word("desc");
                if !desc {
                    p.eat_word("asc");
                }
                Ok((e, desc))
            })?;
        }
        if self.eat_clause("limit") {
            limit = Some(self.count("limit")?);
        }
        for (w, what) in CLAUSE_UNSUPPORTED {
            if self.eat_clause(w) {
                return Err(unsupported(format!("{what} in select")));
            }
        }
        Ok(Select {
            columns,
            from,
            filter,
            group_by,
            order_by,
            limit,
        })
    }

    fn by(&mut self) -> Result<()> {
        if self.eat_word("by") {
            Ok(())
        } else {
            self.error(format!("expected `by`, found {}", self.found()))
        }
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let mut items = vec![item(self)?];
        while self.eat_op(",") {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn count(&mut self, what: &str) -> Result<u64> {
        match self.peek() {
            Some(Tok::Int(n)) if *n >= 0 => {
                let n = n.unsigned_abs();
                self.pos += 1;
                Ok(n)
            }
            _ => self.error(format!(
                "expected a row count after `{what}`, found {}",
                self.found()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Expr {
        Expr::Name {
            name: n.into(),
            at: Position { line: 1, column: 1 },
        }
    }

    /// Positions aside: compares the shapes only.
    fn strip(e: Expr) -> Expr {
        match e {
            Expr::Name { name: n, .. } => name(&n),
            Expr::Call { name, args, .. } => Expr::Call {
                name,
                args: args.into_iter().map(strip).collect(),
                at: Position { line: 1, column: 1 },
            },
            Expr::Partial { name, args, .. } => Expr::Partial {
                name,
                args: args.into_iter().map(strip).collect(),
                at: Position { line: 1, column: 1 },
            },
            Expr::Vector(v) => Expr::Vector(v.into_iter().map(strip).collect()),
            Expr::Binary { op, left, right } => Expr::Binary {
                op,
                left: Box::new(strip(*left)),
                right: Box::new(strip(*right)),
            },
            Expr::Pair(a, b) => Expr::Pair(Box::new(strip(*a)), Box::new(strip(*b))),
            Expr::Range(a, b) => Expr::Range(Box::new(strip(*a)), Box::new(strip(*b))),
            other => other,
        }
    }

    fn one(text: &str) -> Stmt {
        let mut stmts = parse(text).unwrap();
        assert_eq!(stmts.len(), 1, "{stmts:?}");
        match stmts.remove(0) {
            Stmt::Expr(e) => Stmt::Expr(strip(e)),
            Stmt::Assign { name, value } => Stmt::Assign {
                name,
                value: strip(value),
            },
            s => s,
        }
    }

    fn call(n: &str, args: Vec<Expr>) -> Expr {
        strip(Expr::Call {
            name: n.into(),
            args,
            at: Position { line: 1, column: 1 },
        })
    }

    fn sym(s: &str) -> Expr {
        Expr::Lit(Literal::Symbol(s.into()))
    }

    #[test]
    fn the_seeds_statements_parse() {
        assert_eq!(
            one("pnodeRun(getConfig{`chunkMetaDir})"),
            Stmt::Expr(call(
                "pnodeRun",
                vec![strip(Expr::Partial {
                    name: "getConfig".into(),
                    args: vec![sym("chunkMetaDir")],
                    at: Position { line: 1, column: 1 }
                })]
            ))
        );
        assert_eq!(
            one("pt = db.createPartitionedTable(tmp,`stock,`time,,`name,ALL)"),
            Stmt::Assign {
                name: "pt".into(),
                value: call(
                    "createPartitionedTable",
                    vec![
                        name("db"),
                        name("tmp"),
                        sym("stock"),
                        sym("time"),
                        Expr::Lit(Literal::Void),
                        sym("name"),
                        name("ALL")
                    ]
                )
            }
        );
        let Stmt::Assign { value, .. } =
            one("tmp = table(1:0,[`time,`name,`id],[TIMESTAMP,SYMBOL,INT])")
        else {
            panic!()
        };
        let Expr::Call { args, .. } = value else {
            panic!()
        };
        assert_eq!(
            args[0],
            Expr::Pair(
                Box::new(Expr::Lit(Literal::Int(1))),
                Box::new(Expr::Lit(Literal::Int(0)))
            )
        );
        assert_eq!(
            args[1],
            Expr::Vector(vec![sym("time"), sym("name"), sym("id")])
        );

        let Stmt::Expr(Expr::Select(s)) = one(
            r#"select * from rpc(getControllerAlias(), getClusterChunksStatus) where state != "COMPLETE""#,
        ) else {
            panic!()
        };
        assert_eq!(s.columns, [(Expr::Star, None)]);
        assert_eq!(
            strip(s.from),
            call(
                "rpc",
                vec![
                    call("getControllerAlias", vec![]),
                    name("getClusterChunksStatus")
                ]
            )
        );
        assert_eq!(
            s.filter.map(strip),
            Some(Expr::Binary {
                op: BinaryOp::Ne,
                left: Box::new(name("state")),
                right: Box::new(Expr::Lit(Literal::Str("COMPLETE".into())))
            })
        );
    }

    #[test]
    fn statements_split_on_newlines_and_semicolons_and_ddl_is_kept_as_text() {
        let stmts = parse(
            "x = 1; y = 2\n// note\ncreate database \"dfs://a\" partitioned by VALUE(1..3)\n\
             select count(*) from t\n  where x > 1\n  and y < 2\nz",
        )
        .unwrap();
        assert_eq!(stmts.len(), 5, "{stmts:?}");
        assert_eq!(
            stmts[2],
            Stmt::Ddl("create database \"dfs://a\" partitioned by VALUE(1..3)".into())
        );
        let Stmt::Expr(Expr::Select(s)) = &stmts[3] else {
            panic!()
        };
        assert!(matches!(
            s.filter,
            Some(Expr::Binary {
                op: BinaryOp::And,
                ..
            })
        ));
        let multi_line_ddl =
            parse("create table \"dfs://a\".t(\n x INT\n)\npartitioned by x\ny = 1").unwrap();
        assert_eq!(
            multi_line_ddl[0],
            Stmt::Ddl("create table \"dfs://a\".t(\n x INT\n)\npartitioned by x".into())
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (text, want) in [
            ("def f(x) { return x }", "function definitions (`def`)"),
            ("for (i in 1..3) { print(i) }", "`for` loops"),
            ("update t set x = 1", "`update`"),
            ("select x from t context by y", "`context by` in select"),
            ("t.col", "member access `.col`"),
        ] {
            let e = parse(text).unwrap_err();
            let ScriptError::Unsupported {
                construct,
                supported,
            } = &e
            else {
                panic!("{text}: {e}")
            };
            assert_eq!(construct, want);
            assert!(supported.contains("pnodeRun"), "{supported}");
        }
        let e = parse("x = (1").unwrap_err().to_string();
        assert_eq!(
            e,
            "syntax error at line 1, column 7: expected `)`, found the end of the script"
        );
        let e = parse("select from t").unwrap_err().to_string();
        assert!(
            e.contains("expected an expression, found `t`") || e.contains("from"),
            "{e}"
        );
    }
}
