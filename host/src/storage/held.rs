//! A new object's first commit, written as its database file: no WAL file until a second.
//!
//! # Design
//!
//! A new object's database is unborn until its first write (`unborn.rs`), and that write used
//! to make two files: the database (the template) and its WAL (the commit's frames). On a host
//! making new objects, creating files was the kernel's largest cost (perf, December 5 2026,
//! ext4: `ext4_create` 13% of the host's CPU for two files per object), and most objects are
//! written once or a few times before they close.
//!
//! So the WAL of an unborn database is *held*: SQLite's writes to it are kept in memory, and
//! when a write completes a commit frame, the database file is made with the commit applied:
//! the template, each frame's page put in place, cut to the commit's page count. That is the
//! file a checkpoint of that WAL would leave, and SQLite still reads those pages from the WAL
//! (the held bytes), so it never sees a difference. The WAL becomes a file only when something
//! else is written to it (the next commit, or anything past [`MOST_HELD`]): the held bytes are
//! written first, then the write, as if the file had been there all along. Its frames are then
//! replayed over a database that already holds them, which changes nothing.
//!
//! **Crashes.** The database file is written once, in one write of at most [`MOST_MADE`] bytes
//! at offset 0 (one page of the kernel's page cache, so a killed process leaves all of it or
//! none), and the commit is acknowledged only after that write. A crash before it leaves no
//! file or an empty one, which opens as a new object (`unborn.rs`); after it, the database
//! holds the commit and no WAL stands beside it. A commit that would make a larger database,
//! or that finds a database file already there, is not made this way: the WAL becomes a file
//! and the commit is written to it, as before.
//!
//! **Durability.** With `--durability full`, SQLite syncs the WAL after each commit frame; the
//! held WAL's sync syncs the database file it made, and its folder. With `normal`, nothing is
//! synced (a commit survives the process's crash, as every commit does); the WAL that later
//! becomes a file syncs the database at its own first sync (`vfs.rs`).

/// The most bytes a WAL is held in memory; past them it becomes a file.
pub const MOST_HELD: usize = 8 << 10;

/// The largest database a held commit makes: one page of the kernel's page cache.
pub const MOST_MADE: usize = 4 << 10;

const WAL_HEADER: usize = super::db::WAL_HEADER as usize;
const FRAME_HEADER: usize = super::db::FRAME_HEADER as usize;

/// The WAL of a database that was unborn when its connection opened.
#[derive(Default)]
pub struct HeldWal {
    bytes: Vec<u8>,
    /// The database file a held commit made, if one did.
    pub made: Option<Made>,
}

/// A database file made from a held commit.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Made {
    Unsynced,
    Synced,
}

/// What a write to a held WAL asks of its file.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Held; nothing more.
    Held,
    /// Held, and it completed a commit: the database file that commit makes.
    Commits(Vec<u8>),
    /// Held, and it completed a commit that is not made here (too large, a WAL this does not
    /// read): the WAL must become a file now, with what is held.
    Lands,
    /// Not held: the WAL must become a file first, then take the write.
    Spill,
}

impl HeldWal {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SQLite writes `data` at `offset`; `template` is what the database starts as.
    pub fn write(&mut self, data: &[u8], offset: u64, template: &[u8]) -> Written {
        let Some(end) = usize::try_from(offset).ok().and_then(|o| o.checked_add(data.len())) else {
            return Written::Spill;
        };
        // After a commit made the database, anything written is another commit's (or a
        // rewrite of this one's frames): it must be in a file.
        if self.made.is_some() || end > MOST_HELD {
            return Written::Spill;
        }
        let start = end - data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[start..end].copy_from_slice(data);
        match self.committed_database(start, end, template) {
            None => Written::Held,
            Some(Some(database)) => Written::Commits(database),
            Some(None) => Written::Lands,
        }
    }

    /// If the write of `start..end` completed a commit frame (it wrote the frame's whole page:
    /// SQLite writes a frame's header, then its page), the database that commit makes, or
    /// `None` for one that cannot be made here.
    fn committed_database(&self, start: usize, end: usize, template: &[u8]) -> Option<Option<Vec<u8>>> {
        let Some(page_size) = page_size(template) else { return Some(None) };
        let bytes = &self.bytes;
        let frame = FRAME_HEADER + page_size;
        if bytes.len() < WAL_HEADER || end < WAL_HEADER + frame || !(end - WAL_HEADER).is_multiple_of(frame) {
            return None;
        }
        let frames = (end - WAL_HEADER) / frame;
        let last = WAL_HEADER + (frames - 1) * frame;
        let commit_pages = be32(&bytes[last + 4..]) as usize;
        if commit_pages == 0 || start > last + FRAME_HEADER {
            return None;
        }
        Some(self.apply(frames, commit_pages, page_size, template))
    }

    /// The template with frames `1..=frames` applied and cut to `pages` pages; `None` if the
    /// WAL's header or frames are not the template's page size or salts, or it is too large.
    fn apply(&self, frames: usize, pages: usize, page_size: usize, template: &[u8]) -> Option<Vec<u8>> {
        let bytes = &self.bytes;
        let magic = be32(bytes);
        let wal_page_size = match be32(&bytes[8..]) {
            1 => 65536,
            n => n as usize,
        };
        if magic & !1 != 0x377f_0682 || wal_page_size != page_size || pages * page_size > MOST_MADE {
            return None;
        }
        let mut database = template.to_vec();
        database.resize(pages * page_size, 0);
        let frame = FRAME_HEADER + page_size;
        for at in (0..frames).map(|i| WAL_HEADER + i * frame) {
            if bytes[at + 8..at + 16] != bytes[16..24] {
                return None; // not this WAL's frame
            }
            let page = be32(&bytes[at..]) as usize;
            if page == 0 {
                return None;
            }
            if page <= pages {
                let data = &bytes[at + FRAME_HEADER..at + frame];
                database[(page - 1) * page_size..page * page_size].copy_from_slice(data);
            }
        }
        Some(database)
    }

    /// SQLite's `xRead`: what is held, and zeros past it (a short read).
    pub fn read(&self, buf: &mut [u8], offset: u64) -> bool {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.bytes.len());
        let have = (self.bytes.len() - start).min(buf.len());
        buf[..have].copy_from_slice(&self.bytes[start..start + have]);
        buf[have..].fill(0);
        have == buf.len()
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// SQLite's `xTruncate` (a checkpoint that restarts the WAL, the size limit after a commit).
    pub fn truncate(&mut self, size: u64) {
        if size < self.len() {
            self.bytes.truncate(size as usize);
        }
    }
}

/// A database's page size, from its header (bytes 16-17; 1 means 65,536).
fn page_size(database: &[u8]) -> Option<usize> {
    let raw = u16::from_be_bytes(database.get(16..18)?.try_into().ok()?);
    Some(if raw == 1 { 65536 } else { raw as usize })
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"))
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
