//! Values that are credentials whatever key they sit under: a compact JWS anywhere in the text,
//! an `Authorization`-style value (`Bearer ...`, `Basic ...`), a URL carrying a password or a
//! secret-named query parameter, a PEM private key. The audit log records such values only as
//! HMACs, and free text (reasons, resources) has them removed. A floor under the policy's own
//! redaction, not a replacement for it: a secret with no recognisable shape under a harmless key
//! is the caller's to mark (docs/policy.md).

use std::borrow::Cow;

use crate::jws::scrub_tokens;

/// Query parameter names (compared without `_`, `-`, case) whose values are credentials.
const SECRET_PARAMS: [&str; 14] = [
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "token",
    "apikey",
    "key",
    "password",
    "pass",
    "pwd",
    "secret",
    "clientsecret",
    "sig",
    "signature",
    "xamzsignature",
];

/// Prefixes of well-known credential formats (as secret scanners know them), with the shortest
/// length a real credential of that format has, so that a word merely starting like one is not
/// taken for it, and whether the prefix is distinctive enough to be looked for inside a word
/// (`x_ghp_...`, `tokenghp_...`): `sk-`, `hf_` and `SG.` are not (`task-...`, `shelf_...`).
const KNOWN_PREFIXES: [(&str, usize, bool); 22] = [
    ("ghp_", 36, true),
    ("gho_", 36, true),
    ("ghu_", 36, true),
    ("ghs_", 36, true),
    ("ghr_", 36, true),
    ("github_pat_", 40, true),
    ("glpat-", 26, true),
    ("xoxb-", 20, true),
    ("xoxp-", 20, true),
    ("xoxa-", 20, true),
    ("xoxr-", 20, true),
    ("xoxs-", 20, true),
    ("sk-", 32, false),
    ("sk_live_", 24, true),
    ("rk_live_", 24, true),
    ("AKIA", 20, true),
    ("ASIA", 20, true),
    ("AIza", 39, true),
    ("npm_", 40, true),
    ("hf_", 34, false),
    ("pypi-", 60, true),
    ("SG.", 60, false),
];

/// `Authorization` schemes whose credentials follow them.
const SCHEMES: [&str; 5] = ["bearer", "basic", "dpop", "token", "digest"];

/// Whether `text` is too short and too plain to hold anything the credential checks here find
/// (or a control character): fewer than 16 bytes, each a letter, digit or one of `_ : / . -`. So
/// no space (no word after a scheme), no `@` (URL password), `?` (query) or `=` (assignment),
/// shorter than every known credential format (20) and than the shortest compact JWS whose header
/// names an `alg` (`eyJhbGciOiIifQ..x`, 17). Most names, labels and argument values in an audit
/// event are such words, and skip the scans; property tests hold the shortcut to them.
pub fn is_plain_short_word(text: &str) -> bool {
    text.len() < 16
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'/' | b'.' | b'-'))
}

/// Text fit for a log line or an audit event: credentials removed ([`scrub_secrets_with`]) and
/// control or bidirectional-override characters replaced by U+FFFD (they would rewrite a
/// terminal or reorder what a reader sees).
pub fn clean_text_with<'a>(text: &'a str, is_secret_name: &dyn Fn(&str) -> bool) -> Cow<'a, str> {
    if is_plain_short_word(text) {
        return Cow::Borrowed(text);
    }
    clean_text_scanned(text, is_secret_name)
}

/// [`clean_text_with`] without the shortcut.
fn clean_text_scanned<'a>(text: &'a str, is_secret_name: &dyn Fn(&str) -> bool) -> Cow<'a, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    match scrub_secrets_with(text, is_secret_name) {
        Cow::Borrowed(t) if !t.contains(unsafe_char) => Cow::Borrowed(t),
        t => Cow::Owned(t.replace(unsafe_char, "\u{fffd}")),
    }
}

/// Whether `s`, as a whole value, is or carries a credential.
pub fn looks_like_secret_value(s: &str) -> bool {
    if is_plain_short_word(s) {
        return false;
    }
    looks_like_secret_value_scanned(s)
}

