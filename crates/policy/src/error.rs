//! Errors of loading and evaluating policies.

/// Why a policy could not be loaded: the file, the line when known, and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file, line.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct LoadError {
    /// The file (relative to the policy directory) or directory at fault.
    pub file: String,
    /// Line and column, when the problem has a place.
    pub line: Option<(u32, u32)>,
    /// What is wrong, and how to fix it where that is clear.
    pub message: String,
}

impl LoadError {
    /// A problem with a whole file or directory.
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }

    /// Turns a regorus error (`\n--> file:line:col\n ... \nerror: message`) into one line,
    /// falling back to `file` when the error has no location.
    pub fn from_regorus(file: &str, e: &dyn std::fmt::Display) -> Self {
        let text = e.to_string();
        let located = text.lines().find_map(|l| {
            let loc = l.trim().strip_prefix("--> ")?;
            let mut parts = loc.rsplitn(3, ':');
            let col = parts.next()?.parse().ok()?;
            let line = parts.next()?.parse().ok()?;
            Some((parts.next()?.to_string(), (line, col)))
        });
        let message = text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map(str::to_string)
            .unwrap_or_else(|| {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        match located {
            Some((f, line)) => LoadError {
                file: f,
                line: Some(line),
                message,
            },
            None => LoadError::file(file, message),
        }
    }
}

/// Why an evaluation produced no value. Callers deciding access turn this into a deny.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The query is not a reference this engine can evaluate.
    #[error("invalid query {0:?}: write a reference such as data.mandate.authz.decision")]
    BadQuery(String),
    /// Evaluation failed (a builtin error, conflicting values, the time limit...).
    #[error("evaluation of {query} failed: {message}")]
    Failed {
        /// The query.
        query: String,
        /// regorus's reason, on one line.
        message: String,
    },
}

/// Puts a multi-line regorus error on one line.
pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let l = LoadError::from_regorus("", &text);
    match l.line {
        Some((line, col)) => format!("{}:{line}:{col}: {}", l.file, l.message),
        None => l.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regorus_errors_become_one_line_with_file_and_line() {
        let raw = "\n--> policies/bad.rego:5:1\n  |\n5 | }\n  | ^\nerror: expecting expression";
        let e = LoadError::from_regorus("x", &raw);
        assert_eq!(e.to_string(), "policies/bad.rego:5:1: expecting expression");
        let e = LoadError::from_regorus("data.json", &"merge conflict");
        assert_eq!(e.to_string(), "data.json: merge conflict");
    }
}
