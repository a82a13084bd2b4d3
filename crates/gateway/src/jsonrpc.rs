//! JSON-RPC 2.0 as MCP carries it, read strictly and within bounds: a body is one message or a
//! batch (an array) of at most [`MAX_BATCH`]; each is a request (`id` and `method`), a
//! notification (`method`, no `id`) or a response (`id` and exactly one of `result` / `error`).
//! What does not parse is a parse error (-32700); what parses but is not a message is an invalid
//! request (-32600), answered with `id: null` as JSON-RPC 2.0 §5 says when the id is unknown.

use mandate_core::refusal::jsonrpc as codes;
use serde_json::{json, Map, Value};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 64;
/// Longest `method` name.
pub const MAX_METHOD_LEN: usize = 256;

/// A request: it expects a response with the same `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// A string or a number (MCP: never null).
    pub id: Value,
    /// The method.
    pub method: String,
    /// The parameters: an object or an array, when present.
    pub params: Option<Value>,
}

/// A notification: no response.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The method.
    pub method: String,
    /// The parameters, when present.
    pub params: Option<Value>,
}

/// A response (from a client answering a server-to-client request, or from an upstream).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request it answers.
    pub id: Value,
    /// The result, or the error object.
    pub outcome: Result<Value, RpcError>,
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Expects a response.
    Request(Request),
    /// Expects none.
    Notification(Notification),
    /// Answers a request.
    Response(Response),
}

/// A body: one message, or a batch whose items were each read on their own (an item that is not
/// a message is answered with its error, the others are handled).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A single message.
    Single(Message),
    /// A batch, in order.
    Batch(Vec<Result<Message, RpcError>>),
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    /// The code (see `mandate_core::refusal::jsonrpc`).
    pub code: i64,
    /// One sentence that says what was wrong and how to fix it.
    pub message: String,
    /// Structured details, when any.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700: the body is not JSON.
    pub fn parse(why: impl std::fmt::Display) -> Self {
        Self::new(
            codes::PARSE_ERROR,
            format!("parse error: the body is not JSON ({why})"),
        )
    }

    /// -32600: JSON, but not a JSON-RPC 2.0 message.
    pub fn invalid_request(why: impl Into<String>) -> Self {
        Self::new(
            codes::INVALID_REQUEST,
            format!("invalid request: {}", why.into()),
        )
    }

    /// The error object as JSON.
    pub fn to_value(&self) -> Value {
        let mut o = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            o["data"] = d.clone();
        }
        o
    }

    /// The response carrying this error for `id` (`null` when the request's id is unknown).
    pub fn response(&self, id: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "error": self.to_value()})
    }
}

/// A successful response to `id`.
pub fn result_response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Reads a body. `Err` is the error to answer the whole body with (`id: null`).
///
/// The bytes are forwarded as they came, so they must mean to every reader what they mean to
/// the policy: an object naming a member twice (`"name"` twice: serde keeps the last, other
/// parsers the first) or two members that differ only in case (`"name"` and `"Name"`: Go's
/// `encoding/json` matches either) is refused, at any depth.
pub fn parse(bytes: &[u8]) -> Result<Body, RpcError> {
    parse_counted(bytes).map(|(b, _)| b)
}

/// [`parse`], with how many JSON values the body holds (what its size costs to judge).
pub fn parse_counted(bytes: &[u8]) -> Result<(Body, usize), RpcError> {
    let values = check_member_names(bytes).map_err(RpcError::invalid_request)?;
    let v: Value = serde_json::from_slice(bytes).map_err(RpcError::parse)?;
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::invalid_request("an empty batch"));
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::invalid_request(format!(
                    "a batch of {} messages; send at most {MAX_BATCH}",
                    items.len()
                )));
            }
            Ok((
                Body::Batch(items.into_iter().map(message).collect()),
                values,
            ))
        }
        other => message(other).map(|m| (Body::Single(m), values)),
    }
}