/// [`looks_like_secret_value`] without the shortcut.
fn looks_like_secret_value_scanned(s: &str) -> bool {
    if matches!(scrub_tokens(s), Cow::Owned(_)) {
        return true;
    }
    let t = s.trim();
    // A scheme followed by a credential, however they are spaced: at the start (`Bearer x`),
    // after `Authorization:`, or anywhere when what follows is shaped like one (long, or with a
    // digit), so that prose (`a bearer of news`) stays readable.
    let ws: Vec<&str> = words(t).map(|(_, w)| w).collect();
    for (i, pair) in ws.windows(2).enumerate() {
        let (scheme, next) = (pair[0], pair[1]);
        if ends_with_scheme(scheme)
            && (i == 0
                || ws[i - 1].eq_ignore_ascii_case("authorization:")
                || next.len() >= 16
                || next.bytes().any(|b| b.is_ascii_digit()))
        {
            return true;
        }
    }
    if t.contains("-----BEGIN") && t.contains("PRIVATE KEY") {
        return true;
    }
    if t.contains("hooks.slack.com/services/") {
        return true;
    }
    words(t).any(|(_, w)| url_password(w) || secret_query(w) || has_known_credential(w))
}

/// Whether a word holds a credential of a well-known format ([`KNOWN_PREFIXES`]): a run of
/// token characters that starts with a known prefix, or has a distinctive one glued inside it
/// (`x_ghp_...`), the credential being the prefix and the rest of the run. Either way it must be
/// at least as long as the format's shortest credential; glued inside a word its body must also
/// hold a digit, as random credentials do and long `snake_case` names (`backup_ghp_tokens_...`,
/// `SLOVAKIA_...`) do not.
fn has_known_credential(w: &str) -> bool {
    // Most words (names, scopes, paths) are shorter than any credential and cost one comparison.
    w.split(|c: char| !is_token_char(c))
        .any(|tok| tok.len() >= SHORTEST_CREDENTIAL && credential_in(tok))
}

/// The shortest credential of any [`KNOWN_PREFIXES`] format.
const SHORTEST_CREDENTIAL: usize = {
    let mut i = 0;
    let mut min = usize::MAX;
    while i < KNOWN_PREFIXES.len() {
        if KNOWN_PREFIXES[i].1 < min {
            min = KNOWN_PREFIXES[i].1;
        }
        i += 1;
    }
    min
};

/// [`has_known_credential`] for one run of token characters, in one pass over its positions
/// (the run is ASCII, so every position is a character boundary).
fn credential_in(tok: &str) -> bool {
    let at_start = KNOWN_PREFIXES
        .iter()
        .any(|&(p, min, _)| tok.starts_with(p) && credential_from(tok, p, min, false));
    let bytes = tok.as_bytes();
    at_start
        || (1..=tok.len() - SHORTEST_CREDENTIAL).any(|at| {
            // Most positions cannot start a glued prefix (hex digests never can): one table
            // lookup instead of a comparison per prefix.
            GLUED_FIRST_BYTES[usize::from(bytes[at])] && {
                let rest = &tok[at..];
                KNOWN_PREFIXES.iter().any(|&(p, min, glued)| {
                    glued && rest.starts_with(p) && credential_from(rest, p, min, true)
                })
            }
        })
}

/// Which bytes start a prefix of [`KNOWN_PREFIXES`] that is looked for inside words.
const GLUED_FIRST_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < KNOWN_PREFIXES.len() {
        if KNOWN_PREFIXES[i].2 {
            t[KNOWN_PREFIXES[i].0.as_bytes()[0] as usize] = true;
        }
        i += 1;
    }
    t
};

/// The characters credentials of the known formats are made of.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Whether `rest`, a run of token characters starting with `prefix`, is long enough to be a
/// credential of that format (and, `glued` inside a word, has a digit in its body).
fn credential_from(rest: &str, prefix: &str, min: usize, glued: bool) -> bool {
    rest.len() >= min && (!glued || rest[prefix.len()..].bytes().any(|b| b.is_ascii_digit()))
}

