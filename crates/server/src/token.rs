//! The token endpoint: `client_credentials` and RFC 8693 token exchange (push with
//! `requested_actor`, pull with `actor_token`), each decided by the pure rules in
//! `mandate_core::delegation`, recorded durably, then answered.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mandate_core::claims::MandateClaims;
use mandate_core::delegation::{self, Caller, Grantee, Mint, Request};
use mandate_core::verify::{self, Expect, VerifiedMandate};
use mandate_core::{PrincipalName, ScopeSet};
use mandate_store::{IssueOutcome, MandateRecord};

use mandate_audit::event::{kinds, Event};
use mandate_policy::Decision;

use crate::audit::new_event;
use crate::client_auth::{self, Client};
use crate::form::{Body, Form};
use crate::metadata::TOKEN_EXCHANGE;
use crate::oauth_error::OAuthError;
use crate::policy_hook;
use crate::principals::Loaded;
use crate::state::{now, AppState};
use crate::verified_cache;

/// RFC 8693 token type of a mandate.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const MAX_REASON: usize = 500;

/// `POST token_endpoint`.
pub async fn token(
    State(st): State<Arc<AppState>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = crate::pdp::peer(&ext);
    let mut trail = Trail::default();
    let issued = match crate::form::body(body) {
        Ok(body) => issue(&st, &headers, &body, peer, &mut trail).await,
        Err(e) => Err(e),
    };
    match issued {
        Ok(r) => r,
        Err(e) => {
            // A stranger's refusals are counted per source in the audit log; logging each one
            // would let a flood fill the server's log instead (second outside review).
            if trail.client.is_some() {
                tracing::info!(
                    error = e.code(),
                    client = trail.client.as_deref().unwrap_or_default(),
                    "token request refused"
                );
            } else {
                tracing::debug!(error = e.code(), "unauthenticated token request refused");
            }
            // A CIBA poll that is told to wait is not a refusal worth an event each time.
            let waiting = matches!(e.code(), "authorization_pending" | "slow_down");
            if waiting {
                // Told to poll again: nothing to record.
            } else if trail.client.is_some() {
                // The refusal of an authenticated client is audited before it is answered. A
                // refusal stays a refusal when the audit log cannot be written (the failure is
                // logged by `AppState::audit`).
                let _ = st.audit(&trail.refusal(&e)).await;
            } else {
                // A stranger's refusal names nobody: counted for its source's window event.
                st.refusals.record(
                    crate::pdp::peer_source(&ext),
                    crate::refusals::Refused {
                        action: &action(trail.grant.as_deref()),
                        code: e.code(),
                        reason: e.description(),
                        claimed: trail.claimed.as_deref(),
                    },
                );
            }
            e.into_response()
        }
    }
}

/// What a token request revealed before it was answered, for its audit event.
#[derive(Debug, Default)]
pub struct Trail {
    /// The grant type asked for.
    grant: Option<String>,
    /// The authenticated client.
    client: Option<String>,
    /// The client the request claimed to be (before authentication).
    claimed: Option<String>,
    /// The chain of the mandate that would be issued, once the caller is known to be entitled to
    /// ask for it (holder of the subject token, or named by its `may_act`, and the delegate
    /// registered); empty before that.
    chain: Vec<String>,
    /// The verified chain of the subject token presented (an exchange): recorded as a detail,
    /// since presenting a mandate does not make its parties part of the request.
    subject_chain: Vec<String>,
    /// The `requested_actor` the request named (its word only, until checked).
    requested_actor: Option<String>,
    /// The subject token's jti.
    parent_jti: Option<String>,
    /// The delegation policy's decision, once asked.
    pub decision: Option<Decision>,
    /// The approval request the mandate is issued for (CIBA, or a delegation held for one).
    pub approval: Option<String>,
}

/// How a mandate is being issued; the policy input's `action.mode`.
pub use mandate_policy::input::DelegationMode as Mode;

/// A mandate about to be issued, and who and what it comes from.
struct Minted {
    claims: MandateClaims,
    /// The jti of the subject token, for an exchange.
    parent_jti: Option<String>,
    /// Who authorised this hop: the caller, or for a pull the principal who named the caller
    /// in the subject token's `may_act`.
    from: String,
    mode: Mode,
    /// For a pull: the holder of the subject token (who made no request).
    pulled_from: Option<String>,
}