/// Reads one message.
pub fn message(v: Value) -> Result<Message, RpcError> {
    let Value::Object(mut o) = v else {
        return Err(RpcError::invalid_request("a message must be a JSON object"));
    };
    if o.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(RpcError::invalid_request("\"jsonrpc\" must be \"2.0\""));
    }
    let id = match o.remove("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id),
        // MCP: "a string or integer ID". A fraction, or an integer past 64 bits, would be read as
        // a float and echoed as another number (1.2345678901234568e29), which no client could
        // match to its request: refused instead.
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
        Some(Value::Null) if !o.contains_key("method") => Some(Value::Null),
        Some(_) => {
            return Err(RpcError::invalid_request(
                "\"id\" must be a string or an integer of at most 64 bits",
            ))
        }
    };
    if let Some(method) = o.remove("method") {
        let Value::String(method) = method else {
            return Err(RpcError::invalid_request("\"method\" must be a string"));
        };
        if method.is_empty() || method.len() > MAX_METHOD_LEN {
            return Err(RpcError::invalid_request(format!(
                "\"method\" must be 1 to {MAX_METHOD_LEN} characters"
            )));
        }
        if o.contains_key("result") || o.contains_key("error") {
            return Err(RpcError::invalid_request(
                "a request has no \"result\" or \"error\"",
            ));
        }
        let params = params(&mut o)?;
        // Nothing else: a member the gateway does not read (`"Method"`, `"tool"`) might be one
        // an upstream does, unseen by the policy.
        if let Some(k) = o.keys().find(|k| k.as_str() != "jsonrpc") {
            return Err(RpcError::invalid_request(format!(
                "{:?} is not a member of a JSON-RPC 2.0 request (jsonrpc, id, method, params)",
                k.chars().take(64).collect::<String>()
            )));
        }
        return Ok(match id {
            Some(id) => Message::Request(Request { id, method, params }),
            None => Message::Notification(Notification { method, params }),
        });
    }
    let Some(id) = id else {
        return Err(RpcError::invalid_request(
            "a message needs \"method\" (a request or notification) or \"id\" (a response)",
        ));
    };
    let outcome = match (o.remove("result"), o.remove("error")) {
        (Some(r), None) => Ok(r),
        (None, Some(e)) => Err(error_object(e)?),
        _ => {
            return Err(RpcError::invalid_request(
                "a response has exactly one of \"result\" and \"error\"",
            ))
        }
    };
    Ok(Message::Response(Response { id, outcome }))
}

/// Most JSON values (objects, arrays, and every member value, element and scalar in them) one
/// body may hold. What a message costs the gateway (policy input, redaction, the audit event's
/// canonical form) grows with its values, not its bytes: 4 MiB of tiny members is some 150,000
/// values and about a second of CPU, which one agent could ask for again and again within its
/// call rate. Legitimate tool arguments are far smaller; large content travels as strings.
pub const MAX_JSON_VALUES: usize = 50_000;

/// Refuses JSON whose objects repeat a member name, exactly or ignoring ASCII case, or that
/// holds more than [`MAX_JSON_VALUES`] values; otherwise answers how many values it holds.
/// Invalid JSON passes (the parse that follows says why it is not JSON). One pass, no values
/// kept; depth is bounded by serde_json's recursion limit.
pub fn check_member_names(bytes: &[u8]) -> Result<usize, String> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::Cell;

    /// Visits one value, counting it against the body's budget.
    #[derive(Clone, Copy)]
    struct Strict<'c>(&'c Cell<usize>);

    impl<'de> DeserializeSeed<'de> for Strict<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            let n = self.0.get() + 1;
            if n > MAX_JSON_VALUES {
                return Err(serde::de::Error::custom(format!(
                    "the body holds more than {MAX_JSON_VALUES} JSON values: send smaller arguments (large content as one string)"
                )));
            }
            self.0.set(n);
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if !seen.insert(fold_case(&k)) {
                    return Err(serde::de::Error::custom(format!(
                        "member {:?} is given twice in one object (or twice in different case): give each member once",
                        k.chars().take(64).collect::<String>()
                    )));
                }
                map.next_value_seed(self)?;
            }
            Ok(())
        }
    }

    let count = Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match Strict(&count).deserialize(&mut de) {
        Err(e) if e.is_data() => Err(e
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or("")
            .to_string()),
        _ => Ok(count.get()),
    }
}

/// A member name as a case-insensitive reader compares it: Unicode case folded, so that `ſ`
/// (U+017F) meets `s` and `K` (U+212A, Kelvin) meets `k`, as Go's `encoding/json` matches them.
pub fn fold_case(name: &str) -> String {
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.to_uppercase().to_lowercase()
}

fn params(o: &mut Map<String, Value>) -> Result<Option<Value>, RpcError> {
    match o.remove("params") {
        None => Ok(None),
        Some(p @ (Value::Object(_) | Value::Array(_))) => Ok(Some(p)),
        Some(_) => Err(RpcError::invalid_request(
            "\"params\" must be an object or an array",
        )),
    }
}

