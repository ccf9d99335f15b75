//! Error messages quoting what others said: an error and its causes in one line, for errors whose own message hides
//! the cause (reqwest says "error sending request" and keeps "connection refused" or "invalid peer certificate:
//! UnknownIssuer" in its sources), and bounded excerpts of a server's answer.

use std::error::Error;

/// `error` and each of its sources, joined by `: `, leaving out a cause its parent already quotes.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most the first `limit` characters of `text` (a server's answer quoted in an error).
pub fn excerpt(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(&'static str, #[source] Option<Box<Layer>>);

    #[test]
    fn causes_follow_their_error_once() {
        let root = Layer("connection refused", None);
        let middle = Layer("tcp connect error", Some(Box::new(root)));
        let top = Layer("error sending request", Some(Box::new(middle)));
        assert_eq!(error_chain(&top), "error sending request: tcp connect error: connection refused");
        let quoting = Layer("failed: connection refused", Some(Box::new(Layer("connection refused", None))));
        assert_eq!(error_chain(&quoting), "failed: connection refused");
    }

    #[test]
    fn excerpts_stop_at_a_character_boundary() {
        assert_eq!(excerpt("héllo", 2), "hé");
        assert_eq!(excerpt("hé", 5), "hé");
    }
}
