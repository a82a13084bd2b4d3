//! Making untrusted text safe to print on a terminal. Audit events, principal lists, token
//! claims and server error messages carry strings that came from unauthenticated input (a tool
//! name, a claimed client id, an AuthZEN subject); printed raw, an ESC/OSC/CSI sequence in one of
//! them could retitle the window, clear the screen, rewrite what was printed before it or hide
//! text, and a bidi override could make a line read differently from what it holds. [`safe`] is
//! the one function every human-readable output of such strings goes through; `--json` output
//! goes through [`json_text`], which writes the same characters as JSON `\u` escapes.

use std::borrow::Cow;

/// Whether a terminal could act on `c` instead of showing it: C0 controls (U+0000-U+001F,
/// newline and tab included: inside a value they would forge lines and columns), DEL, C1
/// controls (U+0080-U+009F, which some terminals read as CSI/OSC), the Unicode bidi controls
/// (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the line and paragraph
/// separators (U+2028, U+2029).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with every character a terminal could act on written as a visible Rust-style escape
/// (`\u{1b}`, `\u{202e}`); everything else, backslashes included, is unchanged. Borrows when
/// there is nothing to escape, so clean strings cost nothing.
pub fn safe(s: &str) -> Cow<'_, str> {
    escape_where(s, needs_escape, |c| format!("\\u{{{:x}}}", c as u32))
}

/// `s` with every character `escape_it` picks written as `written(c)`; borrowed when none is.
fn escape_where(
    s: &str,
    escape_it: impl Fn(char) -> bool,
    written: impl Fn(char) -> String,
) -> Cow<'_, str> {
    if !s.chars().any(&escape_it) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if escape_it(c) {
            out.push_str(&written(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text made of lines (the human output of a command), each line passed through [`safe`]: the
/// newlines between lines stay, anything active inside a line is escaped. The last line of
/// defence for output sinks; values should already have gone through [`safe`] on their own so
/// that a newline inside a value cannot forge a line.
pub fn safe_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.split('\n').map(safe).collect::<Vec<_>>().join("\n"))
}

/// JSON text (as serde_json writes it) with every character a terminal could act on that serde
/// leaves raw (DEL, C1 controls, bidi controls, line and paragraph separators) written as a JSON
/// `\uXXXX` escape: the same JSON value, safe on a terminal. Such characters can only occur
/// inside JSON strings, where the escape means the same character.
pub fn json_text(text: &str) -> Cow<'_, str> {
    escape_where(text, needs_escape_in_json, |c| {
        format!("\\u{:04x}", c as u32)
    })
}

/// [`needs_escape`] less what JSON text holds raw by design (newlines and indentation between
/// tokens; serde_json escapes every other C0 control inside strings).
fn needs_escape_in_json(c: char) -> bool {
    c != '\n' && c != ' ' && needs_escape(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_output_escapes_c1_and_bidi_controls_and_stays_the_same_json() {
        let v = serde_json::json!({"reason": "a\u{9b}31m\u{202e}b\u{2066}\u{1b}", "n": 1});
        let raw = serde_json::to_string_pretty(&v).unwrap();
        let safe = json_text(&raw);
        assert!(
            !safe.chars().any(|c| c != '\n' && needs_escape(c)),
            "{safe}"
        );
        assert!(
            safe.contains("\\u009b") && safe.contains("\\u202e"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
        assert!(matches!(json_text("{\"a\": 1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_are_visible_and_clean_text_is_borrowed() {
        let cases = [
            ("agent:coder", "agent:coder"),
            ("", ""),
            ("caf\u{e9} \u{1f600} \\u{1b}", "caf\u{e9} \u{1f600} \\u{1b}"),
            (
                "\u{1b}]0;pwned\u{7}\u{1b}[2J",
                "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J",
            ),
            ("a\nb\tc\rd\0", "a\\u{a}b\\u{9}c\\u{d}d\\u{0}"),
            (
                "\u{7f}\u{80}\u{9b}31m\u{9f}",
                "\\u{7f}\\u{80}\\u{9b}31m\\u{9f}",
            ),
            ("user:\u{202e}nimda\u{202c}", "user:\\u{202e}nimda\\u{202c}"),
            (
                "\u{200e}\u{200f}\u{2066}\u{2069}\u{61c}",
                "\\u{200e}\\u{200f}\\u{2066}\\u{2069}\\u{61c}",
            ),
            ("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}"),
        ];
        for (input, want) in cases {
            assert_eq!(safe(input), want, "{input:?}");
        }
        assert!(matches!(safe("plain text"), Cow::Borrowed(_)));
        // U+00A0 (no-break space) and U+200B (zero width space) are printable, not controls.
        assert_eq!(safe("a\u{a0}b\u{200b}"), "a\u{a0}b\u{200b}");
    }

    #[test]
    fn safe_lines_keeps_the_line_structure_and_escapes_within_lines() {
        assert_eq!(safe_lines("a\nb\n"), "a\nb\n");
        assert_eq!(safe_lines("ok\n\u{1b}[2J\tx\n"), "ok\n\\u{1b}[2J\\u{9}x\n");
        assert!(matches!(safe_lines("one\ntwo"), Cow::Borrowed(_)));
    }

    fn active(c: char) -> bool {
        ('\u{0}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || matches!(
                c,
                '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
    }

    proptest! {
        #[test]
        fn the_output_never_holds_a_control_or_bidi_character(s in any::<String>()) {
            let out = safe(&s);
            prop_assert!(!out.chars().any(active), "{:?} -> {:?}", s, out);
            prop_assert!(!safe_lines(&s).chars().any(|c| c != '\n' && active(c)));
        }

        #[test]
        fn text_without_controls_is_unchanged(s in "[^\\p{Cc}\u{61c}\u{200e}\u{200f}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{2028}\u{2029}]*") {
            prop_assert_eq!(safe(&s), s.as_str());
        }

        #[test]
        fn controls_mixed_into_text_are_all_escaped(
            parts in proptest::collection::vec(
                ("[a-z:]{0,5}", prop_oneof![
                    proptest::char::range('\u{0}', '\u{1f}'),
                    proptest::char::range('\u{7f}', '\u{9f}'),
                    proptest::char::range('\u{202a}', '\u{202e}'),
                ]),
                0..20,
            )
        ) {
            let mut s = String::new();
            for (text, c) in &parts {
                s.push_str(text);
                s.push(*c);
            }
            let out = safe(&s);
            prop_assert!(!out.chars().any(active));
            // Every control left a visible escape behind.
            let controls = s.chars().filter(|&c| active(c)).count();
            prop_assert_eq!(out.matches("\\u{").count(), controls);
        }
    }
}
