//! Whole gzip files inflated with libdeflate: about twice as fast as flate2 on zlib-rs on ALB
//! access logs (BENCHMARKS.md, "Archive"), because it inflates a member into one buffer it is
//! given whole instead of a stream. A file of several members (gzip allows `cat a.gz b.gz`) is
//! inflated member by member, as `zcat` does.

use std::io;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// The first room given to a member: its trailer's size when the file has one member (the
/// last four bytes, the size of the last member modulo 2^32), but never more than this many
/// times the compressed bytes, so that a forged trailer cannot make it allocate gigabytes; a
/// member that does not fit is inflated again into twice the room.
const FIRST_ROOM_RATIO: usize = 16;

/// Inflates `data`, one gzip member after another to its end.
pub(crate) fn gunzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut inflater = Inflater::new();
    let trailer = data
        .len()
        .checked_sub(4)
        .map_or(0, |at| u32::from_le_bytes(data[at..].try_into().expect("four bytes")) as usize);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let start = out.len();
        let mut room = trailer.clamp(1, rest.len().saturating_mul(FIRST_ROOM_RATIO).max(1));
        loop {
            out.resize(start + room, 0);
            match inflater.member(rest, &mut out[start..]) {
                Ok((read, written)) => {
                    out.truncate(start + written);
                    rest = &rest[read..];
                    break;
                }
                Err(Failure::Room) => {
                    room = room.checked_mul(2).ok_or_else(|| io::Error::other("gzip member too large"))?
                }
                Err(Failure::Data) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not valid gzip data at byte {}", data.len() - rest.len()),
                    ));
                }
            }
        }
    }
    Ok(out)
}

enum Failure {
    /// The output buffer is too small for the member.
    Room,
    /// Not a gzip member, or a damaged one (its CRC-32 or size differs).
    Data,
}

/// A libdeflate decompressor, freed on drop.
struct Inflater(NonNull<libdeflate_decompressor>);

#[allow(unsafe_code)]
impl Inflater {
    fn new() -> Self {
        // SAFETY: no arguments; the result is checked for null.
        let raw = unsafe { libdeflate_alloc_decompressor() };
        Self(NonNull::new(raw).expect("libdeflate could not allocate a decompressor"))
    }

    /// Inflates the gzip member at the start of `input` into `out`: the bytes of `input` it
    /// took and the bytes it wrote.
    fn member(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), Failure> {
        let (mut read, mut written) = (0usize, 0usize);
        // SAFETY: the decompressor is live and used by one thread (`&mut self`); libdeflate
        // reads at most `input.len()` bytes from `input`, writes at most `out.len()` bytes to
        // `out`, and stores the two counts through pointers to live locals.
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut read,
                &mut written,
            )
        };
        if result == libdeflate_result_LIBDEFLATE_SUCCESS {
            Ok((read, written))
        } else if result == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE {
            Err(Failure::Room)
        } else {
            Err(Failure::Data)
        }
    }
}

#[allow(unsafe_code)]
impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once, here.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn text(lines: usize, seed: u64) -> Vec<u8> {
        (0..lines).map(|i| format!("line {i} of {seed}: {}\n", "x".repeat(i % 97))).collect::<String>().into_bytes()
    }

    #[test]
    fn one_member_and_several_inflate_to_what_was_compressed() {
        let (a, b, c) = (text(20_000, 1), text(3, 2), text(50_000, 3));
        assert_eq!(gunzip(&gzip(&a)).unwrap(), a);
        // Members of other sizes than the last one's trailer says, larger and smaller.
        let mut joined = gzip(&c);
        joined.extend(gzip(&b));
        joined.extend(gzip(&a));
        joined.extend(gzip(b""));
        let want: Vec<u8> = [&c[..], &b[..], &a[..]].concat();
        assert_eq!(gunzip(&joined).unwrap(), want);
        assert_eq!(gunzip(&gzip(b"")).unwrap(), b"");
    }

    #[test]
    fn a_forged_trailer_does_not_decide_the_allocation() {
        let a = text(1_000, 4);
        let mut forged = gzip(&a);
        let at = forged.len() - 4;
        forged[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        // The size check of the trailer refuses the member; nothing near 4 GiB was allocated.
        let err = gunzip(&forged).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn damaged_and_truncated_files_and_trailing_garbage_are_refused() {
        let a = text(5_000, 5);
        let good = gzip(&a);
        let mut damaged = good.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0x55;
        let mut garbage = good.clone();
        garbage.extend_from_slice(b"not gzip");
        for bad in [&damaged[..], &good[..good.len() - 9], &garbage[..], b"plain text"] {
            let err = gunzip(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
        assert!(gunzip(&garbage).unwrap_err().to_string().contains(&format!("at byte {}", good.len())));
    }
}
