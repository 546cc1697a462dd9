//! Object ids: 32 bytes, written as 64 lower-case hex characters.
//!
//! An id is `r ‖ tag(r)`: 16 bytes `r`, then the first 16 bytes of HMAC-SHA256 over `r` keyed by
//! the class's secret. `r` is itself an HMAC of the name for named objects (so the same name
//! always gives the same id) and random for unique ids. Without the secret nobody can forge a
//! valid id of a class, nor guess which name an id belongs to, and an id of one class does not
//! validate as an id of another.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The per-class key ids are derived from. Stored with the class's data.
#[derive(Clone)]
pub struct ClassSecret([u8; 32]);

impl ClassSecret {
    pub fn random() -> Self {
        ClassSecret(rand::random())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(ClassSecret(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    fn seal(&self, r: [u8; 16]) -> ObjectId {
        let tag = self.mac(b"wdo-id\0", &r);
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&r);
        id[16..].copy_from_slice(&tag[..16]);
        ObjectId(id)
    }

    /// The id of the object with this name: the same name always gives the same id.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let digest = self.mac(b"wdo-name\0", name.as_bytes());
        self.seal(digest[..16].try_into().expect("16 of 32 bytes"))
    }

    /// A fresh id no name maps to.
    #[allow(dead_code)] // reached by guests through `objects` (RPC), which comes next
    pub fn new_unique_id(&self) -> ObjectId {
        self.seal(rand::random())
    }

    /// Parses `text` and checks that it is an id of this class.
    #[allow(dead_code)] // reached by guests through `objects` (RPC), which comes next
    pub fn parse_id(&self, text: &str) -> Result<ObjectId, String> {
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("`{text}` is not an object id (64 hex characters)"))?;
        let r: [u8; 16] = bytes[..16].try_into().expect("16 bytes");
        let id = self.seal(r);
        if id.0[..] == bytes[..] { Ok(id) } else { Err(format!("`{text}` is not an id of this class")) }
    }
}

/// The identity of one object within its class.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An id the host stored itself (a backup names objects by these bytes).
    pub fn from_bytes(bytes: &[u8; 32]) -> ObjectId {
        ObjectId(*bytes)
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Reads an id the host wrote itself (no class check: see `ClassSecret::parse_id`).
    pub fn from_hex(text: &str) -> Option<ObjectId> {
        Some(ObjectId(hex::decode(text).ok()?.try_into().ok()?))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_stable_ids_that_validate() {
        let secret = ClassSecret::random();
        let a = secret.id_from_name("alice");
        assert_eq!(a, secret.id_from_name("alice"));
        assert_ne!(a, secret.id_from_name("bob"));
        assert_eq!(secret.parse_id(&a.to_hex()), Ok(a));
        assert_eq!(a.to_hex().len(), 64);
    }

    #[test]
    fn ids_of_another_class_and_forgeries_are_refused() {
        let (one, other) = (ClassSecret::random(), ClassSecret::random());
        let id = one.id_from_name("alice").to_hex();
        assert!(other.parse_id(&id).unwrap_err().contains("not an id of this class"));
        let mut forged = id.clone().into_bytes();
        forged[63] = if forged[63] == b'0' { b'1' } else { b'0' };
        assert!(one.parse_id(std::str::from_utf8(&forged).unwrap()).is_err());
        assert!(one.parse_id("xyz").unwrap_err().contains("not an object id"));
    }

    #[test]
    fn unique_ids_never_repeat_and_validate() {
        let secret = ClassSecret::random();
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| secret.new_unique_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            assert_eq!(secret.parse_id(&id.to_hex()), Ok(*id));
        }
    }
}
