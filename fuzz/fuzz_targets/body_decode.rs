//! Request bodies through `logyard_protocols::body::decode`, the bounded decompression every
//! protocol's body passes. The first byte picks the encoding (bits 0-1: identity, gzip, zstd,
//! or the rest compressed here with gzip or zstd, by bit 2, so that the round trip is
//! checked) and the limit (bits 3-5: from 0 bytes to 16 MiB).
//!
//! Invariants: nothing panics; the output is never longer than the limit; a body is refused
//! only as `TooLarge` or `BadEncoding`; identity bodies pass unchanged exactly when they fit;
//! a body compressed here decompresses to itself when it fits and is `TooLarge` otherwise; a
//! body that decompresses to n bytes decompresses to the same n bytes under a limit of n,
//! and is `TooLarge` under a limit of n - 1.

#![no_main]

use std::io::Write;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use logyard_protocols::ProtocolError;
use logyard_protocols::body::{Encoding, decode};

const LIMITS: [usize; 8] = [0, 1, 16, 255, 4 << 10, 64 << 10, 1 << 20, 16 << 20];

fn check(result: &Result<Bytes, ProtocolError>, limit: usize) {
    match result {
        Ok(out) => assert!(out.len() <= limit, "{} bytes out, over the limit of {limit}", out.len()),
        Err(ProtocolError::TooLarge(_) | ProtocolError::BadEncoding(_)) => {}
        Err(e) => panic!("a body is refused only as too large or badly encoded: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let limit = LIMITS[usize::from(selector >> 3) & 7];
    let body = Bytes::copy_from_slice(rest);
    let (encoding, input) = match selector & 3 {
        0 => {
            let result = decode(body, Encoding::Identity, limit);
            check(&result, limit);
            match result {
                Ok(out) => assert_eq!(&out[..], rest),
                Err(e) => assert!(rest.len() > limit && matches!(e, ProtocolError::TooLarge(_)), "{e:?}"),
            }
            return;
        }
        1 => (Encoding::Gzip, body),
        2 => (Encoding::Zstd, body),
        _ => {
            let (encoding, compressed) = if selector & 4 == 0 {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(rest).expect("gzip writes to memory");
                (Encoding::Gzip, e.finish().expect("gzip finishes"))
            } else {
                (Encoding::Zstd, zstd::encode_all(rest, 1).expect("zstd compresses"))
            };
            let result = decode(Bytes::from(compressed), encoding, limit);
            check(&result, limit);
            match result {
                Ok(out) => assert_eq!(&out[..], rest, "the round trip gives the body back"),
                Err(e) => assert!(rest.len() > limit && matches!(e, ProtocolError::TooLarge(_)), "{e:?}"),
            }
            return;
        }
    };
    let result = decode(input.clone(), encoding, limit);
    check(&result, limit);
    if let Ok(out) = result {
        let again = decode(input.clone(), encoding, out.len()).expect("it fits its own length");
        assert_eq!(again, out, "the same bytes under a limit of their length");
        if let Some(less) = out.len().checked_sub(1) {
            let e = decode(input, encoding, less).expect_err("one byte less does not fit");
            assert!(matches!(e, ProtocolError::TooLarge(_)), "{e:?}");
        }
    }
});
