//! The canonical form of an event (RFC 8785 JCS for the values an event holds): the exact bytes
//! of its Merkle leaf, written directly for an [`Event`] and through a `Value` for anything else.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::{Asserted, Event};

impl Event {
    /// The canonical JSON of the event: the bytes of its Merkle leaf.
    pub fn canonical(&self) -> String {
        // Written directly, members in JCS order, rather than through a `Value` copy of the whole
        // event: this runs for every event on the gateway's hot path. The destructuring is
        // exhaustive, so a new field cannot be left out without a compile error, and a test holds
        // it to the `to_value` + `canonical_json` reading.
        let Event {
            id,
            time,
            kind,
            principal,
            chain,
            action,
            resource,
            decision,
            reasons,
            policy_version,
            decision_id,
            approval_id,
            result,
            error,
            jti,
            details,
            asserted,
        } = self;
        let mut w = Members::new(String::with_capacity(512));
        w.string("action", action);
        w.opt("approval_id", approval_id);
        if let Some(a) = asserted {
            let Asserted {
                by,
                principal,
                chain,
                jti,
            } = a;
            w.key("asserted");
            let mut inner = Members::new(std::mem::take(&mut w.out));
            inner.string("by", by);
            inner.list("chain", chain);
            inner.opt("jti", jti);
            inner.opt("principal", principal);
            w.out = inner.end();
        }
        w.list("chain", chain);
        w.opt("decision", decision);
        w.opt("decision_id", decision_id);
        if !details.is_empty() {
            w.key("details");
            let _ = write_object(&mut w.out, details, Numbers::AsParsed);
        }
        w.opt("error", error);
        w.string("id", id);
        w.opt("jti", jti);
        w.string("kind", kind);
        w.opt("policy_version", policy_version);
        w.string("principal", principal);
        w.list("reasons", reasons);
        w.opt("resource", resource);
        w.string("result", result);
        w.string("time", time);
        w.end()
    }
}

/// Canonical JSON (RFC 8785 JCS for the values an event holds): object keys sorted by UTF-16
/// code units, no whitespace, strings with the minimal JCS escapes, numbers as serde_json writes
/// them (integers exactly; events do not depend on float formatting). Audit leaves are written
/// this way and must stay so: an existing log's leaves are recomputed with it.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    // As parsed, the writer never fails.
    let _ = write_canonical(&mut out, v, Numbers::AsParsed);
    out
}

/// A number RFC 8785 cannot write exactly: JCS numbers are IEEE 754 doubles, so an integer
/// beyond 2^53 that no double equals would be written as a different number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the number {0} cannot be written exactly in RFC 8785 canonical JSON (its numbers are IEEE 754 doubles): send it as a string")]
pub struct InexactNumber(pub String);

/// RFC 8785 (JCS) canonical JSON exactly, numbers included (ECMAScript's shortest form: `1` for
/// `1.0`, `1e+21`): what approval requests bind arguments by, so that a client with any JCS
/// library computes the same digest. An integer that no double equals is refused rather than
/// rounded, since two different calls would then share one canonical form.
pub fn rfc8785(v: &Value) -> Result<String, InexactNumber> {
    let mut out = String::with_capacity(256);
    write_canonical(&mut out, v, Numbers::Rfc8785)?;
    Ok(out)
}

/// How numbers are written.
#[derive(Clone, Copy)]
enum Numbers {
    /// As serde_json writes them (the audit log's leaves).
    AsParsed,
    /// RFC 8785 §3.2.2.3: ECMAScript's `Number.prototype.toString` of the double.
    Rfc8785,
}

fn write_number(
    out: &mut String,
    n: &serde_json::Number,
    numbers: Numbers,
) -> Result<(), InexactNumber> {
    if let Numbers::AsParsed = numbers {
        let _ = write!(out, "{n}");
        return Ok(());
    }
    let inexact = || InexactNumber(n.to_string());
    // An integer must be exactly one double (2^60 is; 2^53 + 1 is not).
    let d = if let Some(i) = n.as_i64() {
        let d = i as f64;
        if d as i128 != i as i128 {
            return Err(inexact());
        }
        d
    } else if let Some(u) = n.as_u64() {
        let d = u as f64;
        if d >= 18446744073709551616.0 || d as u64 != u {
            return Err(inexact());
        }
        d
    } else {
        n.as_f64().filter(|d| d.is_finite()).ok_or_else(inexact)?
    };
    if d == 0.0 {
        // -0 is written 0.
        out.push('0');
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(d));
    }
    Ok(())
}

