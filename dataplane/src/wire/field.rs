//! Byte-field helpers for message formats written in smoltcp's shape: each
//! format names its fields as byte ranges (`const SEQ: Field = 8..16`) and
//! reads them big-endian through these, after checking the buffer's length
//! once. Shared by the services' wire modules so that the rules (network
//! byte order, the error for a short buffer) are written once.

use std::ops::Range;

use super::WireError;

/// A field's byte range in a message.
pub type Field = Range<usize>;

/// The big-endian `u16` at `f`. Panics if `f` is out of `b`: call after the
/// message's length check, like slice indexing.
#[inline]
pub fn get_u16(b: &[u8], f: Field) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[f]);
    u16::from_be_bytes(a)
}

/// The big-endian `u32` at `f` (see [`get_u16`]).
#[inline]
pub fn get_u32(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_be_bytes(a)
}

/// The big-endian `u64` at `f` (see [`get_u16`]).
#[inline]
pub fn get_u64(b: &[u8], f: Field) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[f]);
    u64::from_be_bytes(a)
}

/// [`WireError::Truncated`] unless `got` bytes hold the `needed` of `what`:
/// for parsing.
#[inline]
pub fn check_len(what: &'static str, needed: usize, got: usize) -> Result<(), WireError> {
    if got < needed {
        return Err(WireError::Truncated { what, needed, got });
    }
    Ok(())
}

/// [`WireError::NoRoom`] unless `got` bytes hold the `needed` of `what`:
/// for emitting.
#[inline]
pub fn check_room(what: &'static str, needed: usize, got: usize) -> Result<(), WireError> {
    if got < needed {
        return Err(WireError::NoRoom { what, needed, got });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_big_endian_and_lengths_checked() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(get_u16(&b, 0..2), 0x0102);
        assert_eq!(get_u32(&b, 1..5), 0x0203_0405);
        assert_eq!(get_u64(&b, 1..9), 0x0203_0405_0607_0809);
        assert!(check_len("x", 9, 9).is_ok());
        assert!(matches!(
            check_len("x", 10, 9),
            Err(WireError::Truncated {
                needed: 10,
                got: 9,
                ..
            })
        ));
        assert!(matches!(
            check_room("x", 10, 9),
            Err(WireError::NoRoom { .. })
        ));
    }
}
