//! Redaction of what events record: values under secret-looking keys (at any depth, after
//! normalising look-alike spellings), values that are credentials by their shape, the policy's
//! `redact` paths, and the recorded form of a policy input's action. Each redacted value becomes
//! `hmac-sha256:<hex>` under the installation's audit key, matchable with `mandate audit hash`
//! and never readable back. (Re-exported from [`crate::event`], where events use them.)

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::event::{canonical_json, REDACTED_PREFIX};

/// The recorded form of a policy input's `action`: its kind, server, tool, method, annotations
/// and HTTP facts, and its arguments with the values at the decision's `redact` paths replaced by
/// their HMAC (all of them, when the decision `failed` and so has no redact paths). Whatever the
/// policy says, values under secret-looking keys at any depth, and values that are credentials by
/// their shape (`is_secret_value`), are recorded only as HMACs; `redact` paths elsewhere in the
/// action (`/action/http/path`) apply too. The authority's decision point and the gateway record
/// actions with this one function.
pub fn recorded_action(
    key: &[u8],
    action: &Value,
    redact: &[String],
    failed: bool,
    is_secret_value: &dyn Fn(&str) -> bool,
) -> Value {
    let mut summary = Map::new();
    for k in [
        "kind",
        "server",
        "tool",
        "method",
        "mcp_method",
        "annotations",
        "http",
    ] {
        if let Some(v) = action.get(k) {
            summary.insert(k.to_string(), v.clone());
        }
    }
    if let Some(args) = action.get("arguments") {
        let mut args = args.clone();
        let whole = ["/action/arguments".to_string()];
        let paths = if failed { &whole[..] } else { redact };
        redact_arguments(key, &mut args, paths);
        summary.insert("arguments".to_string(), args);
    }
    let mut summary = Value::Object(summary);
    redact_secret_keys(key, &mut summary, &SECRET_KEY_FRAGMENTS);
    redact_secret_values(key, &mut summary, is_secret_value);
    for path in redact.iter().filter_map(|p| p.strip_prefix("/action")) {
        if path.starts_with("/arguments") || path.is_empty() {
            continue;
        }
        if let Some(target) = summary.pointer_mut(path) {
            *target = Value::String(redact_value(key, target));
        }
    }
    summary
}

/// Key fragments whose values are always recorded as HMACs, at any depth, whatever the policy
/// says: a floor under every policy's `redact`. A key matches when, normalized (see
/// [`normalized_key`]: `API_KEY`, `privateKey`, `x-access-key`, a fullwidth or zero-width-split
/// `password` all qualify), it contains one of them.
pub const SECRET_KEY_FRAGMENTS: [&str; 20] = [
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "signingkey",
    "sshkey",
    "credential",
    "authorization",
    "cookie",
    "session",
    "bearer",
    "jwt",
    "cvv",
    "cardnumber",
    "connectionstring",
];

/// Keys that are credentials when they are the whole (normalized) name, but too short to match
/// inside longer names (`author`, `spinner`, `monkey` are not secrets).
pub const SECRET_KEY_NAMES: [&str; 9] = [
    "auth", "key", "pin", "otp", "pass", "pw", "creds", "dsn", "sig",
];

/// Whether an object key names a secret ([`SECRET_KEY_FRAGMENTS`], [`SECRET_KEY_NAMES`]).
pub fn is_secret_key(k: &str) -> bool {
    let name = normalized_key(k);
    SECRET_KEY_NAMES.contains(&name.as_str())
        || SECRET_KEY_FRAGMENTS.iter().any(|f| name.contains(f))
}

/// A key as the secret names are matched against it: Unicode compatibility form (NFKC, so
/// fullwidth letters are ASCII), common Cyrillic and Greek look-alikes folded to Latin, lower
/// case, and only letters and digits kept (so `_`, `-`, `.`, spaces and zero-width characters
/// do not split a name).
pub fn normalized_key(k: &str) -> String {
    // ASCII is its own NFKC form and has no look-alikes to fold: the common case, without the
    // normalizer's per-character work.
    if k.is_ascii() {
        return k
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
    }
    normalized_key_general(k)
}

