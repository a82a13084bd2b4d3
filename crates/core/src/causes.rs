//! An error with its causes on one line, for logs and refusals that must say what went wrong
//! below the surface ("error sending request: client error (Connect): invalid peer certificate:
//! UnknownIssuer"), not only that something did.

/// `e` and each of its sources, joined with ": "; a cause whose text the line already holds is
/// not repeated (many errors print their source themselves).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_follow_the_error_once_each() {
        let inner = E("invalid peer certificate: UnknownIssuer", None);
        let mid = E("client error (Connect)", Some(Box::new(inner)));
        let top = E("error sending request", Some(Box::new(mid)));
        assert_eq!(
            with_causes(&top),
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        // A cause the error already prints is not said twice.
        let echoing = E("io: refused", Some(Box::new(E("refused", None))));
        assert_eq!(with_causes(&echoing), "io: refused");
        assert_eq!(with_causes(&E("alone", None)), "alone");
    }
}