impl Trail {
    fn refusal(&self, e: &OAuthError) -> Event {
        // Before authentication, nobody is named as the actor: the claimed name is a detail.
        let who = self
            .client
            .clone()
            .unwrap_or_else(|| "unauthenticated".to_string());
        let mut ev = new_event(kinds::TOKEN_REFUSED, &who, &action(self.grant.as_deref()));
        if self.client.is_none() {
            if let Some(c) = &self.claimed {
                ev.details.insert("claimed_client".into(), c.clone().into());
            }
        }
        ev.chain = if self.chain.is_empty() {
            self.client.iter().cloned().collect()
        } else {
            self.chain.clone()
        };
        if !self.subject_chain.is_empty() {
            ev.details.insert(
                "subject_token".into(),
                serde_json::json!({"jti": self.parent_jti, "chain": self.subject_chain}),
            );
        }
        if let Some(to) = &self.requested_actor {
            ev.details
                .insert("requested_actor".into(), to.clone().into());
        }
        ev.result = if e.code() == "server_error" {
            "failed".into()
        } else {
            "refused".into()
        };
        ev.error = Some(e.code().to_string());
        // Descriptions can echo request values: bounded, so a request cannot bloat the log.
        ev.reasons = vec![e.description().chars().take(MAX_AUDIT_REASON).collect()];
        ev.jti = self.parent_jti.clone();
        if let Some(d) = &self.decision {
            decision_fields(&mut ev, d);
        }
        ev.approval_id = self.approval.clone();
        ev.details
            .insert("authenticated".into(), self.client.is_some().into());
        ev
    }
}

/// Longest refusal description kept in an audit event.
const MAX_AUDIT_REASON: usize = 500;

/// The audited action of a grant type.
fn action(grant: Option<&str>) -> String {
    match grant {
        Some("client_credentials") => "token.client_credentials".into(),
        Some(TOKEN_EXCHANGE) => "token.exchange".into(),
        Some(crate::ciba::GRANT) => "token.ciba".into(),
        _ => "token.request".into(),
    }
}

/// The decision's identity on a refusal's event (whose reasons are the refusal's).
fn decision_fields(ev: &mut Event, d: &Decision) {
    ev.decision = Some(d.outcome().as_str().to_string());
    ev.decision_id = Some(d.decision_id().to_string());
    ev.policy_version = Some(d.policy_version().to_string());
}

/// The issuance event of a mandate about to be handed out.
fn issued_event(
    c: &MandateClaims,
    m: &MandateRecord,
    caller: &str,
    d: &Decision,
    minted: &Minted,
    may_act: Option<&Decision>,
) -> Event {
    let exchange = m.grant_type == TOKEN_EXCHANGE;
    let mut ev = new_event(
        if exchange {
            kinds::TOKEN_EXCHANGED
        } else {
            kinds::TOKEN_ISSUED
        },
        caller,
        &action(Some(&m.grant_type)),
    );
    ev = ev
        .under(c.chain_to_holder(), Some(c.jti.clone()))
        .on(m.audiences.clone())
        .decided(
            d.outcome().as_str(),
            d.decision_id(),
            d.policy_version(),
            d.reasons(),
        );
    let details = &mut ev.details;
    details.insert("scope".into(), c.scope.clone().into());
    details.insert("audiences".into(), c.aud.as_slice().to_vec().into());
    details.insert("lifetime_secs".into(), (c.exp - c.iat).into());
    details.insert("expires_at".into(), c.exp.into());
    details.insert("depth".into(), c.mandate.depth.into());
    details.insert("holder".into(), c.client_id.clone().into());
    details.insert("subject".into(), c.sub.clone().into());
    details.insert("delegator".into(), m.delegator.clone().into());
    details.insert("grant_type".into(), m.grant_type.clone().into());
    details.insert("kid".into(), m.kid.clone().into());
    details.insert("bound".into(), c.cnf.is_some().into());
    if let Some(p) = &m.parent_jti {
        details.insert("parent_jti".into(), p.clone().into());
    }
    if let Some(r) = &m.reason {
        details.insert("reason".into(), r.clone().into());
    }
    details.insert("mode".into(), minted.mode.as_str().into());
    if let Some(holder) = &minted.pulled_from {
        // The holder of the subject token made no request: the pull was allowed by whoever
        // named the caller in its `may_act`.
        details.insert("pulled_from".into(), holder.clone().into());
        details.insert("may_act_granted_by".into(), minted.from.clone().into());
    }
    if let (Some(to), Some(d)) = (&m.may_act, may_act) {
        details.insert(
            "may_act".into(),
            serde_json::json!({
                "principal": to,
                "granted_by": caller,
                "decision_id": d.decision_id(),
            }),
        );
    }
    ev
}