/// `name=value` where `is_secret_name(name)`: the value's start in `w`. (Not `name:value`:
/// that is how scopes, principals and resources are written, `secrets:read` among them.)
fn secret_assignment(w: &str, is_secret_name: &dyn Fn(&str) -> bool) -> Option<usize> {
    let at = w.find('=')?;
    let (name, value) = (&w[..at], &w[at + 1..]);
    let name = name.trim_matches(|c: char| !c.is_alphanumeric());
    (!name.is_empty() && !value.is_empty() && !value.starts_with("//") && is_secret_name(name))
        .then_some(at + 1)
}

/// Free text with every credential-looking word replaced by `[removed]` (JWS runs by
/// `[token removed]`), for reasons and resources that echo request values: the word after an
/// `Authorization` scheme, URLs with a password or a credential parameter, well-known
/// credential formats, the value of `name=value` when `is_secret_name(name)`, and the word after
/// a secret name ending in `:` or `=` (`password: x`).
pub fn scrub_secrets_with<'a>(
    text: &'a str,
    is_secret_name: &dyn Fn(&str) -> bool,
) -> Cow<'a, str> {
    let text = scrub_tokens(text);
    let verdict = |w: &str, prev_scheme: bool| -> Option<usize> {
        if prev_scheme && credential_word(w)
            || url_password(w)
            || secret_query(w)
            || has_known_credential(w)
        {
            Some(0)
        } else {
            secret_assignment(w, is_secret_name)
        }
    };
    // Each removal: where it starts and where its word ends.
    let mut removals: Vec<(usize, usize)> = Vec::new();
    let mut prev_scheme = false;
    for (start, w) in words(&text) {
        if let Some(at) = verdict(w, prev_scheme) {
            removals.push((start + at, start + w.len()));
        }
        prev_scheme = introduces_credential(w, is_secret_name);
    }
    if removals.is_empty() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (from, to) in removals {
        out.push_str(&text[last..from]);
        out.push_str("[removed]");
        last = to;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// Whether `c` separates words: any whitespace (tabs, newlines, no-break spaces) and the
/// zero-width characters, so that `Bearer` and its credential are two words however they are
/// set apart.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}')
}

/// The words of `text` (runs between separators, never empty), each with its byte offset.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(is_separator)
        .scan(0usize, |at, w| {
            let start = *at;
            // The separator after `w` (if any) is one character; its width is found in `text`.
            let sep = text[start + w.len()..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
            *at = start + w.len() + sep;
            Some((start, w))
        })
        .filter(|(_, w)| !w.is_empty())
}

/// Whether the word after `w` is a credential: `w` is an `Authorization` scheme (`Bearer`), or a
/// secret name ending in `:` or `=` (`password:`).
fn introduces_credential(w: &str, is_secret_name: &dyn Fn(&str) -> bool) -> bool {
    if ends_with_scheme(w) {
        return true;
    }
    w.strip_suffix([':', '='])
        .map(|n| n.trim_matches(|c: char| !c.is_alphanumeric()))
        .is_some_and(|n| !n.is_empty() && is_secret_name(n))
}

/// Whether the word ends in an `Authorization` scheme name: its last run of letters is one, so
/// that `Bearer` counts wherever it was glued (`tools/Bearer`, `"Bearer`, `demo/bearer`).
fn ends_with_scheme(w: &str) -> bool {
    let w = w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let letters = w.len() - w.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
    let run = &w[w.len() - letters..];
    SCHEMES.iter().any(|x| run.eq_ignore_ascii_case(x))
}

/// A word that can be the credential after a scheme name (not one already removed).
fn credential_word(w: &str) -> bool {
    // Nor the second word of a marker this scrubbing wrote (`[token removed]`).
    !w.is_empty() && !w.starts_with('[') && !w.starts_with("removed]")
}

