//! `logyard doctor`: a checklist of what a deployment needs, each line ok or fail with a
//! one-line fix naming the usual EKS causes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::ProvideCredentials;
use serde::Serialize;

use logyard_storage::Location;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    Skip,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Ok, detail: detail.into(), fix: None }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Skip, detail: detail.into(), fix: None }
    }
}

/// Runs every check. `config` is `Err` when the configuration did not load.
pub async fn run(config: anyhow::Result<Config>, env: &BTreeMap<String, String>) -> Vec<Check> {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::fail(
                "config",
                format!("{e:#}"),
                "fix the key named above in the file given to --config or in its LOGYARD_* variable",
            )];
        }
    };
    let mut checks = vec![Check::ok("config", "valid")];
    let location = match Location::parse(&config.storage.url) {
        Ok(l) => l,
        Err(e) => {
            checks.push(Check::fail(
                "storage",
                e.to_string(),
                "set storage.url to a path, s3://bucket/prefix or memory://",
            ));
            return checks;
        }
    };
    checks.extend(aws_checks(&config, env, &location).await);
    checks.push(storage_check(&config, env, &location).await);
    checks.push(wal_check(&crate::wal_dir(&config).unwrap_or_else(|_| "./logyard-wal".into())));
    checks
}

fn is_s3(location: &Location) -> bool {
    matches!(location, Location::S3 { .. })
}

/// Where the credentials come from, read from the features the SDK records on them.
fn source(creds: &aws_credential_types::Credentials) -> &'static str {
    let features = creds.get_property::<Vec<AwsCredentialFeature>>().cloned().unwrap_or_default();
    let has = |f: AwsCredentialFeature| features.contains(&f);
    if has(AwsCredentialFeature::CredentialsEnvVarsStsWebIdToken)
        || has(AwsCredentialFeature::CredentialsStsAssumeRoleWebId)
        || has(AwsCredentialFeature::CredentialsProfileStsWebIdToken)
    {
        "web identity token (IRSA)"
    } else if has(AwsCredentialFeature::CredentialsHttp) {
        "container credentials endpoint (EKS Pod Identity or ECS)"
    } else if has(AwsCredentialFeature::CredentialsImds) {
        "instance metadata (IMDS, the node's role)"
    } else if has(AwsCredentialFeature::CredentialsEnvVars) {
        "environment variables"
    } else if has(AwsCredentialFeature::CredentialsProfile)
        || has(AwsCredentialFeature::CredentialsProfileSourceProfile)
        || has(AwsCredentialFeature::CredentialsProfileSso)
        || has(AwsCredentialFeature::CredentialsProfileProcess)
    {
        "shared config profile"
    } else {
        "the AWS SDK default chain"
    }
}

const CREDENTIALS_FIX: &str = "on EKS: with Pod Identity, create the association for this ServiceAccount (aws eks create-pod-identity-association) and run the eks-pod-identity-agent add-on; with IRSA, annotate the ServiceAccount with eks.amazonaws.com/role-arn and check the role's trust policy names the cluster's OIDC provider; IMDS answers pods only with a hop limit of 2 or more";

