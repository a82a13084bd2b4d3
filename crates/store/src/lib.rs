//! Mandate's storage layer: principals and their keys, enrollment codes,
//! issued mandates, used single-use jtis and the issuer's own signing keys.
//!
//! The crate speaks plain strings and integers so that it does not depend on
//! the token logic in `mandate-core`. Storage is SQLite in WAL mode with full
//! fsync durability; the hot writes (`use_jti`, `record_mandate`) go through a
//! group-commit writer task so many requests share one fsync. The SQL is kept
//! portable so a PostgreSQL backend can reuse it later.

#![forbid(unsafe_code)]

mod approvals;
mod audit;
mod enrollment;
mod error;
mod issuer_keys;
mod jtis;
mod mandates;
mod principals;
mod revocations;
mod store;
mod upstreams;
mod writer;

pub use approvals::{Resolution, StoredApproval, StoredVote};
pub use audit::{
    hex, unhex, AuditQuery, AuditRecord, IntegrateError, Integrator, ProofBuildError,
    StoredCheckpoint, StoredEvent,
};
pub use enrollment::JoinOutcome;
pub use error::StoreError;
pub use issuer_keys::IssuerKey;
pub use mandates::MandateRecord;
pub use principals::{NewKey, NewPrincipal, Principal, PrincipalKey};
pub use revocations::Revocation;
pub use store::Store;
pub use upstreams::StoredUpstream;
pub use writer::IssueOutcome;