fn error_object(e: Value) -> Result<RpcError, RpcError> {
    let bad =
        || RpcError::invalid_request("\"error\" must be {\"code\": integer, \"message\": string}");
    let Value::Object(mut e) = e else {
        return Err(bad());
    };
    let code = e.get("code").and_then(Value::as_i64).ok_or_else(bad)?;
    let message = match e.remove("message") {
        Some(Value::String(m)) => m,
        _ => return Err(bad()),
    };
    Ok(RpcError {
        code,
        message,
        data: e.remove("data"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(text: &str) -> Result<Message, RpcError> {
        match parse(text.as_bytes())? {
            Body::Single(m) => Ok(m),
            Body::Batch(_) => panic!("a batch"),
        }
    }

    #[test]
    fn a_body_with_too_many_json_values_is_refused_and_one_within_the_bound_is_not() {
        // The envelope and `params`/`arguments` objects count too: leave room for them.
        let body = |n: usize| {
            let items = vec!["0"; n].join(",");
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"rows":[{items}]}}}}}}"#
            )
        };
        let envelope = 8; // message, jsonrpc, id, method, params, name, arguments, rows
        assert_eq!(
            check_member_names(body(MAX_JSON_VALUES - envelope).as_bytes()),
            Ok(MAX_JSON_VALUES)
        );
        let e = check_member_names(body(MAX_JSON_VALUES - envelope + 1).as_bytes()).unwrap_err();
        assert!(e.contains("more than 50000 JSON values"), "{e}");
        let e = parse(body(MAX_JSON_VALUES).as_bytes()).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
    }

    #[test]
    fn members_given_twice_or_in_two_cases_are_refused_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_note","name":"delete_note"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_note","Name":"delete_note"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"e\",\"arguments\":{},\"argument\u{17f}\":{}}}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"k\":1,\"\u{212a}\":2}}",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","arguments":{"a":[{"path":"/ok","PATH":"/etc"}]}}}"#,
        ] {
            let e = parse(body.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{body}"));
            assert_eq!(e.code, codes::INVALID_REQUEST, "{body}");
            assert!(e.message.contains("given twice"), "{}", e.message);
        }
        assert!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"b":{"a":2}}}"#).is_ok()
        );
    }

    #[test]
    fn ids_are_strings_or_64_bit_integers_echoed_exactly() {
        for (body, id) in [
            (
                r#"{"jsonrpc":"2.0","id":"a-1","method":"ping"}"#,
                json!("a-1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}"#,
                json!(i64::MIN),
            ),
            (
                r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#,
                json!(u64::MAX),
            ),
        ] {
            let Ok(Message::Request(r)) = one(body) else {
                panic!("{body} should be a request");
            };
            assert_eq!(r.id, id);
            assert_eq!(
                RpcError::new(codes::FORBIDDEN, "x").response(&r.id)["id"].to_string(),
                id.to_string()
            );
        }
        // Past 64 bits, or with a fraction, the number could not be echoed as sent.
        for body in [
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#,
        ] {
            let e = one(body).unwrap_err();
            assert_eq!(e.code, codes::INVALID_REQUEST, "{body}");
            assert!(
                e.message.contains("integer of at most 64 bits"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_request_member_outside_json_rpc_is_refused() {
        let e = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","tool":"x"}"#).unwrap_err();
        assert_eq!(e.code, codes::INVALID_REQUEST);
        assert!(e.message.contains("not a member"), "{}", e.message);
    }

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Ok(Message::Request(Request { method, .. })) if method == "tools/list"
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification(_))
        ));
        assert!(matches!(
            one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Message::Response(Response { outcome: Ok(_), .. }))
        ));
        let Ok(Message::Response(r)) =
            one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"x"}}"#)
        else {
            panic!("an error response");
        };
        assert_eq!(r.outcome.unwrap_err().code, -32600);
    }

    #[test]
    fn malformed_bodies_get_the_json_rpc_code_for_their_fault() {
        assert_eq!(parse(b"{not json").unwrap_err().code, codes::PARSE_ERROR);
        assert_eq!(parse(b"").unwrap_err().code, codes::PARSE_ERROR);
        for bad in [
            r#"[]"#,
            r#"3"#,
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":""}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":1}"#,
        ] {
            let e = parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, codes::INVALID_REQUEST, "{bad}: {e}");
        }
    }

    #[test]
    fn a_batch_is_read_item_by_item_and_bounded() {
        let Body::Batch(items) = parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"bad":true},{"jsonrpc":"2.0","method":"n"}]"#,
        )
        .unwrap() else {
            panic!("a batch");
        };
        assert!(matches!(items[0], Ok(Message::Request(_))));
        assert_eq!(items[1].as_ref().unwrap_err().code, codes::INVALID_REQUEST);
        assert!(matches!(items[2], Ok(Message::Notification(_))));
        let big = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"n"}"#; MAX_BATCH + 1].join(",")
        );
        assert!(parse(big.as_bytes())
            .unwrap_err()
            .message
            .contains("at most 64"));
    }

    #[test]
    fn error_responses_carry_the_id_and_the_error_object() {
        let e = RpcError::invalid_request("x").with_data(json!({"decision_id": "d"}));
        let r = e.response(&json!(7));
        assert_eq!(r["id"], 7);
        assert_eq!(r["error"]["code"], codes::INVALID_REQUEST);
        assert_eq!(r["error"]["data"]["decision_id"], "d");
        assert_eq!(result_response(&json!("a"), json!({}))["result"], json!({}));
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_body_or_one_json_rpc_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            match parse(&bytes) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.code == codes::PARSE_ERROR || e.code == codes::INVALID_REQUEST),
            }
        }

        #[test]
        fn any_json_value_is_a_message_or_an_invalid_request(v in arb_json()) {
            match message(v) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.code, codes::INVALID_REQUEST),
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            prop_oneof![
                Just("2.0".to_string()),
                Just("id".to_string()),
                Just("method".to_string()),
                "[a-z/]{0,8}"
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("jsonrpc".to_string()),
                        Just("id".to_string()),
                        Just("method".to_string()),
                        Just("params".to_string()),
                        Just("result".to_string()),
                        Just("error".to_string()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
