//! Presign planning: checking an upload request, recording it as pending, and saying where
//! the bytes go — one presigned PUT, or a multipart plan whose parts each get a URL (fresh
//! ones for a client that resumes). On local storage the URLs are the stand-in's, carrying a
//! capability. Does not receive bytes, and does not read or ingest objects.

use serde::{Deserialize, Serialize};

use logyard_core::StreamName;
use logyard_core::time::{self, Micros};

use super::local::sha256_hex;
use super::record::{
    INCOMING_DIR, UploadError, UploadFormat, UploadRecord, UploadRequest, UploadState, Uploads, expired,
};

/// How a large file is sent: `parts` parts of `part_size` bytes (the last one shorter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Multipart {
    pub part_size: u64,
    pub parts: u32,
    /// S3's id of the multipart upload (none on local storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_upload_id: Option<String>,
}

impl Multipart {
    fn plan(size: u64, min_part: u64) -> Self {
        // S3 allows 10,000 parts; parts are whole MiB.
        let part_size = min_part.max(size.div_ceil(10_000)).div_ceil(1 << 20) * (1 << 20);
        Multipart { part_size, parts: size.div_ceil(part_size) as u32, s3_upload_id: None }
    }

    /// Bytes of part `n` (1-based) of a file of `size` bytes.
    pub fn part_bytes(&self, size: u64, n: u32) -> u64 {
        let start = u64::from(n - 1) * self.part_size;
        (size - start).min(self.part_size)
    }
}

/// Where and how one part is sent.
#[derive(Debug, Clone, Serialize)]
pub struct PartTarget {
    pub part_number: u32,
    pub method: &'static str,
    pub url: String,
    pub size: u64,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Where and how the client sends the bytes.
#[derive(Debug, Clone, Serialize)]
pub struct UploadTarget {
    pub method: &'static str,
    /// The URL of a single PUT; `None` for a multipart plan.
    pub url: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    /// A multipart plan's parts (send each, keep each answer's `ETag`, then complete with them).
    pub parts: Option<Vec<PartTarget>>,
    pub expires_at: String,
}

impl Uploads {
    /// Checks a request, records a pending upload, and says where to send the bytes.
    pub async fn create(
        &self,
        request: UploadRequest,
        principal: &str,
    ) -> Result<(UploadRecord, UploadTarget), UploadError> {
        let stream = StreamName::new(&request.stream).map_err(|e| UploadError::Invalid(e.to_string()))?;
        if request.size == 0 {
            return Err(UploadError::Invalid("size must be at least 1 byte".into()));
        }
        if request.size > self.options.max_bytes {
            return Err(UploadError::TooLarge(format!(
                "size {} is over the limit of {} bytes",
                request.size, self.options.max_bytes
            )));
        }
        check_content_type(&request.content_type)?;
        if request.format == UploadFormat::Alb {
            return Err(UploadError::Invalid(
                "format alb: ALB access logs are read from their bucket with `logyard import alb`".into(),
            ));
        }
        let filename = sanitize_filename(&request.filename)?;
        let now = time::now_micros();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let date = time::date_string(now);
        let key = format!("{INCOMING_DIR}/{stream}/{date}/{id}/{filename}");
        let expires = now + self.options.url_expiry.as_micros() as Micros;
        let record = UploadRecord {
            upload_id: id.clone(),
            stream: stream.to_string(),
            filename,
            key: key.clone(),
            size: request.size,
            content_type: request.content_type.clone(),
            format: request.format,
            state: UploadState::Pending,
            principal: principal.to_owned(),
            created_at: time::rfc3339(now),
            expires_at: time::rfc3339(expires),
            rows: 0,
            rejected: 0,
            errors: Vec::new(),
            chunks: 0,
            failure: None,
            archived: None,
            data_token_sha256: None,
            multipart: None,
        };
        let mut record = record;
        // The length and type are signed, and so is `If-None-Match: *`: the URL writes the
        // object once; S3 answers a second PUT with 412.
        let headers = [
            ("content-length", request.size.to_string()),
            ("content-type", request.content_type.clone()),
            ("if-none-match", "*".to_owned()),
        ];
        let local_token = self.storage.presigner().is_none().then(|| {
            // No S3 to presign against: the URLs carry a capability for this upload alone.
            let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            record.data_token_sha256 = Some(sha256_hex(&token));
            token
        });
        let target = if request.size > self.options.multipart_threshold {
            let mut plan = Multipart::plan(request.size, self.options.part_bytes);
            if let Some(presigner) = self.storage.presigner() {
                let full_key = self.storage.full_key(&key);
                plan.s3_upload_id = Some(presigner.create_multipart(&full_key, &request.content_type).await?);
            }
            // A multipart upload may take long: the record lives `multipart_expiry`, each URL
            // `url_expiry`.
            record.expires_at = time::rfc3339(now + self.options.multipart_expiry.as_micros() as Micros);
            let numbers: Vec<u32> = (1..=plan.parts).collect();
            record.multipart = Some(plan);
            let parts = self.part_targets(&record, &numbers, local_token.as_deref()).await?;
            UploadTarget {
                method: "PUT",
                url: None,
                headers: Default::default(),
                parts: Some(parts),
                expires_at: record.expires_at.clone(),
            }
        } else {
            match self.storage.presigner() {
                Some(presigner) => {
                    let signed = presigner
                        .presign("PUT", &self.storage.full_key(&key), &[], &headers, self.options.url_expiry)
                        .await?;
                    UploadTarget {
                        method: signed.method,
                        url: Some(signed.url),
                        headers: signed.headers.into_iter().collect(),
                        parts: None,
                        expires_at: record.expires_at.clone(),
                    }
                }
                None => UploadTarget {
                    method: "PUT",
                    url: Some(format!(
                        "{}/api/v1/uploads/{id}/data?token={}",
                        self.options.public_url.trim_end_matches('/'),
                        local_token.as_deref().unwrap_or_default()
                    )),
                    headers: headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    parts: None,
                    expires_at: record.expires_at.clone(),
                },
            }
        };
        self.save(&record).await?;
        Ok((record, target))
    }

