//! Runs a parsed script: statements in order, variables kept until the script ends (or, with
//! one `Interpreter` kept across calls, across scripts). Every function a script calls is
//! checked before the first statement runs, so a script with a typo changes nothing.

use std::collections::{HashMap, HashSet};

use arrow::array::RecordBatch;
use futures::future::BoxFuture;

use crate::answer::{self, Answer};
use crate::ast::{BinaryOp, Expr, Literal, Stmt};
use crate::error::{Result, ScriptError};
use crate::functions;
use crate::host::Host;
use crate::parser;
use crate::select;
use crate::sql;
use crate::value::Value;

/// Largest vector a range `a..b` may make.
const MAX_RANGE: i64 = 100_000;

/// DolphinDB constants a script may name: partition types, column types, keepDuplicates.
const CONSTANTS: [&str; 16] = [
    "VALUE",
    "RANGE",
    "HASH",
    "LIST",
    "COMPO",
    "BOOL",
    "INT",
    "LONG",
    "DOUBLE",
    "DATE",
    "TIMESTAMP",
    "SYMBOL",
    "STRING",
    "ALL",
    "FIRST",
    "LAST",
];

/// What functions reach: the host, and what the DDL they ran answered.
pub struct Session<'h> {
    pub host: &'h dyn Host,
    /// The `message` of each DDL statement run, in order: the answer of a script whose last
    /// statement has no value.
    pub messages: Vec<String>,
}

impl Session<'_> {
    /// Runs one DDL statement, keeping its message.
    pub async fn ddl(&mut self, statement: &str) -> Result<RecordBatch> {
        let answer = self.host.ddl(statement).await?;
        if answer.schema().column_with_name("message").is_some() {
            self.messages
                .extend(sql::column_text(&answer, "message")?.into_iter().flatten());
        }
        Ok(answer)
    }
}

pub struct Interpreter<'h> {
    session: Session<'h>,
    vars: HashMap<String, Value>,
}

impl<'h> Interpreter<'h> {
    pub fn new(host: &'h dyn Host) -> Self {
        Self {
            session: Session {
                host,
                messages: Vec::new(),
            },
            vars: HashMap::new(),
        }
    }

    /// Runs a script: its answer is the value of its last statement, or, when that has none
    /// (an assignment), the messages of the DDL it ran.
    pub async fn run(&mut self, text: &str) -> Result<Answer> {
        let stmts = parser::parse(text)?;
        // A variable may hold a function (`f = getConfig{`key}; f()`).
        let mut variables: HashSet<&str> = self.vars.keys().map(String::as_str).collect();
        variables.extend(stmts.iter().filter_map(|s| match s {
            Stmt::Assign { name, .. } => Some(name.as_str()),
            _ => None,
        }));
        for s in &stmts {
            check_functions(s, &variables)?;
        }
        self.session.messages.clear();
        let mut last = Value::Void;
        for s in &stmts {
            last = self.statement(s).await?;
        }
        answer::of(last, &self.session.messages)
    }

    async fn statement(&mut self, s: &Stmt) -> Result<Value> {
        match s {
            Stmt::Assign { name, value } => {
                let v = self.eval(value).await?;
                self.vars.insert(name.clone(), v);
                Ok(Value::Void)
            }
            Stmt::Expr(e) => self.eval(e).await,
            // A message is kept with the others (a script of several statements answers them
            // all); SHOW's table is the statement's value.
            Stmt::Ddl(text) => {
                let answer = self.session.ddl(text).await?;
                Ok(if answer.schema().column_with_name("message").is_some() {
                    Value::Void
                } else {
                    Value::Table(answer)
                })
            }
        }
    }

    pub(crate) fn var(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    pub(crate) fn eval<'a>(&'a mut self, e: &'a Expr) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            match e {
                Expr::Lit(l) => Ok(literal(l)),
                Expr::Name { name, .. } => self.name(name),
                Expr::Vector(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(self.eval(item).await?);
                    }
                    Ok(Value::Vector(out))
                }
                Expr::Range(a, b) => {
                    let (a, b) = (self.eval(a).await?, self.eval(b).await?);
                    range(a, b)
                }
                Expr::Pair(a, b) => Ok(Value::Pair(
                    Box::new(self.eval(a).await?),
                    Box::new(self.eval(b).await?),
                )),
                Expr::Call { name, args, .. } => {
                    let (name, mut values) = match self.vars.get(name) {
                        Some(Value::Function { name, bound }) => (name.clone(), bound.clone()),
                        _ => (name.clone(), Vec::new()),
                    };
                    for a in args {
                        values.push(self.eval(a).await?);
                    }
                    functions::call(&mut self.session, &name, values).await
                }
                Expr::Partial { name, args, .. } => {
                    let mut bound = Vec::with_capacity(args.len());
                    for a in args {
                        bound.push(self.eval(a).await?);
                    }
                    Ok(Value::Function {
                        name: name.clone(),
                        bound,
                    })
                }
                Expr::Binary { op, left, right } => {
                    let (l, r) = (self.eval(left).await?, self.eval(right).await?);
                    binary(*op, l, r)
                }
                Expr::Not(e) => match self.eval(e).await? {
                    Value::Bool(b) => Ok(Value::Bool(!b)),
                    v => Err(ScriptError::invalid(format!("`not` of {}", v.kind()))),
                },
                Expr::Neg(e) => match self.eval(e).await? {
                    Value::Int(n) => Ok(Value::Int(-n)),
                    Value::Double(d) => Ok(Value::Double(-d)),
                    v => Err(ScriptError::invalid(format!("`-` of {}", v.kind()))),
                },
                Expr::Star => Err(ScriptError::invalid(
                    "`*` stands for every column only in select and count(*)",
                )),
                Expr::Select(s) => select::run(self, s).await,
            }
        })
    }

    /// A variable, else a function named as a value, else a constant.
    fn name(&self, name: &str) -> Result<Value> {
        if let Some(v) = self.vars.get(name) {
            return Ok(v.clone());
        }
        if functions::is_function(name) {
            return Ok(Value::Function {
                name: name.to_owned(),
                bound: Vec::new(),
            });
        }
        if CONSTANTS.contains(&name) {
            return Ok(Value::Constant(name.to_owned()));
        }
        Err(ScriptError::invalid(format!(
            "`{name}` is not a variable, a function or a constant this script knows"
        )))
    }
}

