//! An error's message with the errors under it, each left out when the text before already
//! says it: most of Shoal's errors name their source in their own message (which anyhow's
//! `{:#}` would print twice), and a transport error's message ("transport error") says
//! nothing without its sources.

use std::error::Error;

/// `message`, then each error of the `source` chain the text does not contain yet.
pub fn with_sources(message: String, mut source: Option<&(dyn Error + 'static)>) -> String {
    let mut text = message;
    while let Some(e) = source {
        let cause = e.to_string();
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Read {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Transport(#[source] std::io::Error);

    #[test]
    fn a_cause_the_message_names_is_not_repeated_and_one_it_does_not_is_added() {
        let gone = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let read = Read {
            path: "s",
            source: gone(),
        };
        assert_eq!(
            with_sources(read.to_string(), read.source()),
            format!("cannot read s: {}", gone())
        );
        let t = Transport(std::io::Error::other("connection closed"));
        assert_eq!(
            with_sources(t.to_string(), t.source()),
            "transport error: connection closed"
        );
        assert_eq!(
            with_sources(String::new(), Some(&t)),
            "transport error: connection closed"
        );
    }
}
