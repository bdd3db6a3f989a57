//! The opaque `page_token` of Query: the last seq returned and a
//! fingerprint of the filter and order it belongs to, so a token is not
//! silently reused with a different query.

use sha2::Digest as _;
use tonic::Status;

use super::edge::invalid;
use crate::store::{Filter, Order};

/// Encodes and checks page tokens (`p1` + 16 hex digits of seq + 16 of
/// fingerprint).
pub(crate) struct PageToken;

impl PageToken {
    pub(crate) fn fingerprint(filter: &Filter, order: Order) -> u64 {
        let digest = sha2::Sha256::digest(format!("{filter:?}{order:?}").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    pub(crate) fn encode(seq: u64, fingerprint: u64) -> String {
        format!("p1{seq:016x}{fingerprint:016x}")
    }

    /// The seq a token resumes from, if it was issued for `fingerprint`.
    pub(crate) fn decode(token: &str, fingerprint: u64) -> Result<u64, Status> {
        let (seq, fp) = PageToken::parse(token).ok_or_else(|| {
            invalid(
                "page_token",
                "is not a token this server issued; pass next_page_token unchanged",
            )
        })?;
        if fp != fingerprint {
            return Err(invalid(
                "page_token",
                "belongs to a query with a different filter or order; start again without it",
            ));
        }
        Ok(seq)
    }

    /// The seq and fingerprint a token holds, if it has the token layout.
    pub(crate) fn parse(token: &str) -> Option<(u64, u64)> {
        // Only the lowercase hex digits `encode` writes: `from_str_radix`
        // alone would also take `A-F` and a leading `+`, and slicing at byte
        // 16 of a non-ASCII string can split a character, which panics.
        let rest = token.strip_prefix("p1").filter(|r| {
            r.len() == 32 && r.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })?;
        let seq = u64::from_str_radix(&rest[..16], 16).ok()?;
        let fp = u64::from_str_radix(&rest[16..], 16).ok()?;
        Some((seq, fp))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_query() {
        let f = Filter::default();
        let fp = PageToken::fingerprint(&f, Order::NewestFirst);
        let token = PageToken::encode(42, fp);
        assert_eq!(PageToken::decode(&token, fp).unwrap(), 42);
        let other = PageToken::fingerprint(&f, Order::OldestFirst);
        assert_eq!(
            PageToken::decode(&token, other).unwrap_err().code(),
            Code::InvalidArgument
        );
        assert!(PageToken::decode("garbage", fp).is_err());
        assert!(PageToken::decode("p1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", fp).is_err());
    }

    #[test]
    fn page_tokens_are_only_what_encode_writes() {
        // Found by the page_token fuzz target: a multi-byte character across
        // byte 16 panicked the slice, and uppercase hex was accepted.
        let split = format!("p1{}é{}", "0".repeat(15), "0".repeat(15));
        assert_eq!(split.len(), 34);
        assert_eq!(PageToken::parse(&split), None);
        let token = PageToken::encode(0xab, 0xcd);
        assert_eq!(PageToken::parse(&token), Some((0xab, 0xcd)));
        assert_eq!(
            PageToken::parse(&token.to_uppercase().replacen("P1", "p1", 1)),
            None
        );
        let plus = format!("p1+{}", &token[3..]);
        assert_eq!(PageToken::parse(&plus), None);
    }
}
