//! What every command needs: MANDATE_HOME, the output mode and how to reach the server.

use anyhow::{Context, Result};
use mandate_core::PrincipalName;

use crate::client::{Api, Identity};
use crate::home::Home;
use crate::term;

pub struct Ctx {
    pub home: Home,
    pub json: bool,
    server: Option<String>,
}

impl Ctx {
    pub fn new(json: bool, server: Option<String>) -> Result<Self> {
        Ok(Ctx {
            home: Home::locate()?,
            json,
            server,
        })
    }

    /// The server URL: `--server`, `MANDATE_SERVER`, or `config.toml`.
    pub fn server_url(&self) -> Result<String> {
        if let Some(s) = &self.server {
            return Ok(s.clone());
        }
        self.home.client_config()?.server.context(
            "no server configured: pass --server URL, set MANDATE_SERVER, or run `mandate init` / `mandate agent join`",
        )
    }

    pub fn api(&self) -> Result<Api> {
        Ok(Api::new(&self.server_url()?))
    }

    /// A principal from the command line (a bare name means an agent) with its local key.
    pub fn identity(&self, p: &str) -> Result<Identity> {
        let name = PrincipalName::parse_cli(p)?;
        let key = self.home.load_key(&name)?;
        Ok(Identity { name, key })
    }

    /// The identity admin commands run as: `principal` in config.toml (set by `mandate init`).
    pub fn admin(&self) -> Result<Identity> {
        let p = self.home.client_config()?.principal.context(
            "no admin identity in MANDATE_HOME/config.toml: run admin commands where `mandate init` ran, or set principal = \"user:NAME\" there",
        )?;
        self.identity(&p)
    }

    /// Prints a JSON value (with --json) or the human text.
    /// A closed pipe (`mandate ... | head`) ends the output quietly instead of panicking.
    /// The human text is escaped line by line ([`term::safe_lines`]) as a last line of defence:
    /// values from the server or the log should already be escaped with [`term::safe`].
    pub fn print(&self, value: &serde_json::Value, human: impl FnOnce() -> String) {
        use std::io::Write;
        let text = if self.json {
            term::json_text(&serde_json::to_string_pretty(value).expect("JSON serialises"))
                .into_owned()
        } else {
            term::safe_lines(&human()).into_owned()
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}").and_then(|_| out.flush());
    }
}
