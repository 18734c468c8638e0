//! Request bodies: content types, content encodings, and bounded decompression (a
//! decompression bomb costs at most the limit).

use std::io::Read;

use bytes::Bytes;
pub use logyard_core::parse::BodyFormat;

use crate::ProtocolError;

/// The layout a `Content-Type` header value names. A missing header means NDJSON.
pub fn format_from_content_type(value: Option<&str>) -> Result<BodyFormat, ProtocolError> {
    let Some(value) = value else {
        return Ok(BodyFormat::Ndjson);
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines"
        | "application/json-lines"
        | "text/plain"
        | "" => Ok(BodyFormat::Ndjson),
        "application/json" => Ok(BodyFormat::Json),
        _ => Err(ProtocolError::UnsupportedMediaType(format!(
            "content type {value:?} is not supported: send application/x-ndjson (one JSON object per line) or application/json (an array of objects, or one object)"
        ))),
    }
}

/// A `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Result<Self, ProtocolError> {
        let Some(value) = value else {
            return Ok(Encoding::Identity);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            _ => Err(ProtocolError::UnsupportedMediaType(format!(
                "content encoding {value:?} is not supported: use gzip, zstd or none"
            ))),
        }
    }
}

/// Decompresses `body`, stopping with [`ProtocolError::TooLarge`] as soon as the output passes
/// `max_bytes` (so a decompression bomb costs at most `max_bytes` of work and memory).
pub fn decode(body: Bytes, encoding: Encoding, max_bytes: usize) -> Result<Bytes, ProtocolError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > max_bytes {
                return Err(too_large(max_bytes));
            }
            Ok(body)
        }
        Encoding::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&body[..]), max_bytes, "gzip"),
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&body[..])
                .map_err(|e| ProtocolError::BadEncoding(format!("zstd: {e}")))?;
            read_bounded(decoder, max_bytes, "zstd")
        }
    }
}

fn too_large(max_bytes: usize) -> ProtocolError {
    ProtocolError::TooLarge(format!("the decompressed body is larger than the limit of {max_bytes} bytes"))
}

fn read_bounded(reader: impl Read, max_bytes: usize, what: &str) -> Result<Bytes, ProtocolError> {
    let mut out = Vec::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ProtocolError::BadEncoding(format!("{what}: {e}")))?;
    if out.len() > max_bytes {
        return Err(too_large(max_bytes));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types() {
        assert_eq!(format_from_content_type(None).unwrap(), BodyFormat::Ndjson);
        assert_eq!(format_from_content_type(Some("application/x-ndjson; charset=utf-8")).unwrap(), BodyFormat::Ndjson);
        assert_eq!(format_from_content_type(Some("application/json")).unwrap(), BodyFormat::Json);
        let e = format_from_content_type(Some("application/x-www-form-urlencoded")).unwrap_err();
        assert!(e.to_string().contains("application/x-ndjson"), "{e}");
        assert!(Encoding::from_header(Some("br")).is_err());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = Bytes::from(enc.finish().unwrap());
        assert!(bomb.len() < 100_000);
        let e = decode(bomb.clone(), Encoding::Gzip, 1 << 20).unwrap_err();
        assert!(matches!(e, ProtocolError::TooLarge(_)), "{e}");
        assert_eq!(decode(bomb, Encoding::Gzip, 64 << 20).unwrap().len(), 64 << 20);
    }

    #[test]
    fn zstd_and_corrupt_input() {
        let z = zstd::encode_all(&b"{\"a\":1}\n"[..], 3).unwrap();
        assert_eq!(&decode(Bytes::from(z), Encoding::Zstd, 100).unwrap()[..], b"{\"a\":1}\n");
        let e = decode(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100).unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");
    }
}
