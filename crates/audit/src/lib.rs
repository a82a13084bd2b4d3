//! The pure parts of Mandate's tamper-evident audit log. Nothing here does I/O: storage lives in
//! `mandate-store`, signing keys and clocks come in as arguments.
//!
//! - [`merkle`]: RFC 6962 (RFC 9162 §2.1) leaf and node hashing, tree heads, inclusion and
//!   consistency proofs, and the compact range ("frontier") an appender keeps.
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes, signed and
//!   verified with Ed25519.
//! - [`event`]: the audit event, its canonical JSON (the bytes that become a leaf) and the
//!   HMAC-SHA256 redaction of argument values.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod event;
pub mod merkle;
pub mod redact;
pub mod sink;
pub mod verify;
