//! The smaller findings: tokens where none is expected, private keys in DPoP proofs, calls that
//! left no record, answers that told strangers who exists, what a decision point may read,
//! enrollment codes burned by mistakes, client assertion types, file modes, and refusal floods.

use std::time::Duration;

use mandate_core::assertion::ASSERTION_TYPE;
use serde_json::{json, Value};

use crate::common::{
    assert_oauth_error, assertion_by, fresh_key, mode, now, random_id, Proof, Server, GITHUB,
};

fn admin_mandate(s: &Server) -> String {
    s.own_mandate("user:admin", "mandate:admin", &s.url)
}

use crate::common::sign_jws as sign;

#[test]
fn a_token_passed_where_a_name_or_kid_belongs_is_refused_and_never_logged() {
    let s = Server::demo();
    let admin = admin_mandate(&s);
    let token = s.own_mandate("user:alice", "github:read", GITHUB);
    for kind in ["key", "agent", "user", "token"] {
        let (code, _, body) = s.post_json_dpop(
            "/admin/v1/revocations",
            "user:admin",
            &admin,
            &json!({"kind": kind, "value": token}),
        );
        assert_eq!(code, 400, "{kind}: {body}");
        assert!(
            !body.contains(&token[..40]),
            "{kind}: the token is echoed: {body}"
        );
    }
    let stored = s.event_bodies().join("\n");
    assert!(
        !stored.contains(&token[..40]),
        "a token reached the audit log"
    );
}

#[test]
fn a_dpop_proof_carrying_the_private_key_is_refused_at_the_token_endpoint() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": key.to_private_jwk()});
    let claims = json!({"jti": random_id(), "htm": "POST", "htu": s.token_url(), "iat": now()});
    let proof = sign(&header, &claims, &key);
    let params = [
        ("grant_type", "client_credentials"),
        ("scope", "github:pulls.read"),
        ("audience", GITHUB),
    ];
    let r = s.as_client("agent:planner", &params, Proof::Custom(proof));
    assert_oauth_error(&r, "invalid_dpop_proof");
    assert!(
        r.1["error_description"]
            .as_str()
            .unwrap()
            .contains("private"),
        "{}",
        r.1
    );
}

#[test]
fn introspection_calls_and_admin_refusals_after_authentication_are_recorded() {
    let s = Server::start_with(true, "[limits]\nrefusal_window = \"1s\"\n");
    let token = s.own_mandate("user:alice", "github:read", GITHUB);
    let jti = crate::common::jwt_payload(&token)["jti"].clone();
    let (code, body) = s.introspect_as("agent:planner", &token);
    assert_eq!(code, 200, "{body}");
    let (code, _) = s.introspect_as("agent:planner", "not-a-token");
    assert_eq!(code, 200);
    // An unknown client's introspection is a stranger's refusal.
    let stranger = assertion_by(&fresh_key(), "agent:ghost", &s.url);
    let (code, _) = s.post_raw(
        crate::common::INTROSPECT_PATH,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &stranger),
            ("token", &token),
        ],
        None,
    );
    assert_eq!(code, 401);
    // An admin call refused after authentication for its body.
    let admin = admin_mandate(&s);
    let (code, _, body) = s.post_json_dpop(
        "/admin/v1/principals",
        "user:admin",
        &admin,
        &json!({"name": 7}),
    );
    assert_eq!(code, 400, "{body}");
    std::thread::sleep(Duration::from_millis(2500));
    let events: Vec<Value> = s
        .event_bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let introspected: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "token.introspected")
        .collect();
    assert_eq!(introspected.len(), 2, "{introspected:?}");
    assert!(introspected
        .iter()
        .any(|e| e["jti"] == jti && e["principal"] == "agent:planner"));
    assert!(introspected.iter().any(|e| e["details"]["active"] == false));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "refusals.unauthenticated"
                && e["details"]["actions"]["token.introspect"] == 1),
        "the stranger's introspection is not counted"
    );
    assert!(
        events.iter().any(|e| e["kind"] == "admin.refused"
            && e["principal"] == "user:admin"
            && e["error"] == "invalid_request"),
        "the refused admin call is not recorded"
    );
}