async fn issue(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    peer: Option<String>,
    trail: &mut Trail,
) -> Result<Response, OAuthError> {
    let (form, dpop) = crate::form::read(headers, body)?;
    let now = now();
    trail.claimed = claimed_client(&form);
    let grant = form.required("grant_type")?;
    trail.grant = Some(grant.to_string());
    if grant != "client_credentials" && grant != TOKEN_EXCHANGE && grant != crate::ciba::GRANT {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {grant:?} is not supported: use client_credentials, {TOKEN_EXCHANGE} or {}",
            crate::ciba::GRANT
        )));
    }
    let client = client_auth::authenticate(st, &form, dpop, &st.endpoints.token, now).await?;
    trail.client = Some(client.principal.name.to_string());
    match decide_and_issue(st, &form, &client, grant, now, peer, trail).await {
        Ok(r) => Ok(r),
        Err(e) => {
            if e.code() != "invalid_client" && e.code() != "invalid_dpop_proof" {
                // A refused request's ids are spent, so it can never be replayed later; if one
                // had been used before, the request was itself a replay: it authenticated nobody,
                // and is answered and recorded as one.
                if let Some(i) = client.spend(st).await {
                    trail.client = None;
                    trail.chain.clear();
                    trail.decision = None;
                    return Err(client_auth::replay_error(i));
                }
            }
            Err(e)
        }
    }
}

