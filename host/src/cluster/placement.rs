//! Which live host should claim an object nobody holds: rendezvous (highest random weight)
//! hashing. Every host computes the same answer from the same member list, and when a host
//! joins or leaves only the objects it wins (or won) move.

use super::etcd::Member;
use sha2::{Digest, Sha256};

/// The member that should hold the object (`class`, `id`), if there is any member that takes
/// objects (one being drained does not).
pub fn choose<'a>(members: &'a [Member], class: &str, id: &[u8; 32]) -> Option<&'a Member> {
    members.iter().filter(|member| !member.draining).max_by_key(|member| weight(&member.id, class, id))
}

fn weight(host: &str, class: &str, id: &[u8; 32]) -> u64 {
    let mut hash = Sha256::new();
    hash.update(host.as_bytes());
    hash.update([0]);
    hash.update(class.as_bytes());
    hash.update([0]);
    hash.update(id);
    u64::from_be_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member { id: format!("host{i}"), advertise: format!("http://10.0.0.{i}:8787"), draining: false })
            .collect()
    }

    fn id(n: u32) -> [u8; 32] {
        Sha256::digest(n.to_be_bytes()).into()
    }

    #[test]
    fn objects_spread_over_hosts_and_only_a_leaving_hosts_objects_move() {
        let three = members(3);
        let mut counts = [0; 3];
        for n in 0..3000 {
            let chosen = choose(&three, "counter", &id(n)).unwrap();
            counts[three.iter().position(|m| m == chosen).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "uneven spread: {counts:?}");

        let two: Vec<Member> = three.iter().filter(|m| m.id != "host1").cloned().collect();
        for n in 0..3000 {
            let before = choose(&three, "counter", &id(n)).unwrap();
            let after = choose(&two, "counter", &id(n)).unwrap();
            if before.id != "host1" {
                assert_eq!(before, after, "object {n} moved though its host stayed");
            }
        }
        assert!(choose(&[], "counter", &id(1)).is_none());
        let mut drained = three.clone();
        drained[0].draining = true;
        assert!((0..300).all(|n| choose(&drained, "counter", &id(n)).unwrap().id != "host0"));
    }
}
