//! The syntax tree of a script: statements of expressions, and `select` queries.

use crate::error::Position;

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `name = expr`.
    Assign {
        name: String,
        value: Expr,
    },
    Expr(Expr),
    /// A statement of Shoal's SQL DDL (`CREATE DATABASE ...`), run as it is written.
    Ddl(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Double(f64),
    Bool(bool),
    Str(String),
    /// `` `a ``.
    Symbol(String),
    Date(i32),
    Timestamp(i64),
    /// An argument left out: the empty place in `f(a,,c)`.
    Void,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Lit(Literal),
    /// A variable, a function named as a value (`pnodeRun(version)`) or a constant (`VALUE`).
    Name {
        name: String,
        at: Position,
    },
    /// `[a, b]`, or `` `a`b ``.
    Vector(Vec<Expr>),
    /// `a..b`: every date or integer from a to b.
    Range(Box<Expr>, Box<Expr>),
    /// `a:b`.
    Pair(Box<Expr>, Box<Expr>),
    /// `f(args)`; `x.f(args)` is `f(x, args)`.
    Call {
        name: String,
        args: Vec<Expr>,
        at: Position,
    },
    /// `f{args}`: `f` with its first arguments fixed.
    Partial {
        name: String,
        args: Vec<Expr>,
        at: Position,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    /// `*` in `select *` and `count(*)`.
    Star,
    Select(Box<Select>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Like,
    In,
}

/// `select columns from source [where cond] [group by ...] [order by ...] [limit n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    /// Each with its `as` name.
    pub columns: Vec<(Expr, Option<String>)>,
    pub from: Expr,
    pub filter: Option<Expr>,
    pub group_by: Vec<Expr>,
    /// Each with `true` for descending.
    pub order_by: Vec<(Expr, bool)>,
    pub limit: Option<u64>,
}
