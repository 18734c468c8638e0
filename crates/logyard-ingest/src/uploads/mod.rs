//! Uploads: files that clients put straight into the storage (a presigned S3 PUT, or
//! `PUT /api/v1/uploads/{id}/data` on local storage), then ingest and archive.
//!
//! Life of an upload, recorded in `uploads/<id>.json`: `pending` (URL handed out) →
//! `uploaded` (the object exists with the announced size) → `ingesting` → `done` (rows
//! accepted and rejected, first errors) or `failed` (why). The object sits at
//! `incoming/<stream>/<date>/<id>/<filename>` until the bundler has put it in the archive.
//!
//! Ingest is exactly-once without the write-ahead log (the object is already durable): the
//! file is read in chunks, and chunk N is committed with the Delta transaction
//! (`upload-<id>`, N), so a restart skips the chunks already committed.
//!
//! The modules, by concern: `record` (the types, [`Uploads`], records and the state
//! machine), `plan` (checking a request and saying where the bytes go: one presigned PUT or
//! a multipart plan), `local` (the stand-in for S3 on local storage: the data and part URLs,
//! joining parts), `ingest` (reading an uploaded object into commits, the sweeper), `read`
//! (an object's bytes into chunks of checked events) and `bundler` (originals into the
//! archive).

pub mod bundler;
mod ingest;
mod local;
mod plan;
pub mod read;
mod record;

pub use plan::{Multipart, PartTarget, UploadTarget};
pub use read::FileLineReport;
pub use record::{
    INCOMING_DIR, UPLOADS_DIR, UploadError, UploadFormat, UploadOptions, UploadRecord, UploadRequest, UploadState,
    Uploads,
};
