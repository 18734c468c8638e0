//! Reading an uploaded file into chunks of checked events, on a blocking thread.
//!
//! gzip and zstd are recognised by their magic bytes, whatever the name says. A tar archive's
//! members are each read by their own extension (`.ndjson`/`.jsonl`, `.json`, anything else
//! as text), compressed or not. Line numbers in reports are 1-based within their file.

use std::io::{self, BufRead, BufReader, Read};

use logyard_core::encoded::EventsEncoder;
use logyard_core::event::{LineError, MAX_LINE_BYTES};
use logyard_core::parse::{BodyFormat, MAX_REPORTED_ERRORS, ParsedBody, parse_body};
use logyard_core::time::{Micros, parse_time_str};
use serde::Serialize;

use super::{UploadError, UploadFormat};

/// One rejected line of an upload.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FileLineReport {
    /// The tar member, for archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub line: usize,
    pub message: String,
}

/// Checked events of about `chunk_bytes` of input, ready to commit.
#[derive(Debug, Default)]
pub struct Chunk {
    pub events: EventsEncoder,
    pub accepted: usize,
    pub rejected: usize,
    /// The first rejections of this chunk.
    pub errors: Vec<FileLineReport>,
}

impl Chunk {
    fn reject(&mut self, file: Option<&str>, line: usize, message: String) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(FileLineReport { file: file.map(str::to_owned), line, message });
        }
    }
}

/// Where chunks go; an error stops the reading (the receiver is gone).
pub type Emit<'a> = dyn FnMut(Chunk) -> io::Result<()> + 'a;

/// Reads `input` as `format`, emitting chunks of at most about `chunk_bytes` of input each.
pub fn read_upload(
    input: impl Read,
    format: UploadFormat,
    received: Micros,
    chunk_bytes: usize,
    max_json_bytes: usize,
    emit: &mut Emit<'_>,
) -> Result<(), UploadError> {
    let mut reader = Reader { received, chunk_bytes, max_json_bytes, chunk: Chunk::default(), pending_bytes: 0 };
    let input = decompressed(BufReader::with_capacity(1 << 20, input))?;
    match format {
        UploadFormat::Tar => reader.tar(input, emit)?,
        UploadFormat::Alb => {
            return Err(UploadError::Invalid("ALB access logs are imported with `logyard import alb`".into()));
        }
        other => reader.file(input, other, None, emit)?,
    }
    reader.flush(emit)?;
    Ok(())
}

/// The input, decompressed when it starts with gzip's or zstd's magic bytes.
fn decompressed<'a>(mut input: impl BufRead + 'a) -> io::Result<Box<dyn BufRead + 'a>> {
    let head = input.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(input)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(BufReader::with_capacity(1 << 20, zstd::stream::read::Decoder::with_buffer(input)?))
    } else {
        Box::new(input)
    })
}

/// The format a tar member's name implies (after a `.gz` or `.zst` suffix).
pub fn format_of_name(name: &str) -> UploadFormat {
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".gz").or_else(|| lower.strip_suffix(".zst")).unwrap_or(&lower);
    if base.ends_with(".ndjson") || base.ends_with(".jsonl") {
        UploadFormat::Ndjson
    } else if base.ends_with(".json") {
        UploadFormat::Json
    } else {
        UploadFormat::Text
    }
}

struct Reader {
    received: Micros,
    chunk_bytes: usize,
    max_json_bytes: usize,
    chunk: Chunk,
    /// Input bytes in the current chunk.
    pending_bytes: usize,
}

