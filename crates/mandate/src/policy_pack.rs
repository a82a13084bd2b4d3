//! The shipped default policy pack (`policies/default/` in the repository), embedded in the
//! binary so that `mandate init` / `mandate up` can install it with nothing else at hand.

use std::path::Path;

use anyhow::{Context, Result};
use mandate_policy::sources::{DataFile, DataFormat, Sources};
use mandate_policy::Policy;

/// Every file of the default pack, by name.
pub const DEFAULT_PACK: &[(&str, &str)] = &[
    (
        "authz.rego",
        include_str!("../../../policies/default/authz.rego"),
    ),
    (
        "authz_test.rego",
        include_str!("../../../policies/default/authz_test.rego"),
    ),
    (
        "data.json",
        include_str!("../../../policies/default/data.json"),
    ),
    (
        "delegation.rego",
        include_str!("../../../policies/default/delegation.rego"),
    ),
    (
        "delegation_test.rego",
        include_str!("../../../policies/default/delegation_test.rego"),
    ),
    (
        "lib.rego",
        include_str!("../../../policies/default/lib.rego"),
    ),
];

/// Writes the default pack into `dir` (created mode 0700); existing files are left alone.
pub fn install(dir: &Path) -> Result<()> {
    crate::home::Home::ensure_private_dir(dir)?;
    for (name, text) in DEFAULT_PACK {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// The default pack as sources (for in-memory use: benchmarks).
pub fn sources() -> Sources {
    let mut s = Sources::default();
    for (name, text) in DEFAULT_PACK {
        if name.ends_with(".rego") {
            s.modules.push((name.to_string(), text.to_string()));
        } else {
            s.data.push(DataFile {
                name: name.to_string(),
                prefix: vec![],
                format: DataFormat::Json,
                text: text.to_string(),
            });
        }
    }
    s
}

/// The default pack, loaded.
pub fn policy() -> Result<Policy> {
    Ok(Policy::build(
        &sources(),
        mandate_policy::policy::DEFAULT_TIMEOUT,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pack_is_exactly_the_repository_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = DEFAULT_PACK.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            embedded, on_disk,
            "add new files of policies/default to DEFAULT_PACK"
        );
        assert_eq!(
            sources().version(),
            Sources::read_dir(&dir).unwrap().version(),
            "same content, same version"
        );
    }

    #[test]
    fn the_embedded_pack_loads_and_its_tests_pass() {
        let p = policy().unwrap();
        let results = p.run_tests();
        assert!(results.len() >= 20);
        let failed: Vec<_> = results.iter().filter(|t| !t.passed).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