#[test]
fn strangers_get_the_same_answer_whether_a_principal_exists_or_is_disabled() {
    let s = Server::demo();
    s.ok(&["agent", "disable", "coder"]);
    let stranger_key = fresh_key();
    let answer = |who: &str| {
        let a = assertion_by(&stranger_key, who, &s.url);
        let (code, text) = s.post_raw(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
            ],
            None,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        (
            code,
            v["error"].clone(),
            v["error_description"].as_str().unwrap().replace(who, "P"),
        )
    };
    let unknown = answer("agent:ghost");
    let existing = answer("agent:planner");
    let disabled = answer("agent:coder");
    assert_eq!(unknown, existing);
    assert_eq!(unknown, disabled);
    // The principal itself, proving its key, is told it is disabled.
    let r = s.as_client(
        "agent:coder",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "github:pulls.read"),
            ("audience", GITHUB),
        ],
        Proof::Own,
    );
    assert!(
        r.1["error_description"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{}",
        r.1
    );
}

#[test]
fn a_decision_point_reads_decisions_not_policy_data_or_paths() {
    let s = Server::demo();
    let (who, m) = s.pep();
    for path in [
        "/v1/data/mandate_config",
        "/v1/data",
        "/v1/data/mandate/lib",
    ] {
        let (code, _, body) = s.post_json_dpop(path, &who, &m, &json!({}));
        assert_eq!(code, 403, "{path}: {body}");
    }
    let (code, _, _) = s.post_json_dpop(
        "/v1/data/mandate/authz/decision",
        &who,
        &m,
        &json!({"input": {}}),
    );
    assert_eq!(code, 200);
    let admin = s.own_mandate("user:admin", "mandate:admin", &s.url);
    let (code, _, body) =
        s.post_json_dpop("/v1/data/mandate_config", "user:admin", &admin, &json!({}));
    assert_eq!(code, 200, "{body}");
    let (code, body) = s.get_dpop("/policy/v1/status", &who, &m);
    assert_eq!(code, 200, "{body}");
    let home = s.home().display().to_string();
    assert!(!body.contains(&home), "the status shows paths: {body}");
    let (_, body) = s.get_dpop("/policy/v1/status", "user:admin", &admin);
    assert!(body.contains(&home), "admins see the directory: {body}");
}

#[test]
fn a_key_conflict_does_not_burn_the_enrollment_code() {
    let s = Server::demo();
    let enrolled = s.ok_json(&["agent", "enroll", "remote", "--scopes", "ci:read"]);
    let code = enrolled["code"].as_str().unwrap().to_string();
    let taken = s.key("agent:planner").public().x();
    let join = |key: &str| {
        let (status, _, body) =
            s.post_json_plain("/enroll/v1/join", &json!({"code": code, "public_key": key}));
        (status, body)
    };
    let (status, body) = join(&taken);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("still valid"), "{body}");
    let (status, body) = join(&fresh_key().public().x());
    assert_eq!(status, 200, "the code was burned by the conflict: {body}");
}

#[test]
fn a_client_assertion_typed_as_another_kind_of_token_is_refused() {
    let s = Server::demo();
    let key = s.key("agent:planner");
    for typ in ["at+jwt", "dpop+jwt"] {
        let header = json!({"typ": typ, "alg": "EdDSA"});
        let claims = json!({"iss": "agent:planner", "sub": "agent:planner", "aud": s.url,
                            "exp": now() + 60, "jti": random_id()});
        let a = sign(&header, &claims, &key);
        let (code, text) = s.post_raw(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("scope", "github:pulls.read"),
                ("audience", GITHUB),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &a),
            ],
            None,
        );
        assert_eq!(code, 401, "{typ}: {text}");
        assert!(
            text.contains("invalid_client") && text.contains("typ"),
            "{text}"
        );
    }
}