impl Reader {
    fn flush(&mut self, emit: &mut Emit<'_>) -> io::Result<()> {
        if self.chunk.accepted > 0 || self.chunk.rejected > 0 {
            emit(std::mem::take(&mut self.chunk))?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    fn tar(&mut self, input: impl Read, emit: &mut Emit<'_>) -> Result<(), UploadError> {
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries()? {
            let entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry.path()?.to_string_lossy().into_owned();
            let format = format_of_name(&name);
            let member = decompressed(BufReader::with_capacity(1 << 20, entry))?;
            self.file(member, format, Some(&name), emit)?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        input: impl BufRead,
        format: UploadFormat,
        name: Option<&str>,
        emit: &mut Emit<'_>,
    ) -> Result<(), UploadError> {
        match format {
            UploadFormat::Json => self.json(input, name, emit),
            UploadFormat::Ndjson | UploadFormat::Text => self.lines(input, format == UploadFormat::Text, name, emit),
            UploadFormat::Tar | UploadFormat::Alb => {
                Err(UploadError::Invalid(format!("{}: nested archives are not read", name.unwrap_or("the upload"))))
            }
        }
    }

    /// One JSON document (an array of objects, or one object), read whole.
    fn json(&mut self, input: impl Read, name: Option<&str>, emit: &mut Emit<'_>) -> Result<(), UploadError> {
        let mut text = Vec::new();
        input.take(self.max_json_bytes as u64 + 1).read_to_end(&mut text)?;
        if text.len() > self.max_json_bytes {
            return Err(UploadError::Invalid(format!(
                "{}: a JSON document over {} bytes; upload it as NDJSON (one object per line)",
                name.unwrap_or("the upload"),
                self.max_json_bytes
            )));
        }
        let parsed = parse_body(&text, BodyFormat::Json, self.received);
        self.add(parsed, name, 0);
        self.pending_bytes += text.len();
        if self.pending_bytes >= self.chunk_bytes {
            self.flush(emit)?;
        }
        Ok(())
    }

    /// NDJSON, or text lines (each becomes `{"message": line}`, its time from a leading
    /// timestamp when there is one, else the receive time).
    fn lines(
        &mut self,
        mut input: impl BufRead,
        text: bool,
        name: Option<&str>,
        emit: &mut Emit<'_>,
    ) -> Result<(), UploadError> {
        let mut block = Vec::with_capacity(self.chunk_bytes.min(64 << 20) + MAX_LINE_BYTES);
        let mut first_line = 1;
        let mut line_no = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let (read, too_long) = read_line(&mut input, &mut line)?;
            if read == 0 {
                break;
            }
            line_no += 1;
            if too_long {
                // Keep the numbering of the block: an empty line stands for it, reported here.
                self.chunk.reject(name, line_no, LineError::TooLong { len: read, max: MAX_LINE_BYTES }.to_string());
                block.push(b'\n');
            } else if text {
                self.text_line(&line, name, line_no);
            } else {
                block.extend_from_slice(&line);
                if !line.ends_with(b"\n") {
                    block.push(b'\n');
                }
            }
            self.pending_bytes += read;
            if self.pending_bytes >= self.chunk_bytes {
                self.ndjson_block(&block, name, first_line);
                block.clear();
                first_line = line_no + 1;
                self.flush(emit)?;
            }
        }
        self.ndjson_block(&block, name, first_line);
        Ok(())
    }

    fn ndjson_block(&mut self, block: &[u8], name: Option<&str>, first_line: usize) {
        if block.is_empty() {
            return;
        }
        let parsed = parse_body(block, BodyFormat::Ndjson, self.received);
        self.add(parsed, name, first_line - 1);
    }

    fn text_line(&mut self, line: &[u8], name: Option<&str>, line_no: usize) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                self.chunk.reject(name, line_no, LineError::InvalidUtf8 { offset: e.valid_up_to() }.to_string());
                return;
            }
        };
        let leading = text.split_whitespace().next().and_then(parse_time_str);
        let json = serde_json::json!({"message": text}).to_string();
        match self.chunk.events.push(leading.unwrap_or(self.received), logyard_core::TimeSource::Received, &json) {
            Ok(()) => self.chunk.accepted += 1,
            Err(e) => self.chunk.reject(name, line_no, e.to_string()),
        }
    }

    fn add(&mut self, parsed: ParsedBody, name: Option<&str>, line_offset: usize) {
        if let Err(e) = self.chunk.events.append(parsed.events) {
            // Only a bug makes an encoder's own events unreadable; say so rather than lose them quietly.
            self.chunk.reject(name, line_offset + 1, format!("internal error: {e}"));
            self.chunk.rejected += parsed.accepted.saturating_sub(1);
            return;
        }
        self.chunk.accepted += parsed.accepted;
        // Rejections beyond the reported ones are counted only.
        let reported = parsed.errors.len();
        for e in parsed.errors {
            self.chunk.reject(name, e.line + line_offset, e.message);
        }
        self.chunk.rejected += parsed.rejected - reported;
    }
}