async fn aws_checks(config: &Config, env: &BTreeMap<String, String>, location: &Location) -> Vec<Check> {
    if !is_s3(location) {
        return vec![
            Check::skip("credentials", "not needed: storage is not S3"),
            Check::skip("identity", "not needed"),
        ];
    }
    let sdk = logyard_storage::aws::load_sdk_config(config.storage.s3_region.clone()).await;
    let mut out = Vec::new();
    match sdk.region() {
        Some(r) => out.push(Check::ok("region", r.to_string())),
        None => out.push(Check::fail(
            "region",
            "no region",
            "set AWS_REGION (the chart does), or storage.s3_region; on EC2 IMDS gives it only with a hop limit of 2 or more",
        )),
    }
    let Some(provider) = sdk.credentials_provider() else {
        out.push(Check::fail("credentials", "no credential provider", CREDENTIALS_FIX));
        return out;
    };
    let creds = match tokio::time::timeout(Duration::from_secs(20), provider.provide_credentials()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            out.push(Check::fail("credentials", logyard_core::error_chain(&e), CREDENTIALS_FIX));
            return out;
        }
        Err(_) => {
            out.push(Check::fail("credentials", "no answer within 20 s", CREDENTIALS_FIX));
            return out;
        }
    };
    let expiry = match creds.expiry() {
        None => "do not expire".to_owned(),
        Some(t) => match t.duration_since(SystemTime::now()) {
            Ok(left) => format!(
                "expire in {} (refreshed 5 minutes before)",
                humantime::format_duration(Duration::from_secs(left.as_secs()))
            ),
            Err(_) => "have expired".to_owned(),
        },
    };
    out.push(Check::ok("credentials", format!("from {}; {expiry}", source(&creds))));
    let mut sts = aws_sdk_sts::config::Builder::from(&sdk);
    if let Some(endpoint) = env.get("AWS_ENDPOINT_URL_STS") {
        sts = sts.endpoint_url(endpoint);
    }
    let client = aws_sdk_sts::Client::from_conf(sts.build());
    match tokio::time::timeout(Duration::from_secs(20), client.get_caller_identity().send()).await {
        Ok(Ok(id)) => {
            out.push(Check::ok(
                "identity",
                format!("{} (account {})", id.arn().unwrap_or("?"), id.account().unwrap_or("?")),
            ));
            if let Some(role) = &config.storage.s3_role_arn {
                let external_id = config.storage.s3_role_external_id.as_deref();
                out.push(role_check(&client, id.arn().unwrap_or("?"), role, external_id).await);
            }
        }
        Ok(Err(e)) => out.push(Check::fail(
            "identity",
            logyard_core::error_chain(&e),
            "STS refused the credentials: check they belong to the role you expect and that the pod reaches sts (a VPC endpoint or NAT)",
        )),
        Err(_) => out.push(Check::fail("identity", "STS did not answer within 20 s", "the pod must reach STS: add an STS VPC endpoint or a NAT route")),
    }
    out
}

/// `storage.s3_role_arn`: the pod's identity (`caller`) assumes the bucket account's role.
/// Two policies must allow it; the fix names the one STS says refused, or both when it does
/// not say.
async fn role_check(client: &aws_sdk_sts::Client, caller: &str, role: &str, external_id: Option<&str>) -> Check {
    let request = client
        .assume_role()
        .role_arn(role)
        .role_session_name("logyard-doctor")
        .duration_seconds(900)
        .set_external_id(external_id.map(str::to_owned));
    match tokio::time::timeout(Duration::from_secs(20), request.send()).await {
        Ok(Ok(out)) => {
            let assumed = out.assumed_role_user().map_or("?", |u| u.arn());
            Check::ok("storage role", format!("{caller} assumed {role}: the storage is reached as {assumed}"))
        }
        Ok(Err(e)) => {
            let message = logyard_core::error_chain(&e);
            let fix = role_fix(&message, caller, role, external_id);
            Check::fail("storage role", message, fix)
        }
        Err(_) => Check::fail(
            "storage role",
            "STS did not answer within 20 s",
            "the pod must reach STS: add an STS VPC endpoint or a NAT route",
        ),
    }
}

fn role_fix(message: &str, caller: &str, role: &str, external_id: Option<&str>) -> String {
    let caller_role = role_of(caller);
    let pod_policy = format!(
        "the pod's role {caller_role} needs an IAM policy allowing sts:AssumeRole on {role} (deploy/terraform: storage_role_arn)"
    );
    let condition =
        external_id.map_or(String::new(), |id| format!(", with the condition StringEquals sts:ExternalId = {id:?}"));
    let trust = format!(
        "the trust policy of {role}, in the bucket's account, must allow sts:AssumeRole to the principal {caller_role}{condition}"
    );
    if message.contains("identity-based policy") {
        format!("refused by the pod's own policy: {pod_policy}")
    } else if message.contains("resource-based policy") || message.contains("trust policy") {
        format!("refused by the role's trust policy: {trust}")
    } else if message.contains("service control policy") {
        "refused by an AWS Organizations service control policy of one of the two accounts: ask its administrator"
            .into()
    } else if message.contains("AccessDenied") || message.contains("not authorized") {
        format!("STS does not say which of the two policies refused it: {pod_policy}; and {trust}")
    } else {
        "check storage.s3_role_arn names an existing role (arn:aws:iam::<account>:role/<name>) and that the pod reaches STS".into()
    }
}

