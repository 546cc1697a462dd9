//! The bytes of a batch in the backup store: what the host ships in one upload.
//!
//! A batch is a zstd frame holding `WDOB`, a format version (u32), then entries until the end.
//! Integers are little-endian. Every entry starts with its kind (u8) and the commit time in
//! milliseconds since the Unix epoch (u64):
//!
//! - `1` snapshot: an object's whole database as of that time: class (u16 length + UTF-8), object
//!   id (32 bytes), page size (u32), fencing token (u64, version 2 on), pages (u32), then the
//!   pages in order; no pages says the object has no database (a cluster host took it over
//!   before it made any commit);
//! - `2` transaction: the pages one commit of an object wrote: class, id, page size, fencing token,
//!   the database's pages after the commit (u32), then for each page (u32 count) its number (u32)
//!   and bytes;
//! - `3` file: a file of the data folder (class secrets, the deploy state, components): its path
//!   relative to the folder (u16 length + UTF-8), then its bytes (u64 length + bytes); a length of
//!   `u64::MAX` with no bytes says the file was removed;
//! - `4` stored file: a data-folder file whose bytes are stored apart, under a name of their
//!   content (components: `components/<sha256>.wasm`), uploaded once: its path, then that name
//!   (both u16 length + UTF-8);
//! - `5` class moved: a deploy renamed a class (its objects' folder goes to the new name) or
//!   deleted it (its folder goes): the old name, then the new one (u16 length + UTF-8; a length
//!   of `u16::MAX` with no bytes for a deletion).
//!
//! Applying an object's entries in order, from its latest snapshot, gives its database after each
//! commit: a transaction's pages are written over the previous state, and the file is cut (or
//! grown) to the pages the commit left.
//!
//! The fencing token is the revision of the cluster claim under which the entry was written (0
//! outside a cluster, and in version-1 batches). Tokens only grow from one owner to the next, and
//! a new owner's first entry is a snapshot: an entry whose token is lower than one already seen
//! for its object was written by a host that had lost the object, and a restore skips it
//! (`restore::walk`).

use crate::ids::ObjectId;
use std::io::{self, Read};

const MAGIC: &[u8; 4] = b"WDOB";
const VERSION: u32 = 2;

/// The object an entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub class: String,
    pub id: [u8; 32],
}

