//! The write-ahead log: segment files of CRC-framed records (see the crate docs for the layout).

pub(crate) mod read;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod segment;
pub(crate) mod writer;
