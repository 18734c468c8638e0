//! Where the data lives: a local directory, an S3 prefix, or memory (tests).

use std::fmt;
use std::path::{Path as FsPath, PathBuf};

use url::Url;

use crate::StorageError;

/// A parsed `--storage` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local filesystem (absolute after [`Location::parse`]).
    Local(PathBuf),
    /// `s3://bucket/prefix`
    S3 { bucket: String, prefix: String },
    /// `memory://`: a process-local store, gone at exit.
    Memory,
}

impl Location {
    /// Parses a path, `file://` URL, `s3://bucket/prefix` or `memory://`.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(StorageError::InvalidLocation(s.into(), "empty".into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !valid_bucket(bucket) {
                return Err(StorageError::InvalidLocation(
                    s.into(),
                    "the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'".into(),
                ));
            }
            return Ok(Location::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        if s == "memory://" || s == "memory:///" {
            return Ok(Location::Memory);
        }
        if s.starts_with("file://") {
            let url = Url::parse(s).map_err(|e| StorageError::InvalidLocation(s.into(), e.to_string()))?;
            let path =
                url.to_file_path().map_err(|_| StorageError::InvalidLocation(s.into(), "not a local path".into()))?;
            return Ok(Location::Local(path));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(StorageError::InvalidLocation(
                s.into(),
                format!("unsupported scheme {scheme:?}: use a path, file://, s3:// or memory://"),
            ));
        }
        Ok(Location::Local(absolute(FsPath::new(s))?))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
}

fn absolute(p: &FsPath) -> Result<PathBuf, StorageError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| StorageError::Io("current directory".into(), e))?;
    Ok(cwd.join(p))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Memory => f.write_str("memory://"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            Location::parse("s3://logs-bucket/a/b/").unwrap(),
            Location::S3 { bucket: "logs-bucket".into(), prefix: "a/b".into() }
        );
        assert_eq!(
            Location::parse("s3://logs-bucket").unwrap(),
            Location::S3 { bucket: "logs-bucket".into(), prefix: "".into() }
        );
        assert_eq!(Location::parse("memory://").unwrap(), Location::Memory);
        assert_eq!(Location::parse("file:///var/lib/x").unwrap(), Location::Local("/var/lib/x".into()));
        assert_eq!(Location::parse("/data").unwrap(), Location::Local("/data".into()));
        assert!(matches!(Location::parse("rel/dir").unwrap(), Location::Local(p) if p.is_absolute()));
    }

    #[test]
    fn rejects_bad_locations_with_reasons() {
        let e = Location::parse("gs://x/y").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme \"gs\""), "{e}");
        let e = Location::parse("s3://Bad_Bucket/x").unwrap_err().to_string();
        assert!(e.contains("bucket name"), "{e}");
    }
}