#[test]
fn the_database_and_the_issuer_keys_are_owner_only() {
    let s = Server::demo();
    assert_eq!(mode(&s.home().join("server/issuer-keys")), 0o700);
    assert_eq!(mode(&s.home().join("server/mandate.db")), 0o600);
    for e in std::fs::read_dir(s.home().join("server")).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().contains("mandate.db") {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[test]
fn a_refusal_flood_from_one_source_is_rate_limited_and_counted_in_few_events() {
    let s = Server::start_with(
        true,
        "[limits]\nper_source_rps = 20\nper_source_burst = 20\nrefusal_window = \"1s\"\n",
    );
    let before = s.db_i64("SELECT COUNT(*) FROM audit_events");
    let mut statuses = vec![];
    let mut retry_after = None;
    for _ in 0..200 {
        let (code, headers, _) =
            s.post_form("/oauth2/token", &[("grant_type", "client_credentials")]);
        if code == 429 {
            retry_after = headers.get("retry-after").cloned();
        }
        statuses.push(code);
    }
    assert!(statuses.contains(&429), "no request was rate limited");
    let retry: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    std::thread::sleep(Duration::from_millis(2500));
    let bodies = s.event_bodies();
    let new: Vec<Value> = bodies[before as usize..]
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let counted: u64 = new
        .iter()
        .filter(|e| e["action"] == "refusals.unauthenticated")
        .map(|e| e["details"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 200, "every refusal is counted: {new:?}");
    assert!(
        new.len() <= 6,
        "{} events for one source's flood",
        new.len()
    );
}

#[test]
fn a_replayed_client_assertion_authenticates_nobody() {
    let s = Server::start_with(true, "[limits]\nrefusal_window = \"1s\"\n");
    let key = s.key("agent:coder");
    let a = s.assertion(&key, "agent:coder");
    let form = |a: &str| {
        vec![
            ("grant_type".to_string(), "client_credentials".to_string()),
            ("scope".to_string(), "github:pulls.read".to_string()),
            ("audience".to_string(), GITHUB.to_string()),
            (
                "client_assertion_type".to_string(),
                ASSERTION_TYPE.to_string(),
            ),
            ("client_assertion".to_string(), a.to_string()),
        ]
    };
    let first = form(&a);
    let first: Vec<(&str, &str)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, _) = s.post_raw("/oauth2/token", &first, Some(&s.proof(&key)));
    assert_eq!(code, 200);
    let before = s.db_i64("SELECT COUNT(*) FROM audit_events");
    for _ in 0..20 {
        // Replayed, without a DPoP proof: a refusal, but never in coder's name.
        let (code, text) = s.post_raw("/oauth2/token", &first, None);
        assert_eq!(code, 401, "{text}");
        assert!(text.contains("already used"), "{text}");
    }
    std::thread::sleep(Duration::from_millis(2500));
    let new: Vec<Value> = s.event_bodies()[before as usize..]
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert!(
        new.iter().all(|e| e["principal"] != "agent:coder"),
        "a replay was recorded as coder's: {new:?}"
    );
    assert!(new.len() <= 2, "{} events for 20 replays", new.len());
}

#[test]
fn a_data_api_path_with_control_characters_is_refused_and_never_logged_raw() {
    let s = Server::demo();
    let (who, m) = s.pep();
    let path = "/v1/data/mandate/authz/decision/%1b%5b2J%0aFAKE-LOG-LINE";
    let (code, _, body) = s.post_json_dpop(path, &who, &m, &json!({"input": {}}));
    assert_eq!(code, 400, "{body}");
    let log = s.log();
    assert!(!log.contains('\u{1b}'), "an escape reached the server log");
    assert!(
        !log.contains("\nFAKE-LOG-LINE"),
        "a forged line reached the server log"
    );
}