async fn decide_and_issue(
    st: &AppState,
    form: &Form,
    client: &Client,
    grant: &str,
    now: i64,
    peer: Option<String>,
    trail: &mut Trail,
) -> Result<Response, OAuthError> {
    let req = request(form)?;
    let reason = form.one("reason")?.map(str::to_string);
    if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(OAuthError::invalid_request(format!(
            "reason is longer than {MAX_REASON} characters"
        )));
    }
    let jti = mandate_core::claims::new_jti(&mut rand::rngs::OsRng);
    let mint = Mint {
        issuer: &st.cfg.issuer,
        jti: &jti,
        now,
    };
    let caller = client.principal.name.to_string();
    let minted = if grant == crate::ciba::GRANT {
        let (claims, approval) = crate::ciba::claims_for(st, form, client, now).await?;
        trail.approval = Some(approval);
        Minted {
            claims,
            parent_jti: None,
            from: caller.clone(),
            mode: Mode::SelfIssued,
            pulled_from: None,
        }
    } else if grant == "client_credentials" {
        let jkt = bound_key(client)?;
        let to = grantee(&client.principal, jkt.as_deref());
        Minted {
            claims: delegation::client_credentials(mint, to, req)?,
            parent_jti: None,
            from: caller.clone(),
            mode: Mode::SelfIssued,
            pulled_from: None,
        }
    } else {
        exchange(st, form, client, mint, req, now, trail).await?
    };
    let claims = &minted.claims;
    trail.chain = claims.chain_to_holder();
    let may_act = claims.may_act.as_ref().map(|m| m.sub.clone());
    // The delegation policy sees the mandate exactly as it would be issued.
    let facts = policy_hook::DelegationFacts {
        claims,
        caller: &caller,
        from: &minted.from,
        to: &claims.client_id,
        grant_type: grant,
        mode: minted.mode,
        holder: minted.pulled_from.as_deref(),
        may_act: may_act.as_deref(),
        client_address: peer.clone(),
    };
    let decision =
        policy_hook::check_delegation(st, policy_hook::delegation_input(st, &facts), trail).await?;
    // Naming a may_act lets that principal pull this mandate later without the holder asking:
    // it is a delegation from the caller to it, decided as one.
    let may_act_decision = match &may_act {
        None => None,
        Some(to) => {
            let facts = policy_hook::DelegationFacts {
                to,
                mode: Mode::MayAct,
                from: &caller,
                holder: None,
                ..facts
            };
            let input = policy_hook::delegation_input(st, &facts);
            Some(policy_hook::check_delegation(st, input, trail).await?)
        }
    };
    // Revocation of a principal counts in whole seconds (`iat <= revoked_at`): a mandate issued in
    // the same second as its revocation would be dead on arrival, so it is not issued.
    let mut everyone = claims.chain();
    everyone.push(&claims.client_id);
    if let Some(p) = everyone
        .iter()
        .find(|p| st.revocations.principal_revoked_since(p, claims.iat))
    {
        return Err(OAuthError::invalid_grant(format!(
            "{p} was revoked within the last second; retry in a second if it has been re-enabled"
        )));
    }
    let (token, kid) = st.keys.sign(claims);
    // Nothing is issued that verifiers would refuse for its size.
    delegation::check_encoded_len(token.len())?;
    let record = MandateRecord {
        jti: claims.jti.clone(),
        parent_jti: minted.parent_jti.clone(),
        subject: claims.sub.clone(),
        delegator: minted.from.clone(),
        holder: claims.client_id.clone(),
        audiences: claims.aud.as_slice().join(" "),
        scopes: claims.scope.clone(),
        depth: i64::from(claims.mandate.depth),
        grant_type: grant.to_string(),
        reason,
        issued_at: claims.iat,
        expires_at: claims.exp,
        kid,
        may_act: may_act.clone(),
        may_act_by: may_act.as_ref().map(|_| caller.clone()),
    };
    // The request's jtis are spent, the delegation record and its audit event are durable, in one
    // commit, before the mandate is handed out.
    st.audit_log.accepting().map_err(|_| {
        OAuthError::server_error(
            "the audit log is not taking events",
            "its checkpoints have been failing for more than 5 seconds",
        )
    })?;
    let mut event = issued_event(
        claims,
        &record,
        &caller,
        &decision,
        &minted,
        may_act_decision.as_ref(),
    );
    event.approval_id = trail.approval.clone();
    if let Some(details) = &claims.authorization_details {
        event
            .details
            .insert("authorization_details".into(), details.clone().into());
    }
    let outcome = st
        .store
        .issue_audited(client.single_use.clone(), record, st.record(&event))
        .await
        .map_err(|e| OAuthError::server_error("recording the mandate failed", e))?;
    if let IssueOutcome::Replayed(i) = outcome {
        // A replay authenticated nobody: its refusal names no one.
        trail.client = None;
        trail.chain.clear();
        trail.decision = None;
        return Err(client_auth::replay_error(i));
    }
    tracing::info!(jti = %claims.jti, sub = %claims.sub, holder = %claims.client_id,
        depth = claims.mandate.depth, grant, mode = minted.mode.as_str(),
        decision = %decision.decision_id(), policy = %decision.policy_version(), "mandate issued");
    Ok(response(&token, claims, grant == TOKEN_EXCHANGE))
}

fn request(form: &Form) -> Result<Request, OAuthError> {
    let scopes = form
        .one("scope")?
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|e| OAuthError::from(delegation::DelegationError::InvalidScope(e.to_string())))?;
    let mut audiences: Vec<String> = form
        .many("audience")
        .into_iter()
        .map(String::from)
        .collect();
    for r in form.many("resource") {
        // RFC 8707: a resource is an absolute URI without a fragment.
        match url::Url::parse(r) {
            Ok(u) if u.fragment().is_none() => audiences.push(r.to_string()),
            _ => {
                return Err(delegation::DelegationError::InvalidTarget(format!(
                    "resource {r:?} must be an absolute URI without a fragment"
                ))
                .into())
            }
        }
    }
    audiences.sort();
    audiences.dedup();
    let ttl = form
        .one("ttl")?
        .map(|t| {
            mandate_core::duration::parse_duration(t)
                .map_err(|e| OAuthError::invalid_request(format!("ttl: {e}")))
        })
        .transpose()?;
    let may_act = form
        .one("may_act")?
        .map(|m| m.parse::<PrincipalName>())
        .transpose()
        .map_err(|e| OAuthError::invalid_request(format!("may_act: {e}")))?;
    Ok(Request {
        scopes,
        audiences,
        ttl,
        may_act,
    })
}