    /// Fresh URLs for parts of a multipart upload (they expire after `url_expiry`; a client
    /// that resumes asks again). On local storage the capability is the one given.
    pub async fn part_targets(
        &self,
        record: &UploadRecord,
        numbers: &[u32],
        local_token: Option<&str>,
    ) -> Result<Vec<PartTarget>, UploadError> {
        let plan = record.multipart.as_ref().ok_or_else(|| UploadError::Invalid("not a multipart upload".into()))?;
        let mut out = Vec::with_capacity(numbers.len());
        for &n in numbers {
            if n == 0 || n > plan.parts {
                return Err(UploadError::Invalid(format!("part {n}: parts are numbered 1 to {}", plan.parts)));
            }
            let size = plan.part_bytes(record.size, n);
            let headers = [("content-length", size.to_string())];
            let (url, headers) = match (self.storage.presigner(), &plan.s3_upload_id) {
                (Some(presigner), Some(s3_id)) => {
                    let number = n.to_string();
                    let signed = presigner
                        .presign(
                            "PUT",
                            &self.storage.full_key(&record.key),
                            &[("partNumber", &number), ("uploadId", s3_id)],
                            &headers,
                            self.options.url_expiry,
                        )
                        .await?;
                    (signed.url, signed.headers)
                }
                _ => (
                    format!(
                        "{}/api/v1/uploads/{}/parts/{n}?token={}",
                        self.options.public_url.trim_end_matches('/'),
                        record.upload_id,
                        local_token.unwrap_or_default()
                    ),
                    headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
                ),
            };
            out.push(PartTarget { part_number: n, method: "PUT", url, size, headers: headers.into_iter().collect() });
        }
        Ok(out)
    }

    /// Fresh part URLs for a client resuming a multipart upload (on local storage it proves
    /// the capability of the first URLs).
    pub async fn resume_parts(
        &self,
        id: &str,
        numbers: &[u32],
        token: Option<&str>,
    ) -> Result<Vec<PartTarget>, UploadError> {
        let record = self.status(id).await?;
        if self.storage.presigner().is_none() {
            self.check_capability(&record, token.unwrap_or_default())?;
        } else if record.state != UploadState::Pending || expired(&record) {
            return Err(UploadError::Conflict {
                id: id.into(),
                state: record.state,
                message: "it can no longer receive parts".into(),
            });
        }
        self.part_targets(&record, numbers, token).await
    }
}

/// A media type `type/subtype` with optional parameters, in the characters HTTP allows.
fn check_content_type(value: &str) -> Result<(), UploadError> {
    let essence = value.split(';').next().unwrap_or("").trim();
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c));
    let valid = value.len() <= 200
        && value.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
        && essence.split_once('/').is_some_and(|(t, s)| token(t) && token(s));
    if valid { Ok(()) } else { Err(UploadError::Invalid(format!("content_type {value:?} is not a media type"))) }
}

/// The last path component, in characters that are safe in keys and archives.
fn sanitize_filename(name: &str) -> Result<String, UploadError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).take(200).collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        return Err(UploadError::Invalid(format!("filename {name:?} has no usable characters")));
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_reduced_to_safe_characters() {
        assert_eq!(sanitize_filename("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_filename("C:\\logs\\app 1.log").unwrap(), "app_1.log");
        assert_eq!(sanitize_filename(".hidden").unwrap(), "hidden");
        assert_eq!(sanitize_filename("été.ndjson").unwrap(), "_t_.ndjson");
        assert!(sanitize_filename("../").is_err());
    }

    #[test]
    fn content_types_are_checked() {
        for ok in ["application/x-ndjson", "text/plain; charset=utf-8", "application/gzip"] {
            assert!(check_content_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "text", "text/", "a/b\r\nx: y", "tëxt/plain"] {
            assert!(check_content_type(bad).is_err(), "{bad}");
        }
    }
}
