//! What can go wrong with a script: it does not parse, it uses something outside the subset,
//! a function is misused, or the cluster refused or could not answer.

use crate::host::HostError;

/// Where in the script text (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The text is not DolphinDB script as the subset reads it.
    #[error("syntax error at {at}: {message}")]
    Syntax { message: String, at: Position },
    /// Valid DolphinDB, but outside what Shoal runs; `supported` lists what is.
    #[error("{construct} is not supported in Shoal's DolphinDB script; supported: {supported}")]
    Unsupported {
        construct: String,
        supported: String,
    },
    /// A supported function or operator used wrongly (bad arguments, unknown variable).
    #[error("{0}")]
    Invalid(String),
    /// The cluster refused or could not answer what the script asked of it.
    #[error(transparent)]
    Host(#[from] HostError),
}

impl ScriptError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ScriptError::Invalid(message.into())
    }
}

pub type Result<T, E = ScriptError> = std::result::Result<T, E>;