/// The key a mandate for the authenticated client itself is bound to: its DPoP key, or none
/// (bearer) when the principal is registered with bearer allowed.
pub(crate) fn bound_key(client: &Client) -> Result<Option<String>, OAuthError> {
    match &client.dpop {
        Some(p) => Ok(Some(p.jkt.clone())),
        None if client.principal.row.allow_bearer => Ok(None),
        None => Err(OAuthError::invalid_request(format!(
            "{} may only receive DPoP-bound mandates: send a DPoP proof header signed with its key (RFC 9449), or register it with --allow-bearer",
            client.principal.name
        ))),
    }
}

pub(crate) fn grantee<'a>(p: &'a Loaded, jkt: Option<&'a str>) -> Grantee<'a> {
    Grantee {
        name: &p.name,
        ceiling: &p.ceiling,
        admin: p.is_admin(),
        jkt,
    }
}

fn check_token_type(form: &Form, name: &str, required: bool) -> Result<(), OAuthError> {
    match form.one(name)? {
        Some(ACCESS_TOKEN_TYPE) | Some(JWT_TYPE) => Ok(()),
        None if !required => Ok(()),
        None => Err(OAuthError::invalid_request(format!(
            "missing parameter {name}"
        ))),
        Some(other) => Err(OAuthError::invalid_request(format!(
            "{name} {other:?} is not supported: use {ACCESS_TOKEN_TYPE}"
        ))),
    }
}

fn verify_own(
    st: &AppState,
    token: &str,
    what: &str,
    now: i64,
) -> Result<VerifiedMandate, OAuthError> {
    let key = verified_cache::key(token);
    let v = match st.verified.get(&key, now) {
        Some(v) => v,
        None => {
            let v = verify_signed(st, token, what, now)?;
            st.verified.put(key, v.clone());
            v
        }
    };
    // Revocation is checked on every use, cached verification or not.
    st.revocations
        .check(&v)
        .map_err(|e| OAuthError::invalid_grant(format!("{what} is no longer valid: {e}")))?;
    Ok(v)
}

fn verify_signed(
    st: &AppState,
    token: &str,
    what: &str,
    now: i64,
) -> Result<VerifiedMandate, OAuthError> {
    let expect = Expect {
        issuer: &st.cfg.issuer,
        audience: None,
        now,
        skew: 0,
    };
    let v = st
        .keys
        .with_keys(|keys| verify::verify_mandate(token, keys, expect))
        .map_err(|e| {
            OAuthError::invalid_grant(format!(
                "{what} is not a valid mandate from this issuer: {e}"
            ))
        })?;
    Ok(v)
}