/// The first number literal in JSON text whose decimal value differs from the value RFC 8785
/// writes for it (`9007199254740993.0`, `0.1000000000000000000000001`: both read as a double
/// that is written otherwise), if any. Two such literals could share one canonical form while an
/// upstream reading numbers exactly (a decimal type) sees two values, so a call bound by its
/// canonical form must not carry one. Text outside strings is scanned; invalid JSON may pass (its
/// parse fails elsewhere).
pub fn first_inexact_literal(json: &[u8]) -> Option<String> {
    let mut i = 0;
    let mut in_string = false;
    while i < json.len() {
        let b = json[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < json.len()
                && matches!(json[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let lit = std::str::from_utf8(&json[start..i]).unwrap_or("");
            if !literal_is_exact(lit) {
                return Some(lit.chars().take(64).collect());
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Whether the number literal means exactly the number RFC 8785 writes for it.
fn literal_is_exact(lit: &str) -> bool {
    let Ok(d) = lit.parse::<f64>() else {
        return false;
    };
    if !d.is_finite() {
        return false;
    }
    let written = if d == 0.0 {
        "0".to_string()
    } else {
        ryu_js::Buffer::new().format_finite(d).to_string()
    };
    match (decimal(lit), decimal(&written)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A decimal literal as (negative, significant digits, power of ten): `-1.50e2` is
/// (true, "15", 1); zero is (false, "", 0) whatever its sign.
fn decimal(lit: &str) -> Option<(bool, String, i64)> {
    let (neg, rest) = match lit.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lit),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all = format!("{int}{frac}");
    let mut exp = exp.checked_sub(frac.len() as i64)?;
    let digits = all.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    exp = exp.checked_add((digits.len() - trimmed.len()) as i64)?;
    Some((neg, trimmed.to_string(), exp))
}

fn write_canonical(out: &mut String, v: &Value, numbers: Numbers) -> Result<(), InexactNumber> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n, numbers)?,
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, x, numbers)?;
            }
            out.push(']');
        }
        Value::Object(o) => write_object(out, o, numbers)?,
    }
    Ok(())
}

/// The JCS order of member names: by UTF-16 code units (for ASCII names, byte order).
fn jcs_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_object(
    out: &mut String,
    o: &Map<String, Value>,
    numbers: Numbers,
) -> Result<(), InexactNumber> {
    let member = |out: &mut String, i: usize, k: &str, v: &Value| {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_canonical(out, v, numbers)
    };
    out.push('{');
    // A map usually iterates in byte order already, which is JCS order for ASCII names: then no
    // sorting (the check does not assume which map type serde_json was built with).
    if o.keys()
        .is_sorted_by(|a, b| jcs_order(a, b) != std::cmp::Ordering::Greater)
    {
        for (i, (k, v)) in o.iter().enumerate() {
            member(out, i, k, v)?;
        }
    } else {
        let mut members: Vec<(&String, &Value)> = o.iter().collect();
        members.sort_by(|a, b| jcs_order(a.0, b.0));
        for (i, (k, v)) in members.into_iter().enumerate() {
            member(out, i, k, v)?;
        }
    }
    out.push('}');
    Ok(())
}

/// Writes the members of one object in the order they are given (the caller gives them in JCS
/// order), leaving out what serde leaves out (`None`, empty lists).
struct Members {
    out: String,
    first: bool,
}

impl Members {
    fn new(mut out: String) -> Self {
        out.push('{');
        Members { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_string(&mut self.out, k);
        self.out.push(':');
    }
    fn string(&mut self, k: &str, v: &str) {
        self.key(k);
        write_string(&mut self.out, v);
    }
    fn opt(&mut self, k: &str, v: &Option<String>) {
        if let Some(v) = v {
            self.string(k, v);
        }
    }
    fn list(&mut self, k: &str, v: &[String]) {
        if v.is_empty() {
            return;
        }
        self.key(k);
        self.out.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_string(&mut self.out, s);
        }
        self.out.push(']');
    }
    fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs that need no escape are copied whole.
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::kinds;
    use crate::event::tests::sample;
    use serde_json::json;

    /// The canonical form as it was first written: the whole event as a `Value`, then JCS with
    /// character-by-character escapes. The direct writer must agree with it byte for byte.
    fn reference_canonical(e: &Event) -> String {
        fn value(out: &mut String, v: &Value) {
            match v {
                Value::Object(o) => {
                    let mut keys: Vec<&String> = o.keys().collect();
                    keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                    out.push('{');
                    for (i, k) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        string(out, k);
                        out.push(':');
                        value(out, &o[k]);
                    }
                    out.push('}');
                }
                Value::Array(a) => {
                    out.push('[');
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        value(out, x);
                    }
                    out.push(']');
                }
                Value::String(s) => string(out, s),
                other => out.push_str(&other.to_string()),
            }
        }
        fn string(out: &mut String, s: &str) {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        let mut out = String::new();
        value(&mut out, &serde_json::to_value(e).unwrap());
        out
    }

    #[test]
    fn the_direct_canonical_form_is_the_value_form_byte_for_byte() {
        let mut full = sample();
        full.reasons = vec!["a \"quoted\" reason\n\twith \u{1} control".into()];
        full.policy_version = Some("sha256:abc".into());
        full.decision_id = Some("dec_1".into());
        full.approval_id = Some("apr_1".into());
        full.error = Some("forbidden".into());
        full.asserted = Some(Asserted {
            by: "agent:pep".into(),
            principal: Some("agent:x\\y".into()),
            chain: vec!["user:z".into()],
            jti: Some("j9".into()),
        });
        // Names whose byte order is not their UTF-16 order (U+E000 sorts after U+10000 in
        // UTF-16), nested, and values of every kind.
        full.details.insert("\u{e000}".into(), json!(1));
        full.details
            .insert("\u{10000}".into(), json!([true, null, 1.5, -3]));
        full.details.insert(
            "action".into(),
            json!({"arguments": {"path": "/repo/é\"x", "Z": {"\u{e000}": 1, "\u{10000}": 2}}}),
        );
        let mut empty = Event::new(kinds::TOOL_CALL, "agent:a", "mcp.tools/call", 0, [0; 16]);
        empty.result = String::new();
        let asserted_only_by = Event {
            asserted: Some(Asserted {
                by: "agent:pep".into(),
                ..Asserted::default()
            }),
            ..sample()
        };
        for e in [sample(), full, empty, asserted_only_by] {
            assert_eq!(e.canonical(), reference_canonical(&e));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_escaped_as_jcs_escapes_it(text in "\\PC*|[\\x00-\\x7f]{0,40}", key in "\\PC{0,8}") {
            let mut e = sample();
            e.reasons = vec![text.clone()];
            e.details.insert(key, json!(text));
            proptest::prop_assert_eq!(e.canonical(), reference_canonical(&e));
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_absent_fields() {
        let c = sample().canonical();
        assert!(
            c.starts_with(r#"{"action":"token.exchange","chain":["user:alice""#),
            "{c}"
        );
        assert!(!c.contains("approval_id") && !c.contains("details"), "{c}");
        assert!(!c.contains(' '), "{c}");
    }

    #[test]
    fn canonical_form_survives_a_json_round_trip_byte_for_byte() {
        let mut e = sample();
        e.details.insert(
            "arguments".into(),
            json!({"z": [1, -2, 3.5], "a": "line\nbreak \u{1} \"q\" é 🎉", "m": null, "é": true}),
        );
        let c = e.canonical();
        let reparsed: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(canonical_json(&reparsed), c);
        assert_eq!(Event::parse(&c).unwrap(), e);
        assert!(c.contains(r#""line\nbreak \u0001 \"q\" é 🎉""#), "{c}");
    }

    #[test]
    fn keys_sort_by_utf16_code_units_as_jcs_requires() {
        // U+E000 sorts after U+1F600 in UTF-8 byte order but before it in UTF-16 order.
        let v = json!({"\u{1F600}": 1, "\u{E000}": 2, "a": 3});
        assert_eq!(
            canonical_json(&v),
            "{\"a\":3,\"\u{1F600}\":1,\"\u{E000}\":2}"
        );
    }
}

#[cfg(test)]
mod rfc8785_tests {
    use super::*;
    use serde_json::json;

    fn double(bits: u64) -> Value {
        Value::from(f64::from_bits(bits))
    }

    #[test]
    fn numbers_are_written_as_rfc_8785_appendix_b_says() {
        for (bits, want) in [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x41b3de4355555553, "333333333.3333332"),
        ] {
            assert_eq!(rfc8785(&double(bits)).unwrap(), want, "{bits:#x}");
        }
    }

    #[test]
    fn the_rfc_8785_example_object_is_written_byte_for_byte() {
        let v: Value = serde_json::from_str(
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]}"#,
        )
        .unwrap();
        assert_eq!(
            rfc8785(&v).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn member_names_are_sorted_by_utf16_code_units_as_rfc_8785_sorts_them() {
        let v: Value = serde_json::from_str(
            r#"{"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\ud83d\ude00": 5, "\u0080": 6, "\u00f6": 7}"#,
        )
        .unwrap();
        assert_eq!(
            rfc8785(&v).unwrap(),
            "{\"\\r\":2,\"1\":4,\"\u{80}\":6,\"ö\":7,\"€\":1,\"😀\":5,\"\u{fb33}\":3}"
        );
    }

    #[test]
    fn integers_are_exact_or_refused_never_rounded() {
        assert_eq!(rfc8785(&json!(1.0)).unwrap(), "1");
        assert_eq!(rfc8785(&json!(-17)).unwrap(), "-17");
        assert_eq!(
            rfc8785(&json!(9007199254740992u64)).unwrap(),
            "9007199254740992"
        );
        // 2^60 is one double, written as ECMAScript writes it.
        assert_eq!(rfc8785(&json!(1u64 << 60)).unwrap(), "1152921504606847000");
        assert!(rfc8785(&json!(1152921504606847000u64)).is_err());
        // 2^53 + 1 has no double: writing it as 2^53 would let two calls share a digest.
        let e = rfc8785(&json!({"id": 9007199254740993u64})).unwrap_err();
        assert!(e.to_string().contains("9007199254740993"), "{e}");
        assert!(rfc8785(&json!(i64::MIN + 1)).is_err());
        assert!(rfc8785(&json!(u64::MAX)).is_err());
    }

    #[test]
    fn literals_that_mean_another_number_than_their_canonical_form_are_found() {
        for exact in [
            r#"{"a": 1, "b": 1.0, "c": 2e0, "d": 0.1, "e": 19.990, "f": -0.0, "g": 1E21, "h": 9007199254740992}"#,
            r#"{"s": "9007199254740993.0 in a string", "esc": "\"", "n": [0.30000000000000004, 5e-324]}"#,
        ] {
            assert_eq!(first_inexact_literal(exact.as_bytes()), None, "{exact}");
        }
        for (text, lit) in [
            (r#"{"id": 9007199254740993.0}"#, "9007199254740993.0"),
            (r#"{"id": 9007199254740993}"#, "9007199254740993"),
            (
                r#"{"amt": 0.1000000000000000000000001}"#,
                "0.1000000000000000000000001",
            ),
            (r#"{"x": "a\"b", "y": [1, 1e400]}"#, "1e400"),
            (r#"[1.00000000000000000001]"#, "1.00000000000000000001"),
        ] {
            assert_eq!(
                first_inexact_literal(text.as_bytes()).as_deref(),
                Some(lit),
                "{text}"
            );
        }
    }

    #[test]
    fn the_audit_form_keeps_writing_numbers_as_parsed() {
        // Existing leaves must not change: 1.0 stays 1.0 there.
        assert_eq!(canonical_json(&json!([1.0, 1e21])), "[1.0,1e+21]");
    }
}
