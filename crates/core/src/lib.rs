//! Mandate's core: the pure, I/O-free rules of the system.
//!
//! Keys and their five accepted encodings, compact JWS signing and verification, mandate claims,
//! the scope algebra, the delegation rules of the token endpoint, DPoP proofs and RFC 7523 client
//! assertions. Every function takes the current time, keys and inputs as arguments: nothing here
//! reads a clock, a file, a socket or the environment, so every state can be tested directly.
#![forbid(unsafe_code)]

pub mod approval;
pub mod assertion;
pub mod causes;
pub mod claims;
pub mod delegation;
pub mod dpop;
pub mod duration;
pub mod jws;
pub mod keys;
pub mod principal;
pub mod refusal;
pub mod revocation;
pub mod scope;
pub mod secrets;
pub mod verify;

pub use claims::{Act, Cnf, MandateClaims, MandateInfo};
pub use keys::{KeyError, PublicKey, SecretKey};
pub use principal::{PrincipalKind, PrincipalName};
pub use refusal::RefusalCode;
pub use scope::{Scope, ScopeSet};

/// Seconds since the Unix epoch: the only notion of time the core knows. Callers pass it in.
pub type UnixTime = i64;