/// Refuses a statement that calls a function outside the subset, before anything runs.
fn check_functions(s: &Stmt, variables: &HashSet<&str>) -> Result<()> {
    let walk = |e: &Expr| {
        walk_calls(e, &|name: &str| {
            if functions::is_function(name) || variables.contains(name) {
                Ok(())
            } else {
                Err(ScriptError::Unsupported {
                    construct: format!("function `{name}`"),
                    supported: functions::supported(),
                })
            }
        })
    };
    match s {
        Stmt::Assign { value: e, .. } | Stmt::Expr(e) => walk(e),
        Stmt::Ddl(_) => Ok(()),
    }
}

/// Calls `check` with the name of every function `e` calls or applies partially.
fn walk_calls(e: &Expr, check: &dyn Fn(&str) -> Result<()>) -> Result<()> {
    let walk = |e: &Expr| walk_calls(e, check);
    match e {
        Expr::Call { name, args, .. } | Expr::Partial { name, args, .. } => {
            check(name)?;
            args.iter().try_for_each(walk)
        }
        Expr::Vector(items) => items.iter().try_for_each(walk),
        Expr::Range(a, b) | Expr::Pair(a, b) => walk(a).and(walk(b)),
        Expr::Binary { left, right, .. } => walk(left).and(walk(right)),
        Expr::Not(e) | Expr::Neg(e) => walk(e),
        // A select's own clauses are SQL functions, checked when it is translated.
        Expr::Select(s) => walk(&s.from),
        Expr::Lit(_) | Expr::Name { .. } | Expr::Star => Ok(()),
    }
}

pub(crate) fn literal(l: &Literal) -> Value {
    match l {
        Literal::Int(n) => Value::Int(*n),
        Literal::Double(d) => Value::Double(*d),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Str(s) => Value::Str(s.clone()),
        Literal::Symbol(s) => Value::Symbol(s.clone()),
        Literal::Date(d) => Value::Date(*d),
        Literal::Timestamp(t) => Value::Timestamp(*t),
        Literal::Void => Value::Void,
    }
}

/// `a..b`: every integer or date from a to b.
fn range(a: Value, b: Value) -> Result<Value> {
    let (from, to, make): (i64, i64, fn(i64) -> Value) = match (&a, &b) {
        (Value::Int(x), Value::Int(y)) => (*x, *y, Value::Int),
        (Value::Date(x), Value::Date(y)) => (i64::from(*x), i64::from(*y), |d| {
            Value::Date(i32::try_from(d).unwrap_or_default())
        }),
        _ => {
            return Err(ScriptError::invalid(format!(
                "a range goes from an integer to an integer or a date to a date, not {} to {}",
                a.kind(),
                b.kind()
            )));
        }
    };
    if to < from || to - from >= MAX_RANGE {
        return Err(ScriptError::invalid(format!(
            "range {a}..{b} must go up and hold at most {MAX_RANGE} values"
        )));
    }
    Ok(Value::Vector((from..=to).map(make).collect()))
}

/// Operators on scalars: arithmetic on numbers (and a date plus days), comparisons of values
/// of one kind, `and`/`or` on booleans.
fn binary(op: BinaryOp, l: Value, r: Value) -> Result<Value> {
    use BinaryOp::*;
    let bad = || ScriptError::invalid(format!("{op:?} of {} and {}", l.kind(), r.kind()));
    let num = |v: &Value| match v {
        Value::Int(n) => Some(*n as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    };
    Ok(match (op, &l, &r) {
        (And, Value::Bool(a), Value::Bool(b)) => Value::Bool(*a && *b),
        (Or, Value::Bool(a), Value::Bool(b)) => Value::Bool(*a || *b),
        (Add, Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or_else(bad)?),
        (Sub, Value::Int(a), Value::Int(b)) => Value::Int(a.checked_sub(*b).ok_or_else(bad)?),
        (Mul, Value::Int(a), Value::Int(b)) => Value::Int(a.checked_mul(*b).ok_or_else(bad)?),
        (Add, Value::Date(d), Value::Int(n)) | (Add, Value::Int(n), Value::Date(d)) => {
            Value::Date(i32::try_from(i64::from(*d) + n).map_err(|_| bad())?)
        }
        (Sub, Value::Date(d), Value::Int(n)) => {
            Value::Date(i32::try_from(i64::from(*d) - n).map_err(|_| bad())?)
        }
        (Add | Sub | Mul | Div, _, _) => {
            let (a, b) = (num(&l).ok_or_else(bad)?, num(&r).ok_or_else(bad)?);
            Value::Double(match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                _ => a / b,
            })
        }
        (Eq | Ne | Lt | Le | Gt | Ge, _, _) => {
            let ord = match (&l, &r) {
                (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
                (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
                (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                (a, b) if a.text().is_some() && b.text().is_some() => Some(a.text().cmp(&b.text())),
                _ => num(&l).zip(num(&r)).and_then(|(a, b)| a.partial_cmp(&b)),
            }
            .ok_or_else(bad)?;
            Value::Bool(match op {
                Eq => ord.is_eq(),
                Ne => ord.is_ne(),
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        _ => return Err(bad()),
    })
}
