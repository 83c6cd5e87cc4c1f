//! The one error kind callers act on differently: "could not reach the data now".

use std::error::Error;
use std::fmt;

use datafusion::error::DataFusionError;

/// A chunk (or the controllers) could not be reached: the same query may work later or on
/// another node. Flight SQL answers it with `UNAVAILABLE`; other errors are the query's fault.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Unavailable {}

pub(crate) fn unavailable(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(Unavailable(message)))
}

/// Whether `e` comes from an [`Unavailable`], however DataFusion wrapped it on the way.
pub fn is_unavailable(e: &DataFusionError) -> bool {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<Unavailable>() {
            return true;
        }
        cur = err.source();
    }
    false
}
