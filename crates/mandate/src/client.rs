//! The command line's HTTP client: discovery (RFC 8414, with the §3.3 issuer check and the token
//! endpoint kept on the issuer's origin, before any credential is sent), mandates by
//! `private_key_jwt` + DPoP, and admin API calls authenticated by the admin's own DPoP-bound
//! mandate.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use mandate_core::{assertion, dpop, PrincipalName, SecretKey};
use rand::RngCore;
use serde::Deserialize;

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The RFC 8693 token type of a mandate.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A principal and its private key.
pub struct Identity {
    pub name: PrincipalName,
    pub key: SecretKey,
}

/// The metadata fields the client uses.
#[derive(Debug, Deserialize, Clone)]
pub struct Metadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// A token endpoint answer.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

/// A client of one server.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    meta: Option<Metadata>,
    /// The mandate held for authenticated calls, and its scope.
    admin_token: Option<(String, String)>,
}

pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn unix_now() -> i64 {
    mandate_server::now()
}

/// Turns an error body into one line: `error: description`.
fn error_line(status: reqwest::StatusCode, body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.get("error").is_some() => format!(
            "{}: {}",
            v["error"].as_str().unwrap_or("error"),
            v.get("error_description")
                .and_then(|d| d.as_str())
                .unwrap_or("(no description)")
        ),
        _ => format!("HTTP {status}"),
    }
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                // A redirect would re-send an assertion or a proof to wherever it points: the
                // issuer's endpoints are called where its metadata says, and nowhere else.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("HTTP client builds"),
            meta: None,
            admin_token: None,
        }
    }

    pub async fn metadata(&mut self) -> Result<Metadata> {
        if let Some(m) = &self.meta {
            return Ok(m.clone());
        }
        let url = format!("{}/.well-known/oauth-authorization-server", self.base);
        let resp = self.http.get(&url).send().await.with_context(|| {
            format!("cannot reach the Mandate server at {}: is `mandate serve` running? (set --server or MANDATE_SERVER)", self.base)
        })?;
        if !resp.status().is_success() {
            bail!(
                "{url} answered HTTP {}: is this a Mandate server?",
                resp.status()
            );
        }
        let m: Metadata = resp
            .json()
            .await
            .context("server metadata is not valid JSON")?;
        // RFC 8414 §3.3: a server answering with another issuer's metadata would collect client
        // assertions addressed to that issuer and could replay them there.
        if mandate_verify::check_issuer(&self.base, &m.issuer).is_err() {
            bail!(
                "the server at {} answered with the metadata of another issuer, {:?} (RFC 8414 §3.3), so nothing was sent to it: if {:?} is your Mandate server, pass --server {} (or set MANDATE_SERVER); otherwise fix --server",
                self.base,
                m.issuer,
                m.issuer,
                m.issuer
            );
        }
        // Only the issuer's own origin may receive what the token endpoint is sent.
        if mandate_verify::check_same_origin(&m.issuer, "token_endpoint", &m.token_endpoint)
            .is_err()
        {
            bail!(
                "the metadata of {} names a token_endpoint on another origin, {:?}, so no client assertion was sent: check that --server names your Mandate server",
                self.base,
                m.token_endpoint
            );
        }
        self.meta = Some(m.clone());
        Ok(m)
    }

    /// Calls the token endpoint as `id` with the given grant parameters. `dpop` adds a proof.
    pub async fn token(
        &mut self,
        id: &Identity,
        params: &[(&str, String)],
        dpop: bool,
    ) -> Result<TokenResponse> {
        let m = self.metadata().await?;
        let now = unix_now();
        let assertion = assertion::make(&id.key, id.name.as_str(), &m.issuer, now, &random_id());
        let mut form: Vec<(&str, String)> = vec![
            ("client_assertion_type", assertion::ASSERTION_TYPE.into()),
            ("client_assertion", assertion),
            ("client_id", id.name.to_string()),
        ];
        form.extend(params.iter().cloned());
        let mut req = self.http.post(&m.token_endpoint).form(&form);
        if dpop {
            req = req.header(
                "DPoP",
                dpop::make_proof(&id.key, "POST", &m.token_endpoint, now, &random_id(), None),
            );
        }
        let resp = req.send().await.context("token request failed")?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("the server refused: {}", error_line(status, &body));
        }
        serde_json::from_str(&body).context("token response is not valid JSON")
    }

    /// The issuer's JWKS.
    pub async fn jwks(&mut self) -> Result<serde_json::Value> {
        let m = self.metadata().await?;
        let r = self.http.get(&m.jwks_uri).send().await?;
        if !r.status().is_success() {
            bail!("JWKS fetch failed: HTTP {}", r.status());
        }
        Ok(r.json().await?)
    }

    /// Calls the admin API as `admin`, with a DPoP-bound admin mandate obtained on first use.
    pub async fn admin(
        &mut self,
        admin: &Identity,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let path = format!("/admin/v1{path}");
        self.call_as(
            admin,
            mandate_core::delegation::ADMIN_SCOPE,
            method,
            &path,
            body,
        )
        .await
    }

    /// Calls one of the authority's APIs (`path` below the issuer) as `who`, with `who`'s own
    /// DPoP-bound mandate for `scope` (audience the issuer), obtained on first use and kept for
    /// this client's life (five minutes at most).
    pub async fn call_as(
        &mut self,
        who: &Identity,
        scope: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let m = self.metadata().await?;
        if self.admin_token.as_ref().is_none_or(|(s, _)| s != scope) {
            let t = self
                .token(
                    who,
                    &[
                        ("grant_type", "client_credentials".into()),
                        ("scope", scope.into()),
                        ("audience", m.issuer.clone()),
                        ("ttl", "300".into()),
                    ],
                    true,
                )
                .await
                .with_context(|| {
                    if scope == mandate_core::delegation::ADMIN_SCOPE {
                        format!("cannot obtain an admin mandate as {}", who.name)
                    } else {
                        format!("cannot obtain a mandate for {scope} as {}", who.name)
                    }
                })?;
            self.admin_token = Some((scope.to_string(), t.access_token));
        }
        let token = self.admin_token.clone().expect("set above").1;
        let url = format!("{}{path}", m.issuer);
        let proof = dpop::make_proof(
            &who.key,
            method.as_str(),
            &url,
            unix_now(),
            &random_id(),
            Some(&token),
        );
        let mut req = self
            .http
            .request(method, &url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", proof);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("request to {url} failed"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(anyhow!("the server refused: {}", error_line(status, &text)));
        }
        serde_json::from_str(&text).context("the server's answer is not valid JSON")
    }

    /// Posts JSON without authentication (enrollment).
    pub async fn post_json(
        &mut self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("the server refused: {}", error_line(status, &text));
        }
        Ok(serde_json::from_str(&text)?)
    }
}