impl ObjectRef {
    pub fn new(class: &str, id: &ObjectId) -> Self {
        ObjectRef { class: class.to_string(), id: *id.as_bytes() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Snapshot {
        time_ms: u64,
        object: ObjectRef,
        token: u64,
        page_size: u32,
        bytes: Vec<u8>,
    },
    Transaction {
        time_ms: u64,
        object: ObjectRef,
        token: u64,
        page_size: u32,
        db_pages: u32,
        pages: Vec<(u32, Vec<u8>)>,
    },
    File {
        time_ms: u64,
        path: String,
        bytes: Option<Vec<u8>>,
    },
    StoredFile {
        time_ms: u64,
        path: String,
        name: String,
    },
    ClassMoved {
        time_ms: u64,
        from: String,
        to: Option<String>,
    },
}

impl Entry {
    pub fn time_ms(&self) -> u64 {
        match self {
            Entry::Snapshot { time_ms, .. }
            | Entry::Transaction { time_ms, .. }
            | Entry::File { time_ms, .. }
            | Entry::StoredFile { time_ms, .. }
            | Entry::ClassMoved { time_ms, .. } => *time_ms,
        }
    }

    /// The object and fencing token of a snapshot or transaction.
    pub fn fenced(&self) -> Option<(&ObjectRef, u64)> {
        match self {
            Entry::Snapshot { object, token, .. } | Entry::Transaction { object, token, .. } => Some((object, *token)),
            _ => None,
        }
    }

    /// Roughly the bytes it takes in a batch (before compression).
    pub fn size(&self) -> usize {
        match self {
            Entry::Snapshot { bytes, .. } => 64 + bytes.len(),
            Entry::Transaction { pages, .. } => 64 + pages.iter().map(|(_, p)| 4 + p.len()).sum::<usize>(),
            Entry::File { path, bytes, .. } => 32 + path.len() + bytes.as_ref().map_or(0, Vec::len),
            Entry::StoredFile { path, name, .. } => 32 + path.len() + name.len(),
            Entry::ClassMoved { from, to, .. } => 32 + from.len() + to.as_ref().map_or(0, String::len),
        }
    }
}

/// Encodes entries as one batch.
pub fn encode(entries: &[Entry]) -> io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(entries.iter().map(Entry::size).sum::<usize>() + 8);
    raw.extend_from_slice(MAGIC);
    raw.extend_from_slice(&VERSION.to_le_bytes());
    for entry in entries {
        match entry {
            Entry::Snapshot { time_ms, object, token, page_size, bytes } => {
                head(&mut raw, 1, *time_ms, object, *page_size, *token);
                raw.extend_from_slice(&((bytes.len() / *page_size as usize) as u32).to_le_bytes());
                raw.extend_from_slice(bytes);
            }
            Entry::Transaction { time_ms, object, token, page_size, db_pages, pages } => {
                head(&mut raw, 2, *time_ms, object, *page_size, *token);
                raw.extend_from_slice(&db_pages.to_le_bytes());
                raw.extend_from_slice(&(pages.len() as u32).to_le_bytes());
                for (number, page) in pages {
                    raw.extend_from_slice(&number.to_le_bytes());
                    raw.extend_from_slice(page);
                }
            }
            Entry::File { time_ms, path, bytes } => {
                raw.push(3);
                raw.extend_from_slice(&time_ms.to_le_bytes());
                string(&mut raw, path);
                match bytes {
                    Some(bytes) => {
                        raw.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                        raw.extend_from_slice(bytes);
                    }
                    None => raw.extend_from_slice(&u64::MAX.to_le_bytes()),
                }
            }
            Entry::StoredFile { time_ms, path, name } => {
                raw.push(4);
                raw.extend_from_slice(&time_ms.to_le_bytes());
                string(&mut raw, path);
                string(&mut raw, name);
            }
            Entry::ClassMoved { time_ms, from, to } => {
                raw.push(5);
                raw.extend_from_slice(&time_ms.to_le_bytes());
                string(&mut raw, from);
                match to {
                    Some(to) => string(&mut raw, to),
                    None => raw.extend_from_slice(&u16::MAX.to_le_bytes()),
                }
            }
        }
    }
    // Level 1: most of a page is often zeros or repeats; higher levels cost CPU for little more.
    zstd::bulk::compress(&raw, 1)
}

fn head(raw: &mut Vec<u8>, kind: u8, time_ms: u64, object: &ObjectRef, page_size: u32, token: u64) {
    raw.push(kind);
    raw.extend_from_slice(&time_ms.to_le_bytes());
    string(raw, &object.class);
    raw.extend_from_slice(&object.id);
    raw.extend_from_slice(&page_size.to_le_bytes());
    raw.extend_from_slice(&token.to_le_bytes());
}

fn string(raw: &mut Vec<u8>, text: &str) {
    raw.extend_from_slice(&(text.len() as u16).to_le_bytes());
    raw.extend_from_slice(text.as_bytes());
}

/// Decodes a batch. A damaged or foreign one is an error naming what is wrong.
pub fn decode(batch: &[u8]) -> io::Result<Vec<Entry>> {
    let mut raw = Vec::new();
    zstd::stream::read::Decoder::new(batch)?.read_to_end(&mut raw)?;
    let mut input = Input { bytes: &raw, at: 0 };
    if input.take(4)? != MAGIC {
        return Err(damaged("it does not start with WDOB"));
    }
    let version = input.u32()?;
    if !(1..=VERSION).contains(&version) {
        return Err(damaged(&format!("format version {version}; this wdo reads version {VERSION}")));
    }
    let mut entries = Vec::new();
    while input.at < raw.len() {
        let kind = input.take(1)?[0];
        let time_ms = input.u64()?;
        entries.push(match kind {
            1 | 2 => {
                let class = input.string()?;
                let id: [u8; 32] = input.take(32)?.try_into().expect("32 bytes");
                let object = ObjectRef { class, id };
                let page_size = input.u32()?;
                if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
                    return Err(damaged(&format!("a page size of {page_size}")));
                }
                let token = if version >= 2 { input.u64()? } else { 0 };
                if kind == 1 {
                    let pages = input.u32()? as usize;
                    let bytes = input.take(pages * page_size as usize)?.to_vec();
                    Entry::Snapshot { time_ms, object, token, page_size, bytes }
                } else {
                    let db_pages = input.u32()?;
                    let count = input.u32()? as usize;
                    let mut pages = Vec::with_capacity(count.min(1 << 16));
                    for _ in 0..count {
                        let number = input.u32()?;
                        if number == 0 {
                            return Err(damaged("a page numbered 0 (pages count from 1)"));
                        }
                        pages.push((number, input.take(page_size as usize)?.to_vec()));
                    }
                    Entry::Transaction { time_ms, object, token, page_size, db_pages, pages }
                }
            }
            3 => {
                let path = input.string()?;
                let length = input.u64()?;
                let bytes = if length == u64::MAX {
                    None
                } else {
                    Some(input.take(usize::try_from(length).map_err(|_| damaged("a file too large"))?)?.to_vec())
                };
                Entry::File { time_ms, path, bytes }
            }
            4 => Entry::StoredFile { time_ms, path: input.string()?, name: input.string()? },
            5 => {
                let from = input.string()?;
                let to = if input.bytes[input.at..].starts_with(&u16::MAX.to_le_bytes()) {
                    input.take(2)?;
                    None
                } else {
                    Some(input.string()?)
                };
                Entry::ClassMoved { time_ms, from, to }
            }
            other => return Err(damaged(&format!("an entry of unknown kind {other}"))),
        });
    }
    Ok(entries)
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a wdo backup batch: {what}"))
}

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end =
            self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| damaged("it ends early"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> io::Result<String> {
        let length = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| damaged("a name that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_to_the_entries_it_was_made_of() {
        let object = ObjectRef { class: "counter".into(), id: [7; 32] };
        let entries = vec![
            Entry::Snapshot { time_ms: 1, object: object.clone(), token: 0, page_size: 512, bytes: vec![1; 1024] },
            Entry::Snapshot { time_ms: 1, object: object.clone(), token: 9, page_size: 4096, bytes: Vec::new() },
            Entry::Transaction {
                time_ms: 2,
                object,
                token: 1 << 40,
                page_size: 512,
                db_pages: 3,
                pages: vec![(1, vec![2; 512]), (3, vec![3; 512])],
            },
            Entry::File { time_ms: 3, path: "objects/counter/secret".into(), bytes: Some(vec![9; 32]) },
            Entry::File { time_ms: 4, path: "deploy/components/x.wasm".into(), bytes: None },
            Entry::StoredFile { time_ms: 5, path: "deploy/components/y.wasm".into(), name: "components/y.wasm".into() },
            Entry::ClassMoved { time_ms: 6, from: "old".into(), to: Some("new".into()) },
            Entry::ClassMoved { time_ms: 7, from: "gone".into(), to: None },
        ];
        let batch = encode(&entries).unwrap();
        assert!(batch.len() < 256, "pages of repeated bytes compress: {} bytes", batch.len());
        assert_eq!(decode(&batch).unwrap(), entries);
    }

    #[test]
    fn a_damaged_batch_is_an_error_that_says_so() {
        let batch = encode(&[Entry::File { time_ms: 3, path: "a".into(), bytes: Some(vec![1; 10]) }]).unwrap();
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(&batch[..]).unwrap().read_to_end(&mut raw).unwrap();
        raw.truncate(raw.len() - 3);
        let cut = zstd::bulk::compress(&raw, 1).unwrap();
        assert!(decode(&cut).unwrap_err().to_string().contains("ends early"));
        assert!(decode(b"not zstd at all").is_err());
        let object = ObjectRef { class: "c".into(), id: [1; 32] };
        let page_zero = Entry::Transaction {
            time_ms: 1,
            object,
            token: 0,
            page_size: 512,
            db_pages: 1,
            pages: vec![(0, vec![0; 512])],
        };
        assert!(decode(&encode(&[page_zero]).unwrap()).unwrap_err().to_string().contains("numbered 0"));
    }

    /// Batches written before fencing tokens (version 1) still restore: their entries carry 0.
    #[test]
    fn a_version_1_batch_reads_with_no_token() {
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.push(1);
        raw.extend_from_slice(&5u64.to_le_bytes());
        string(&mut raw, "c");
        raw.extend_from_slice(&[2; 32]);
        raw.extend_from_slice(&512u32.to_le_bytes());
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&[7; 512]);
        let batch = zstd::bulk::compress(&raw, 1).unwrap();
        let object = ObjectRef { class: "c".into(), id: [2; 32] };
        let expected = Entry::Snapshot { time_ms: 5, object, token: 0, page_size: 512, bytes: vec![7; 512] };
        assert_eq!(decode(&batch).unwrap(), vec![expected]);
    }
}