/// Reads one line (with its newline) into `line`, up to [`MAX_LINE_BYTES`]; a longer line is
/// skipped to its end. Returns the bytes the line took and whether it was too long.
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    let mut read = 0;
    let mut too_long = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((read, too_long));
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long && line.len() + take <= MAX_LINE_BYTES + 1 {
            line.extend_from_slice(&buf[..take]);
        } else {
            too_long = true;
            line.clear();
        }
        read += take;
        input.consume(take);
        if done {
            return Ok((read, too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], format: UploadFormat, chunk_bytes: usize) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        read_upload(input, format, 5, chunk_bytes, 1 << 20, &mut |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
        chunks
    }

    fn encoded_of(c: &Chunk) -> Vec<u8> {
        c.events.as_bytes().to_vec()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn ndjson_in_chunks_keeps_line_numbers_across_them() {
        let mut body = String::new();
        for i in 1..=100 {
            if i % 10 == 0 {
                body.push_str("not json\n");
            } else {
                body.push_str(&format!("{{\"i\":{i}}}\n"));
            }
        }
        let chunks = read(body.as_bytes(), UploadFormat::Ndjson, 200);
        assert!(chunks.len() > 3);
        let accepted: usize = chunks.iter().map(|c| c.accepted).sum();
        let lines: Vec<usize> = chunks.iter().flat_map(|c| c.errors.iter().map(|e| e.line)).collect();
        assert_eq!(accepted, 90);
        assert_eq!(lines, (1..=10).map(|i| i * 10).collect::<Vec<_>>());
        // Compressed input reads the same.
        let gz = read(&gzip(body.as_bytes()), UploadFormat::Ndjson, 1 << 20);
        assert_eq!(gz.iter().map(|c| c.accepted).sum::<usize>(), 90);
        let zst = read(&zstd::encode_all(body.as_bytes(), 3).unwrap(), UploadFormat::Ndjson, 1 << 20);
        assert_eq!(zst.iter().map(|c| c.rejected).sum::<usize>(), 10);
    }

    #[test]
    fn text_lines_become_messages_with_a_leading_time() {
        let chunks = read(b"2026-11-25T10:00:00Z GET /cart 200\nplain line\n\n\xff bad\n", UploadFormat::Text, 1 << 20);
        let events: Vec<_> = chunks
            .iter()
            .flat_map(|c| {
                let bytes = encoded_of(c);
                logyard_core::encoded::decode_events(&bytes)
                    .map(|e| {
                        let e = e.unwrap();
                        (e.time, e.text.to_owned())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, 1_795_600_800_000_000);
        assert_eq!(events[0].1, r#"{"message":"2026-11-25T10:00:00Z GET /cart 200"}"#);
        assert_eq!(events[1].0, 5, "no leading time: the receive time");
        assert_eq!(chunks[0].errors[0].line, 4);
    }

    #[test]
    fn tar_members_are_read_by_their_extension_and_named_in_errors() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            builder.append_data(&mut h, name, data).unwrap();
        };
        add("a.ndjson", b"{\"a\":1}\nbad\n");
        add("b.json", b"[{\"b\":1},{\"b\":2}]");
        add("c.log.gz", &gzip(b"one\ntwo\n"));
        let tar = builder.into_inner().unwrap();
        let chunks = read(&zstd::encode_all(&tar[..], 3).unwrap(), UploadFormat::Tar, 1 << 20);
        let accepted: usize = chunks.iter().map(|c| c.accepted).sum();
        assert_eq!(accepted, 1 + 2 + 2);
        let e = &chunks[0].errors[0];
        assert_eq!((e.file.as_deref(), e.line), (Some("a.ndjson"), 2));
    }

    #[test]
    fn an_overlong_line_is_rejected_alone() {
        let mut body = b"{\"a\":1}\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        body.extend(b"\n{\"a\":2}\n");
        let chunks = read(&body, UploadFormat::Ndjson, 1 << 30);
        assert_eq!(chunks[0].accepted, 2);
        assert_eq!(chunks[0].errors[0].line, 2);
        assert!(chunks[0].errors[0].message.contains("longer"), "{}", chunks[0].errors[0].message);
    }
}