/// The role behind an assumed-role session ARN (`arn:aws:sts::1:assumed-role/r/s` ->
/// `arn:aws:iam::1:role/r`); other ARNs as they are.
fn role_of(arn: &str) -> String {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sts"), Some(_), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return arn.to_owned();
    };
    match resource.strip_prefix("assumed-role/").and_then(|r| r.split('/').next()) {
        Some(role) => format!("arn:{partition}:iam::{account}:role/{role}"),
        None => arn.to_owned(),
    }
}

async fn storage_check(config: &Config, env: &BTreeMap<String, String>, location: &Location) -> Check {
    let storage = match crate::open_storage(config, env, logyard_storage::StoreMetrics::default()).await {
        Ok(s) => s,
        Err(e) => return Check::fail("storage", format!("{e:#}"), "check storage.url and the S3 settings"),
    };
    let probe = format!("_doctor/probe-{}", std::process::id());
    match tokio::time::timeout(Duration::from_secs(30), storage.round_trip(&probe)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let text = e.to_string();
            let fix = storage_fix(&text, location, config.storage.s3_role_arn.as_deref());
            return Check::fail("storage", text, fix);
        }
        Err(_) => {
            return Check::fail(
                "storage",
                "no answer within 30 s",
                "the pod must reach S3: an S3 gateway endpoint or a NAT route",
            );
        }
    }
    let mut detail = format!("{location}: list, put, get and delete of a probe object worked");
    if let Location::S3 { bucket, .. } = location {
        match bucket_facts(config, env, bucket).await {
            Ok(facts) => {
                let region = config.storage.s3_region.clone().or_else(|| env.get("AWS_REGION").cloned());
                if let (Some(bucket_region), Some(region)) = (&facts.region, &region)
                    && bucket_region != region
                {
                    return Check::fail(
                        "storage",
                        format!("bucket {bucket} is in {bucket_region}, logyard is configured for {region}"),
                        "set AWS_REGION (or storage.s3_region) to the bucket's region",
                    );
                }
                if let Some(skew) = facts.skew {
                    if skew > Duration::from_secs(300) {
                        return Check::fail(
                            "clock",
                            format!("the clock differs from the storage's by {} s", skew.as_secs()),
                            "signatures fail beyond 15 minutes of skew: run chrony/NTP on the node (AL2023 does by default)",
                        );
                    }
                    detail.push_str(&format!("; clock within {} s of the storage's", skew.as_secs().max(1)));
                }
            }
            Err(e) => detail.push_str(&format!("; bucket region and clock not checked: {e}")),
        }
    }
    Check::ok("storage", detail)
}

fn storage_fix(error: &str, location: &Location, role: Option<&str>) -> String {
    if !is_s3(location) {
        return "the directory must exist and be writable by logyard's user".into();
    }
    if error.contains("403")
        || error.contains("SignatureDoesNotMatch")
        || error.contains("AccessDenied")
        || error.contains("Forbidden")
    {
        let who = role.map_or("the role's policy".to_owned(), |r| {
            format!("the policy of {r} (the role assumed for the storage, in the bucket's account)")
        });
        format!(
            "S3 refused the request: check {who} allows s3:ListBucket, GetObject, PutObject and DeleteObject on the bucket and prefix, that the secret key is right, and that the bucket policy does not deny requests without TLS (aws:SecureTransport) or from outside its VPC endpoint"
        )
    } else if error.contains("301") || error.contains("PermanentRedirect") {
        "the bucket is in another region: set AWS_REGION to the bucket's region".into()
    } else if error.contains("NoSuchBucket") || error.contains("404") {
        "the bucket does not exist: create it (deploy/terraform makes it) or fix storage.url".into()
    } else if error.contains("credentials") {
        CREDENTIALS_FIX.into()
    } else {
        "the pod must reach S3 (an S3 gateway endpoint or NAT) and the endpoint must be right".into()
    }
}

