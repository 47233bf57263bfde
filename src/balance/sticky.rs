//! Sticky sessions' backend ids, sans IO: the opaque id a cookie carries for
//! one backend of a pool, and the way back from an id to the backend. Exists
//! because a cookie must name a backend without revealing its address and
//! without letting a client pick one at will: the id is a keyed MAC
//! (HMAC-SHA256, from the crypto provider rustls is built with) over the pool
//! name and the backend's configured address, so it is the same on every
//! worker, after every reload and on every instance that shares the key.
//! The table is built on the control thread with the snapshot; the data path
//! only decodes and looks up (no locks, no allocation). Must never put an
//! address, an index or anything else guessable into a cookie.

use std::sync::Arc;

#[cfg(feature = "aws-lc-rs")]
use aws_lc_rs::hmac;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
use ring::hmac;

use super::Backend;

/// Bytes of the MAC kept as a backend's id: 128 bits, far beyond guessing,
/// 32 characters of hex in the cookie.
pub const ID_BYTES: usize = 16;

/// A backend's id as the cookie carries it.
pub type StickyId = [u8; ID_BYTES];

/// Domain-separates the ids from any other use of the same key, and lets a
/// later format change them all at once.
const CONTEXT: &[u8] = b"spliced sticky v1";

/// The ids of one pool's backends under one key.
pub struct StickyIds {
    /// `(id, backend index)`, sorted by id for lookup.
    sorted: Vec<(StickyId, u32)>,
    /// Each backend's id, by index.
    by_index: Vec<StickyId>,
}

impl StickyIds {
    /// The ids of `backends` of pool `pool` under `key` (control thread).
    pub fn new(key: &[u8], pool: &str, backends: &[Arc<Backend>]) -> StickyIds {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let by_index: Vec<StickyId> = backends.iter().map(|b| id(&key, pool, &b.name)).collect();
        let mut sorted: Vec<(StickyId, u32)> = by_index
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u32))
            .collect();
        sorted.sort_unstable();
        StickyIds { sorted, by_index }
    }

    /// The id of backend `index`.
    pub fn id_of(&self, index: usize) -> Option<&StickyId> {
        self.by_index.get(index)
    }

    /// The backend an id names, if it names one of this pool's (a forged,
    /// stale or tampered id names none).
    pub fn find(&self, id: &StickyId) -> Option<usize> {
        self.sorted
            .binary_search_by(|(probe, _)| probe.cmp(id))
            .ok()
            .map(|at| self.sorted[at].1 as usize)
    }
}

fn id(key: &hmac::Key, pool: &str, backend: &str) -> StickyId {
    let mut mac = hmac::Context::with_key(key);
    // Lengths first, so that no two (pool, backend) pairs feed the same bytes.
    for part in [CONTEXT, pool.as_bytes(), backend.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    let tag = mac.sign();
    let mut out = [0u8; ID_BYTES];
    out.copy_from_slice(&tag.as_ref()[..ID_BYTES]);
    out
}

/// The key a route without `sticky.secret` uses: derived from the cookie
/// name alone, so it is stable across reloads and instances, but public.
pub fn derived_key(cookie: &str) -> Vec<u8> {
    let mut key = b"spliced sticky default key\0".to_vec();
    key.extend_from_slice(cookie.as_bytes());
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// An id as cookie text (lower-case hex).
pub fn encode(id: &StickyId) -> String {
    let mut text = String::with_capacity(ID_BYTES * 2);
    for b in id {
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 15)] as char);
    }
    text
}

/// Cookie text back to an id; `None` unless it is exactly the hex of one.
pub fn decode(text: &[u8]) -> Option<StickyId> {
    if text.len() != ID_BYTES * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; ID_BYTES];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        id[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(addrs: &[&str]) -> Vec<Arc<Backend>> {
        addrs
            .iter()
            .map(|a| Arc::new(Backend::for_test(a, 1)))
            .collect()
    }

    #[test]
    fn ids_find_their_backend_and_nothing_else() {
        let bs = backends(&["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]);
        let ids = StickyIds::new(b"a key of some length", "web", &bs);
        for i in 0..bs.len() {
            let id = ids.id_of(i).unwrap();
            assert_eq!(ids.find(id), Some(i));
            let text = encode(id);
            assert_eq!(decode(text.as_bytes()).as_ref(), Some(id));
            assert!(!text.contains("9001") && !text.contains("127"), "{text}");
            let mut tampered = *id;
            tampered[ID_BYTES - 1] ^= 1;
            assert_eq!(ids.find(&tampered), None);
        }
    }

    #[test]
    fn ids_are_stable_and_depend_on_key_pool_and_backend() {
        let bs = backends(&["127.0.0.1:9001", "127.0.0.1:9002"]);
        let a = StickyIds::new(b"key one key one", "web", &bs);
        // Another instance, or the same after a reload: the same ids, even
        // with the backends listed in another order.
        let reordered = backends(&["127.0.0.1:9002", "127.0.0.1:9001"]);
        let b = StickyIds::new(b"key one key one", "web", &reordered);
        assert_eq!(a.id_of(0), b.id_of(1));
        let other_key = StickyIds::new(b"key two key two", "web", &bs);
        let other_pool = StickyIds::new(b"key one key one", "api", &bs);
        assert_ne!(a.id_of(0), other_key.id_of(0));
        assert_ne!(a.id_of(0), other_pool.id_of(0));
        assert_ne!(a.id_of(0), a.id_of(1));
        assert_eq!(other_key.find(a.id_of(0).unwrap()), None);
    }

    #[test]
    fn only_exact_hex_decodes() {
        let id = [0xab; ID_BYTES];
        let text = encode(&id);
        assert_eq!(text.len(), 32);
        assert_eq!(decode(text.as_bytes()), Some(id));
        for bad in [
            "",
            "ab",
            &text[..31],
            &format!("{text}0"),
            &text.to_uppercase(),
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(decode(b"zbababababababababababababababab"), None);
    }
}