/// [`normalized_key`] for any text: NFKC, lower case, look-alikes folded, alphanumerics kept.
fn normalized_key_general(k: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    k.nfkc()
        .flat_map(char::to_lowercase)
        .map(fold_lookalike)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Cyrillic and Greek letters that look like Latin ones, as the Latin letter.
fn fold_lookalike(c: char) -> char {
    match c {
        'а' => 'a',
        'в' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' => 'e',
        'һ' => 'h',
        'і' | 'ι' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'п' | 'η' => 'n',
        'о' | 'ο' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ѡ' | 'ω' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        other => other,
    }
}

/// Replaces, at any depth of `value`, the value of every object member whose key contains (case
/// insensitively) one of `fragments` by its HMAC under `key`. The floor under the policy's own
/// `redact` paths: a secret nested in an argument is never stored in the clear.
pub fn redact_secret_keys(key: &[u8], value: &mut Value, fragments: &[&str]) {
    match value {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                let name = normalized_key(k);
                if fragments.iter().any(|f| name.contains(f))
                    || SECRET_KEY_NAMES.contains(&name.as_str())
                {
                    if !v.as_str().is_some_and(|s| s.starts_with(REDACTED_PREFIX)) {
                        *v = Value::String(redact_value(key, v));
                    }
                } else {
                    redact_secret_keys(key, v, fragments);
                }
            }
        }
        Value::Array(a) => {
            for v in a {
                redact_secret_keys(key, v, fragments);
            }
        }
        _ => {}
    }
}

/// Replaces, at any depth of `value`, every string (object keys excepted) that `is_secret` says
/// is a credential by its HMAC under `key`: the floor for secrets under harmless keys (a mandate
/// under `data`, `Bearer ...` under `x-custom`, a URL with a password).
pub fn redact_secret_values(key: &[u8], value: &mut Value, is_secret: &dyn Fn(&str) -> bool) {
    match value {
        Value::String(s) if !s.starts_with(REDACTED_PREFIX) && is_secret(s) => {
            *value = Value::String(redact_value(key, value));
        }
        Value::Object(o) => {
            for v in o.values_mut() {
                redact_secret_values(key, v, is_secret);
            }
        }
        Value::Array(a) => {
            for v in a {
                redact_secret_values(key, v, is_secret);
            }
        }
        _ => {}
    }
}

/// The redacted form of a value: `hmac-sha256:` + hex HMAC-SHA256 under the installation's audit
/// key. A string is MACed as its UTF-8 bytes (so an auditor holding a candidate secret can match
/// it with `mandate audit hash`); any other value as its canonical JSON.
pub fn redact_value(key: &[u8], v: &Value) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    match v {
        Value::String(s) => mac.update(s.as_bytes()),
        other => mac.update(canonical_json(other).as_bytes()),
    }
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(REDACTED_PREFIX.len() + 64);
    out.push_str(REDACTED_PREFIX);
    for b in tag {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Redacts `arguments` in place at the policy's `redact` paths. The paths are RFC 6901 JSON
/// pointers into the policy input, so only those under `/action/arguments` apply here; a path to
/// a value that does not exist is skipped. Fails closed: a path that is not a valid pointer,
/// `/action/arguments` itself, or one that holds it (`/action`, or `""`, the whole input)
/// redacts the whole arguments value.
pub fn redact_arguments(key: &[u8], arguments: &mut Value, paths: &[String]) {
    const BASE: &str = "/action/arguments";
    for path in paths {
        let whole = match path.strip_prefix(BASE) {
            // The arguments themselves.
            Some("") => true,
            // A pointer below them: redact that value, or everything if it is malformed.
            Some(rest) if rest.starts_with('/') => {
                if !valid_pointer(rest) {
                    true
                } else {
                    if let Some(target) = arguments.pointer_mut(rest) {
                        let hashed = redact_value(key, target);
                        *target = Value::String(hashed);
                    }
                    false
                }
            }
            // "/action/argumentsX": another key.
            Some(_) => false,
            // Elsewhere in the input: nothing of the arguments, unless it holds them ("/action",
            // or "", the whole input). Not a pointer at all: everything.
            None => {
                !path.starts_with('/')
                    || !valid_pointer(path)
                    || BASE
                        .strip_prefix(path.as_str())
                        .is_some_and(|below| below.starts_with('/'))
            }
        };
        if whole {
            *arguments = Value::String(redact_value(key, arguments));
            return;
        }
    }
}

/// Whether every `~` in a pointer is followed by `0` or `1` (RFC 6901).
fn valid_pointer(p: &str) -> bool {
    let b = p.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0') | Some(b'1')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_ascii_shortcut_normalizes_keys_as_the_general_path_does(k in "[ -~]{0,40}") {
            prop_assert_eq!(normalized_key(&k), normalized_key_general(&k));
        }
    }

    #[test]
    fn keys_are_normalized_past_case_separators_and_look_alikes() {
        assert_eq!(normalized_key("X-Api_Key"), "xapikey");
        assert_eq!(normalized_key("ＡＰＩ＿ＫＥＹ"), "apikey");
        assert_eq!(normalized_key("раssword"), "password");
    }
}