struct BucketFacts {
    region: Option<String>,
    skew: Option<Duration>,
}

/// The bucket's region and the clock skew, from an unsigned HEAD of the bucket (S3 answers
/// with `x-amz-bucket-region` and `Date` even when it refuses).
async fn bucket_facts(config: &Config, env: &BTreeMap<String, String>, bucket: &str) -> anyhow::Result<BucketFacts> {
    let s3 = crate::s3_options(config, env);
    let url = match &s3.endpoint {
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.amazonaws.com/"),
    };
    let response = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?.head(&url).send().await?;
    let region = response.headers().get("x-amz-bucket-region").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let skew = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|d| {
            let now = chrono::Utc::now();
            (now - d.with_timezone(&chrono::Utc)).abs().to_std().unwrap_or_default()
        });
    Ok(BucketFacts { region, skew })
}

fn wal_check(dir: &Path) -> Check {
    let probe = dir.join(".doctor-probe");
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    if let Err(e) = result {
        return Check::fail(
            "wal",
            format!("{}: {e}", dir.display()),
            "mount a writable volume there (the chart's PersistentVolumeClaim) owned by logyard's user (fsGroup)",
        );
    }
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            if free < 1 << 30 {
                Check::fail(
                    "wal",
                    format!("{}: writable, {} MiB free", dir.display(), free >> 20),
                    "give the write-ahead log volume at least a few GiB",
                )
            } else {
                Check::ok("wal", format!("{}: writable, {} GiB free", dir.display(), free >> 30))
            }
        }
        Err(e) => Check::ok("wal", format!("{}: writable (free space unknown: {e})", dir.display())),
    }
}

/// Prints the checklist; returns whether every check passed.
pub fn print(checks: &[Check], json: bool) -> bool {
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if json {
        println!("{}", serde_json::json!({"ok": ok, "checks": checks}));
        return ok;
    }
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        println!("{mark} {:<12} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("     {:<12} fix: {fix}", "");
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_role_names_the_policy_that_refused_it() {
        let caller = "arn:aws:sts::111111111111:assumed-role/logyard/eks-pod";
        let role = "arn:aws:iam::222222222222:role/bucket";
        assert_eq!(role_of(caller), "arn:aws:iam::111111111111:role/logyard");
        assert_eq!(role_of("arn:aws:iam::1:user/me"), "arn:aws:iam::1:user/me");
        let identity = "AccessDenied: User: x is not authorized to perform: sts:AssumeRole on resource: y because no identity-based policy allows the sts:AssumeRole action";
        let fix = role_fix(identity, caller, role, None);
        assert!(
            fix.starts_with("refused by the pod's own policy") && fix.contains("role/logyard needs an IAM policy"),
            "{fix}"
        );
        let trust = "AccessDenied: ... because no resource-based policy allows the sts:AssumeRole action";
        let fix = role_fix(trust, caller, role, Some("shop"));
        assert!(fix.starts_with("refused by the role's trust policy"), "{fix}");
        assert!(
            fix.contains("principal arn:aws:iam::111111111111:role/logyard")
                && fix.contains("sts:ExternalId = \"shop\""),
            "{fix}"
        );
        let bare = "AccessDenied: User: x is not authorized to perform: sts:AssumeRole on resource: y";
        let fix = role_fix(bare, caller, role, None);
        assert!(
            fix.contains("does not say which") && fix.contains("IAM policy") && fix.contains("trust policy"),
            "{fix}"
        );
    }
}
