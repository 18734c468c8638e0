//! Presigned S3 URLs (SigV4 in the query string), so that clients upload straight to the
//! bucket without the server carrying the bytes.
//!
//! A presigned PUT names exactly one key and signs its `Content-Length` (and `Content-Type`):
//! S3 refuses a body of another size, another key, a changed URL, and any use after expiry.
//! Signing uses the same credential chain as every other S3 request ([`crate::aws`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use object_store::CredentialProvider;
use url::Url;

use crate::StorageError;
use crate::aws::SdkCredentialProvider;

/// S3's longest presigned validity (seven days); logyard asks for far less.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Signs requests for one bucket.
#[derive(Debug, Clone)]
pub struct Presigner {
    credentials: Arc<SdkCredentialProvider>,
    region: String,
    bucket: String,
    /// `https://s3.<region>.amazonaws.com` or the configured endpoint.
    endpoint: Url,
    path_style: bool,
}

/// A presigned request: the URL, and the headers the client must send with these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Presigner {
    pub fn new(
        credentials: Arc<SdkCredentialProvider>,
        region: String,
        bucket: String,
        endpoint: Option<&str>,
        path_style: bool,
    ) -> Result<Self, StorageError> {
        let endpoint = match endpoint {
            Some(e) => Url::parse(e).map_err(|err| StorageError::Config(format!("S3 endpoint {e:?}: {err}")))?,
            None => Url::parse(&format!("https://s3.{region}.amazonaws.com")).expect("a valid URL"),
        };
        Ok(Self { credentials, region, bucket, endpoint, path_style })
    }

    /// The URL of an object (the key is a full key in the bucket, `/`-separated).
    fn object_url(&self, key: &str) -> Url {
        let mut url = self.endpoint.clone();
        if !self.path_style
            && let Some(host) = url.host_str()
        {
            let host = format!("{}.{host}", self.bucket);
            url.set_host(Some(&host)).expect("a bucket name is a valid host label");
        }
        {
            let mut segments = url.path_segments_mut().expect("an http(s) URL has a path");
            segments.pop_if_empty();
            if self.path_style {
                segments.push(&self.bucket);
            }
            for part in key.split('/') {
                segments.push(part);
            }
        }
        url
    }

    /// A presigned request for `method` on `key`, with `query` parameters and `headers`
    /// signed in, valid for `expires_in`.
    pub async fn presign(
        &self,
        method: &'static str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let mut url = self.object_url(key);
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let credential =
            self.credentials.get_credential().await.map_err(StorageError::from_store("getting AWS credentials"))?;
        let identity = Credentials::new(
            credential.key_id.clone(),
            credential.secret_key.clone(),
            credential.token.clone(),
            None,
            "logyard",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in.min(MAX_EXPIRY));
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.session_token_mode = SessionTokenMode::Include;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| StorageError::Config(format!("presigning: {e}")))?
            .into();
        let host = host_header(&url);
        let mut signed: Vec<(&str, &str)> = vec![("host", host.as_str())];
        signed.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let request = SignableRequest::new(method, url.as_str(), signed.into_iter(), SignableBody::UnsignedPayload)
            .map_err(|e| StorageError::Config(format!("presigning: {e}")))?;
        let (instructions, _) =
            sign(request, &params).map_err(|e| StorageError::Config(format!("presigning: {e}")))?.into_parts();
        for (k, v) in instructions.params() {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(PresignedRequest {
            method,
            url: url.into(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        })
    }
}

impl Presigner {
    /// Starts a multipart upload of `key` (S3 CreateMultipartUpload); returns its upload id.
    pub async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StorageError> {
        let headers = [("content-type", content_type.to_owned())];
        let signed = self.presign("POST", key, &[("uploads", "")], &headers, Duration::from_secs(60)).await?;
        let body = self.send(&signed, reqwest::Method::POST, String::new(), "starting a multipart upload").await?;
        xml_value(&body, "UploadId").ok_or_else(|| {
            StorageError::Config(format!("S3 answered CreateMultipartUpload without an UploadId: {body}"))
        })
    }

    /// Finishes a multipart upload from its parts' numbers and ETags (S3 CompleteMultipartUpload).
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), StorageError> {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            let etag = etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let signed = self.presign("POST", key, &[("uploadId", upload_id)], &[], Duration::from_secs(60)).await?;
        let body = self.send(&signed, reqwest::Method::POST, xml, "completing a multipart upload").await?;
        // S3 may answer 200 with an error document.
        if body.contains("<Error>") {
            return Err(StorageError::Config(format!("S3 refused to complete the multipart upload: {body}")));
        }
        Ok(())
    }

    /// Abandons a multipart upload and its parts (S3 AbortMultipartUpload).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let signed = self.presign("DELETE", key, &[("uploadId", upload_id)], &[], Duration::from_secs(60)).await?;
        self.send(&signed, reqwest::Method::DELETE, String::new(), "aborting a multipart upload").await?;
        Ok(())
    }

    async fn send(
        &self,
        signed: &PresignedRequest,
        method: reqwest::Method,
        body: String,
        what: &str,
    ) -> Result<String, StorageError> {
        let mut request = reqwest::Client::new().request(method, &signed.url).body(body);
        for (k, v) in &signed.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let response = request.send().await.map_err(|e| StorageError::Config(format!("{what}: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| StorageError::Config(format!("{what}: {e}")))?;
        if !status.is_success() {
            return Err(StorageError::Config(format!("{what}: S3 answered {status}: {text}")));
        }
        Ok(text)
    }
}

/// The text of the first `<tag>` element of an XML document.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_owned())
}

/// `host[:port]` as a client sends it (the default port left out).
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::SharedCredentialsProvider;

    fn presigner(endpoint: Option<&str>, path_style: bool) -> Presigner {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let provider = Arc::new(SdkCredentialProvider::new(SharedCredentialsProvider::new(creds)));
        Presigner::new(provider, "eu-west-1".into(), "logs".into(), endpoint, path_style).unwrap()
    }

    #[tokio::test]
    async fn urls_name_one_key_and_sign_the_length() {
        let p = presigner(None, false);
        let r = p
            .presign(
                "PUT",
                "incoming/web/2026-11-25/u1/a b.log",
                &[],
                &[("content-length", "42".into())],
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        let url = Url::parse(&r.url).unwrap();
        assert_eq!(url.host_str(), Some("logs.s3.eu-west-1.amazonaws.com"));
        assert_eq!(url.path(), "/incoming/web/2026-11-25/u1/a%20b.log");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["X-Amz-Expires"], "600");
        assert_eq!(q["X-Amz-SignedHeaders"], "content-length;host");
        assert!(q["X-Amz-Credential"].starts_with("AKIDEXAMPLE/"));
        assert!(q["X-Amz-Credential"].ends_with("/eu-west-1/s3/aws4_request"));
        assert_eq!(q["X-Amz-Signature"].len(), 64);

        let p = presigner(Some("http://127.0.0.1:9000"), true);
        let r = p
            .presign("PUT", "k", &[("partNumber", "2"), ("uploadId", "x")], &[], Duration::from_secs(60))
            .await
            .unwrap();
        let url = Url::parse(&r.url).unwrap();
        assert_eq!((url.host_str(), url.port(), url.path()), (Some("127.0.0.1"), Some(9000), "/logs/k"));
        assert!(r.url.contains("partNumber=2&uploadId=x&"));
    }
}
