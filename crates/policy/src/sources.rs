//! Reading a policy directory: `.rego` modules and `.json` / `.yaml` data files, OPA-style (a data
//! file's directory, relative to the policy directory, is the data path it is loaded under; a file
//! directly in the directory is merged at the root). Hidden files and directories are skipped.
//! The content hash of everything read is the policy version.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::LoadError;

/// At most this many files are read from a policy directory.
pub const MAX_FILES: usize = 2_000;
/// A single file larger than this is refused.
pub const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// The format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// `.json`
    Json,
    /// `.yaml` / `.yml`
    Yaml,
}

/// One data file.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Path relative to the policy directory, with `/` separators.
    pub name: String,
    /// Where under `data` its content goes (empty: merged at the root).
    pub prefix: Vec<String>,
    /// How to parse it.
    pub format: DataFormat,
    /// Its text.
    pub text: String,
}

/// Everything a policy is built from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `(name, text)` of each Rego module, sorted by name.
    pub modules: Vec<(String, String)>,
    /// Data files, sorted by name.
    pub data: Vec<DataFile>,
}

impl Sources {
    /// The policy version: `sha256:` and the first 16 hex digits of the hash of every file's name
    /// and content, in name order.
    pub fn version(&self) -> String {
        let mut h = Sha256::new();
        let mut add = |name: &str, text: &str| {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((text.len() as u64).to_be_bytes());
            h.update(text.as_bytes());
        };
        for (name, text) in &self.modules {
            add(name, text);
        }
        for d in &self.data {
            add(&d.name, &d.text);
        }
        let digest = h.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Reads a policy directory (recursively).
    pub fn read_dir(dir: &Path) -> Result<Self, LoadError> {
        let meta = std::fs::metadata(dir).map_err(|e| {
            LoadError::file(
                dir.display().to_string(),
                format!("cannot read the policy directory: {e}"),
            )
        })?;
        if !meta.is_dir() {
            return Err(LoadError::file(
                dir.display().to_string(),
                "is not a directory: give the directory that holds the .rego files",
            ));
        }
        let mut files = vec![];
        walk(dir, dir, &mut files)?;
        files.sort();
        let mut s = Sources::default();
        for (rel, path) in files {
            let ext = rel.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
            let format = match ext {
                "rego" => None,
                "json" => Some(DataFormat::Json),
                "yaml" | "yml" => Some(DataFormat::Yaml),
                _ => continue,
            };
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len > MAX_FILE_BYTES {
                return Err(LoadError::file(
                    rel,
                    format!("is {len} bytes; policy and data files are limited to {MAX_FILE_BYTES} bytes"),
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| LoadError::file(rel.clone(), format!("cannot read: {e}")))?;
            match format {
                None => s.modules.push((rel, text)),
                Some(format) => {
                    let prefix = match rel.rsplit_once('/') {
                        Some((d, _)) => d.split('/').map(str::to_string).collect(),
                        None => vec![],
                    };
                    s.data.push(DataFile {
                        name: rel,
                        prefix,
                        format,
                        text,
                    });
                }
            }
        }
        if s.modules.is_empty() {
            return Err(LoadError::file(
                dir.display().to_string(),
                "holds no .rego files: write a policy (see policies/default) or point at the right directory",
            ));
        }
        Ok(s)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LoadError::file(dir.display().to_string(), format!("cannot list: {e}")))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| LoadError::file(dir.display().to_string(), format!("cannot list: {e}")))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ty = std::fs::metadata(&path).map_err(|e| {
            LoadError::file(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        if ty.is_dir() {
            walk(root, &path, out)?;
        } else if ty.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
            if out.len() > MAX_FILES {
                return Err(LoadError::file(
                    root.display().to_string(),
                    format!(
                        "holds more than {MAX_FILES} files: point at the policy directory itself"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_are_placed_by_their_directory_and_the_version_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rego"), "package a\nx := 1\n").unwrap();
        std::fs::create_dir_all(dir.path().join("teams/infra")).unwrap();
        std::fs::write(dir.path().join("teams/infra/data.yaml"), "k: v\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        std::fs::write(dir.path().join(".hidden.rego"), "not rego").unwrap();
        let s = Sources::read_dir(dir.path()).unwrap();
        assert_eq!(s.modules.len(), 1);
        assert_eq!(s.data.len(), 1);
        assert_eq!(s.data[0].prefix, ["teams", "infra"]);
        assert_eq!(s.data[0].format, DataFormat::Yaml);
        let v1 = s.version();
        assert!(v1.starts_with("sha256:") && v1.len() == 23, "{v1}");
        std::fs::write(dir.path().join("a.rego"), "package a\nx := 2\n").unwrap();
        assert_ne!(Sources::read_dir(dir.path()).unwrap().version(), v1);
    }

    #[test]
    fn a_directory_without_rego_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = Sources::read_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("no .rego files"), "{e}");
        let e = Sources::read_dir(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
