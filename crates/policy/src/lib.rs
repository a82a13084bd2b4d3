//! Policy decisions for Mandate.
//!
//! Rego v1 policies (OPA-compatible) and data files are loaded from a directory, validated with
//! errors that name file and line, evaluated in-process with `regorus`, and hot-reloaded. Two
//! queries matter: `data.mandate.authz.decision` (tool calls) and
//! `data.mandate.delegation.decision` (issuance and exchange). Everything fails closed: an
//! evaluation error, an undefined or malformed result, or the time limit gives a deny that says
//! why. An external OPA server or AuthZEN PDP can take the embedded engine's place.
#![forbid(unsafe_code)]

pub mod authzen;
mod calls;
pub mod decision;
pub mod error;
pub mod external;
pub mod input;
pub mod live;
pub mod policy;
mod recursion;
mod scan;
pub mod sources;
mod vm_safety;
mod vms;

pub use decision::{Approval, Decision, Outcome, Query, Verdict};
pub use error::{EvalError, LoadError};
pub use external::{DecisionPoint, External};
pub use live::LivePolicy;
pub use policy::Policy;
pub use sources::Sources;