/// `scheme://user:password@host...`
fn url_password(w: &str) -> bool {
    let Some((_, rest)) = w.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A query string (after `?`) with a credential-named parameter holding a value.
fn secret_query(w: &str) -> bool {
    let Some((_, query)) = w.split_once('?') else {
        return false;
    };
    query.split(['&', ';']).any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        !value.is_empty() && SECRET_PARAMS.contains(&name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first, direct statement of [`has_known_credential`] (a substring search per prefix),
    /// which the one-pass version must agree with.
    fn has_known_credential_reference(w: &str) -> bool {
        w.split(|c: char| !is_token_char(c)).any(|tok| {
            KNOWN_PREFIXES.iter().any(|&(p, min, glued)| {
                (tok.starts_with(p) && credential_from(tok, p, min, false))
                    || glued
                        && tok
                            .match_indices(p)
                            .any(|(at, _)| at > 0 && credential_from(&tok[at..], p, min, true))
            })
        })
    }

    proptest! {
        #[test]
        fn plain_short_words_are_never_secret_values(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("eyJhbGciOiIifQ".to_string()), Just("ghp_".to_string()),
                    Just("AKIA".to_string()), "[A-Za-z0-9_:/.-]{0,6}",
                ],
                0..4,
            )
        ) {
            let w: String = parts.concat();
            if is_plain_short_word(&w) {
                prop_assert!(!looks_like_secret_value_scanned(&w), "{:?}", w);
                let any_name = |_: &str| true;
                prop_assert!(matches!(clean_text_scanned(&w, &any_name), Cow::Borrowed(_)), "{:?}", w);
            }
        }

        #[test]
        fn one_pass_credential_search_agrees_with_the_reference(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("ghp_".to_string()), Just("sk-".to_string()), Just("AKIA".to_string()),
                    Just("github_pat_".to_string()), Just("xoxb-".to_string()), Just("SG.".to_string()),
                    Just("hf_".to_string()), Just("pypi-".to_string()), Just(" ".to_string()),
                    Just("/".to_string()), Just("é".to_string()),
                    "[a-zA-Z0-9_.-]{0,24}", "[a-zA-Z0-9]{1,2}", "[a-z0-9]{30,64}",
                ],
                0..8,
            )
        ) {
            let w: String = parts.concat();
            prop_assert_eq!(has_known_credential(&w), has_known_credential_reference(&w), "{:?}", w);
        }
    }

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln";

    #[test]
    fn credentials_are_recognised_by_their_shape() {
        for s in [
            JWT,
            &format!("prefix {JWT} suffix"),
            "Bearer abc.def",
            "basic dXNlcjpwYXNz",
            "postgres://u:PW@db.example/app",
            "https://api.example/v1/items?api_key=XYZ",
            "/v1/items?page=2&access_token=abc",
            "https://s3.example/o?X-Amz-Signature=abcd",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "key AKIA0123456789ABCDEF in text",
            "xoxb-1234567890-abcdefghijkl",
            "sk-proj-0123456789abcdefghij0123456789",
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            assert!(looks_like_secret_value(s), "{s}");
        }
    }

    #[test]
    fn a_scheme_and_its_credential_are_found_however_they_are_spaced() {
        for s in [
            "Bearer SMUGGLEAUTHZ",
            "Bearer\tX",
            "Bearer\nX",
            "Bearer\u{a0}X",
            "Bearer\u{200b}X",
            "Bearer  X",
            "Authorization: Bearer X",
            "authorization:\tdpop X",
            "send it as Bearer abc123",
            "header: Basic dXNlcjpwYXNzd29yZA==",
        ] {
            assert!(looks_like_secret_value(s), "{s:?}");
        }
        let no_name = |_: &str| false;
        for s in ["tools/Bearer\tSMUGGLE", "demo/bearer\u{a0}SMUGGLE7"] {
            assert!(looks_like_secret_value(s), "{s:?}");
        }
        for (text, kept) in [
            ("demo/Bearer  SMUGGLE1", "demo/Bearer  [removed]"),
            (
                "tool \"Bearer\tSMUGGLE2\" of demo",
                "tool \"Bearer\t[removed] of demo",
            ),
            (
                "Method not found: tools/Bearer\u{a0}SMUGGLE3",
                "Method not found: tools/Bearer\u{a0}[removed]",
            ),
            (
                "says \"Bearer  SMUGGLE4\" but",
                "says \"Bearer  [removed] but",
            ),
            ("Bearer  SMUGGLE1 rest", "Bearer  [removed] rest"),
            ("x Bearer\tSMUGGLE1", "x Bearer\t[removed]"),
            ("Bearer\u{a0}SMUGGLE1", "Bearer\u{a0}[removed]"),
            ("a\nBearer\nSMUGGLE1\nb", "a\nBearer\n[removed]\nb"),
        ] {
            assert_eq!(scrub_secrets_with(text, &no_name), kept, "{text:?}");
        }
    }

    #[test]
    fn ordinary_values_are_not_secrets() {
        for s in [
            "/repo/src/main.rs",
            "https://github.com/acme/app/pull/7",
            "postgres://db.example/app",
            "https://user@host.example/x",
            "/v1/items?page=2&sort=name",
            "/v1/items?key=",
            "Bearer",
            "a bearer of news",
            "1.2.3",
            "hello world",
            "ghp_short",
            "AKIA",
            "sk-learn",
            "task-0123456789abcdefghij0123456789",
        ] {
            assert!(!looks_like_secret_value(s), "{s}");
        }
    }

    const GHP: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    #[test]
    fn a_known_credential_glued_to_a_word_is_recognised() {
        for s in [
            format!("x_{GHP}"),
            format!("token{GHP}"),
            format!("GITHUB_TOKEN={GHP}"),
            format!("ghp_x_{GHP}"),
            "keyAKIA0123456789ABCDEF".to_string(),
            "my-glpat-0123456789abcdefghij".to_string(),
            "slack_xoxb-1234567890-abcdefghijkl".to_string(),
        ] {
            assert!(looks_like_secret_value(&s), "{s}");
            assert_eq!(shapes(&format!("sent {s} ok")), "sent [removed] ok", "{s}");
        }
    }

    #[test]
    fn a_word_merely_containing_a_prefix_is_not_a_credential() {
        for s in [
            "my_ghp_notes",
            "tokenghp_short",
            "x_ghp_0123456789abcd",
            "backup_ghp_tokens_rotation_schedule_for_next_quarter",
            "SLOVAKIA_REGION_CODES_LIST",
            "EURASIA_DISTRIBUTION_CENTER",
            "task-0123456789abcdefghij0123456789",
            "shelf_0123456789abcdefghij0123456789",
        ] {
            assert!(!looks_like_secret_value(s), "{s}");
            assert!(matches!(shapes(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn a_credential_at_the_start_of_a_word_needs_only_its_length() {
        assert!(looks_like_secret_value(GHP));
        assert!(looks_like_secret_value(&format!("{GHP}_suffix")));
        assert!(!looks_like_secret_value(&GHP[..35]));
        assert_eq!(shapes(&format!("token {GHP}")), "token [removed]");
    }

    /// Scrubbing by shapes alone (no secret names).
    fn shapes(t: &str) -> Cow<'_, str> {
        scrub_secrets_with(t, &|_| false)
    }

    #[test]
    fn scrubbing_text_removes_only_the_credentials() {
        assert_eq!(
            shapes("GET /v1/items?api_key=XYZ is not allowed"),
            "GET [removed] is not allowed"
        );
        assert_eq!(
            shapes("sent Bearer abc and postgres://u:p@h"),
            "sent Bearer [removed] and [removed]"
        );
        assert_eq!(
            shapes(&format!("token {JWT} here")),
            "token [token removed] here"
        );
        let names = |n: &str| n.eq_ignore_ascii_case("password") || n == "AWS_SECRET_ACCESS_KEY";
        assert_eq!(
            scrub_secrets_with(
                "leaked password=hunter2 and AWS_SECRET_ACCESS_KEY=abc ok=1",
                &names
            ),
            "leaked password=[removed] and AWS_SECRET_ACCESS_KEY=[removed] ok=1"
        );
        assert_eq!(
            scrub_secrets_with("the password: hunter2 was sent", &names),
            "the password: [removed] was sent"
        );
        assert_eq!(
            scrub_secrets_with("needs scope secrets:read on secrets:get", &|n: &str| n
                .contains("secret")),
            "needs scope secrets:read on secrets:get",
            "scopes and resources are not assignments"
        );
        assert_eq!(
            scrub_secrets_with("see https://example.com/x", &|_| true),
            "see https://example.com/x",
            "a URL's scheme is not a name"
        );
        assert!(matches!(
            shapes("nothing to see"),
            Cow::Borrowed("nothing to see")
        ));
    }
}