async fn exchange(
    st: &AppState,
    form: &Form,
    client: &Client,
    mint: Mint<'_>,
    req: Request,
    now: i64,
    trail: &mut Trail,
) -> Result<Minted, OAuthError> {
    check_token_type(form, "subject_token_type", true)?;
    check_token_type(form, "requested_token_type", false)?;
    let parent = verify_own(st, form.required("subject_token")?, "subject_token", now)?;
    let parent_jti = Some(parent.claims().jti.clone());
    trail.parent_jti = parent_jti.clone();
    trail.subject_chain = parent.claims().chain_to_holder();
    trail.requested_actor = form
        .one("requested_actor")?
        .and_then(|to| to.parse::<PrincipalName>().ok())
        .map(|p| p.to_string());
    let holder = parent.claims().client_id.clone();
    let me = &client.principal;
    if let Some(actor_token) = form.one("actor_token")? {
        // Pull: the caller acts for the subject, as the subject token's may_act allows.
        check_token_type(form, "actor_token_type", true)?;
        let actor = verify_own(st, actor_token, "actor_token", now)?;
        let a = actor.claims();
        if a.client_id != me.name.as_str() || a.sub != me.name.as_str() {
            return Err(OAuthError::invalid_grant(format!(
                "actor_token must be {}'s own mandate (from client_credentials)",
                me.name
            )));
        }
        if form
            .one("requested_actor")?
            .is_some_and(|r| r != me.name.as_str())
        {
            return Err(OAuthError::invalid_request(
                "with actor_token, requested_actor must be omitted or name the caller",
            ));
        }
        delegation::authorize_exchange(
            &parent,
            Caller::Actor {
                name: me.name.as_str(),
            },
        )?;
        // The holder made no request: the pull is decided and recorded as a delegation from
        // whoever named the caller in the subject token's may_act.
        let granted_by = may_act_grantor(st, &parent.claims().jti, me.name.as_str()).await?;
        trail.chain = trail.subject_chain.clone();
        trail.chain.push(me.name.to_string());
        let jkt = bound_key(client)?;
        let to = grantee(me, jkt.as_deref());
        return Ok(Minted {
            claims: delegation::exchange(mint, &parent, to, req)?,
            parent_jti,
            from: granted_by,
            mode: Mode::Pull,
            pulled_from: Some(holder),
        });
    }
    // Push: the holder delegates to requested_actor; the new mandate is bound to its key.
    let target = form.required("requested_actor").map_err(|_| {
        OAuthError::invalid_request(
            "token exchange needs requested_actor=agent:NAME (push) or an actor_token (pull)",
        )
    })?;
    let target_name: PrincipalName = target
        .parse()
        .map_err(|e| OAuthError::invalid_request(format!("requested_actor: {e}")))?;
    if target_name.kind() != mandate_core::PrincipalKind::Agent {
        return Err(OAuthError::invalid_request(format!(
            "requested_actor must be an agent (agent:NAME), not {target_name}"
        )));
    }
    delegation::authorize_exchange(
        &parent,
        Caller::Holder {
            name: me.name.as_str(),
            jkt: &client.auth_jkt,
        },
    )?;
    let to = client_auth::load(st, target_name.as_str()).await?.ok_or_else(|| {
        OAuthError::invalid_request(format!("requested_actor {target_name} is not registered: create it with `mandate agent create`"))
    })?;
    if to.row.disabled {
        return Err(OAuthError::invalid_request(format!(
            "requested_actor {target_name} is disabled"
        )));
    }
    let jkt = to.primary_key().map(|k| k.thumbprint()).ok_or_else(|| {
        OAuthError::invalid_request(format!(
            "requested_actor {target_name} has no active key (its enrollment is pending or its key was revoked)"
        ))
    })?;
    trail.chain = trail.subject_chain.clone();
    trail.chain.push(target_name.to_string());
    let g = grantee(&to, Some(&jkt));
    Ok(Minted {
        claims: delegation::exchange(mint, &parent, g, req)?,
        parent_jti,
        from: holder,
        mode: Mode::Push,
        pulled_from: None,
    })
}

/// Who named `puller` in the `may_act` of mandate `jti`, as recorded when it was issued. A
/// mandate whose record does not say (issued before `may_act` was recorded) cannot be pulled.
async fn may_act_grantor(st: &AppState, jti: &str, puller: &str) -> Result<String, OAuthError> {
    let record =
        st.store.mandate(jti).await.map_err(|e| {
            OAuthError::server_error("reading the subject_token's record failed", e)
        })?;
    match record {
        Some(MandateRecord {
            may_act: Some(m),
            may_act_by: Some(by),
            ..
        }) if m == puller => Ok(by),
        _ => Err(OAuthError::invalid_grant(
            "the subject_token's may_act was not recorded when it was issued, so who allowed this pull is unknown: ask its holder to delegate with requested_actor instead",
        )),
    }
}

/// The principal a request claims to be before it is authenticated: `client_id`, or the `iss` of
/// the client assertion (read without trusting it; only for the refusal's audit event).
fn claimed_client(form: &Form) -> Option<String> {
    if let Ok(Some(id)) = form.one("client_id") {
        // Only a valid principal name is kept: anything else (a pasted token, escape sequences)
        // never reaches the audit log.
        return id.parse::<PrincipalName>().ok().map(|p| p.to_string());
    }
    let assertion = form.one("client_assertion").ok()??;
    let payload = assertion.split('.').nth(1)?;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iss = v.get("iss")?.as_str()?;
    iss.parse::<PrincipalName>().ok().map(|p| p.to_string())
}

fn response(token: &str, c: &MandateClaims, exchange: bool) -> Response {
    let mut body = serde_json::json!({
        "access_token": token,
        "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": c.exp - c.iat,
        "scope": c.scope,
    });
    if exchange {
        body["issued_token_type"] = ACCESS_TOKEN_TYPE.into();
    }
    let mut r = Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}
