//! RFC 8414 §3.3 in the command line: the CLI sends a client assertion only to a server whose
//! metadata names the URL it was asked to use, and only to a token endpoint on that issuer's
//! origin. A fake server that answers with the real issuer's metadata (so that an assertion it
//! collects carries the real issuer's `aud` and could be replayed there) gets nothing.

mod common;

use common::fake::{metadata, Fake};
use common::{assert_one_line_error, describe, Server, GITHUB};

/// Runs the CLI in the real server's home (where alice's and the admin's keys are) against
/// `--server url`.
fn against(s: &Server, url: &str, args: &[&str]) -> (Vec<String>, std::process::Output) {
    let mut all: Vec<String> = vec!["--server".into(), url.into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = s.cli(&refs);
    (all, out)
}

#[test]
fn a_server_answering_with_another_issuers_metadata_receives_no_assertion() {
    let s = Server::demo();
    let real = s.url.clone();
    // The impostor copies the real issuer's metadata but keeps the endpoints for itself.
    let fake = Fake::start(move |req, me| match req.path.as_str() {
        "/.well-known/oauth-authorization-server" => (200, metadata(&real, me)),
        _ => (400, r#"{"error":"invalid_client"}"#.into()),
    });
    let commands: [&[&str]; 3] = [
        &[
            "token",
            "issue",
            "--as",
            "user:alice",
            "--aud",
            GITHUB,
            "--scope",
            "github:pulls.write",
        ],
        &[
            "delegate",
            "--as",
            "user:alice",
            "--to",
            "planner",
            "--aud",
            GITHUB,
            "--scope",
            "github:pulls.write",
        ],
        &["agent", "list"],
    ];
    for args in commands {
        let (all, out) = against(&s, &fake.url, args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let line = assert_one_line_error(&refs, &out);
        assert!(
            line.contains(&fake.url) && line.contains(&s.url) && line.contains("--server"),
            "the error says what was asked, what answered and how to fix it: {line}"
        );
    }
    assert!(
        fake.with_method("POST").is_empty(),
        "an assertion was sent to the impostor: {:?}",
        fake.requests()
    );
}

#[test]
fn a_token_endpoint_on_another_origin_receives_no_assertion() {
    let s = Server::demo();
    let elsewhere = Fake::start(|_, _| (400, r#"{"error":"invalid_client"}"#.into()));
    let target = elsewhere.url.clone();
    // Metadata that names the server asked, but sends the token request to another origin.
    let server = Fake::start(move |req, me| match req.path.as_str() {
        "/.well-known/oauth-authorization-server" => (200, metadata(me, &target)),
        _ => (400, r#"{"error":"invalid_client"}"#.into()),
    });
    let args = [
        "token",
        "issue",
        "--as",
        "user:alice",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write",
    ];
    let (all, out) = against(&s, &server.url, &args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let line = assert_one_line_error(&refs, &out);
    assert!(
        line.contains("token_endpoint") && line.contains(&elsewhere.url),
        "{line}"
    );
    assert!(
        elsewhere.requests().is_empty() && server.with_method("POST").is_empty(),
        "an assertion left: {:?} {:?}",
        elsewhere.requests(),
        server.requests()
    );
}

#[test]
fn the_real_server_with_a_trailing_slash_is_still_accepted() {
    let s = Server::demo();
    let url = format!("{}/", s.url);
    let args = [
        "token",
        "issue",
        "--as",
        "user:alice",
        "--aud",
        GITHUB,
        "--scope",
        "github:pulls.write",
    ];
    let (all, out) = against(&s, &url, &args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    assert!(out.status.success(), "{}", describe(&refs, &out));
}
