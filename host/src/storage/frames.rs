//! WAL frames written whole: a frame's header and its page in one write.
//!
//! # Design
//!
//! SQLite appends a frame to a WAL as two writes, its 24-byte header and then its page. An
//! event that writes one key changes one page, so each commit was two `pwrite`s; with traffic
//! spread over many objects every request is a commit of its own, and those writes were ~11%
//! of the host's CPU (perf, 1,000 objects at random). So the VFS holds a frame header SQLite
//! writes and writes it with the page that follows it, in one call. The two are joined in a
//! buffer of the writing thread's, so an open WAL costs only its held header (40 bytes).
//!
//! What SQLite sees of the file never changes: a write that does not continue the held header
//! (another header, a page elsewhere, a WAL header) writes it first, and so does every other
//! call that looks at or changes the file (read, size, truncate, sync, file controls; `vfs.rs`
//! does that in `with_inner`). Parking a file keeps a held header: the page's write reopens the
//! file and writes both.
//!
//! Nothing acknowledged waits in memory: a header alone is not a frame (its checksum covers the
//! page), and SQLite writes the page right after it, before the commit returns. A header whose
//! connection closes before its page came (the page's write failed) is dropped: on disk it would
//! be a frame without its page, which recovery ignores. A write that fails leaves held what was
//! held before it (SQLite was told that write failed, and that the earlier header was written),
//! to be written before anything else touches the file.
//!
//! Only files that exist are held this way: an unborn WAL's first write makes the file at once
//! (`unborn.rs`), and a held WAL (`held.rs`) keeps all its bytes in memory anyway.

/// The size of a WAL frame's header.
const FRAME_HEADER: usize = super::db::FRAME_HEADER as usize;
/// The WAL's own header comes before the first frame.
const WAL_HEADER: i64 = super::db::WAL_HEADER as i64;
/// SQLite's largest page.
const MAX_PAGE: usize = 65536;

/// A WAL file's frame header waiting for its page.
#[derive(Default)]
pub(super) struct Frames {
    header: Option<([u8; FRAME_HEADER], i64)>,
}

/// What to write for one of SQLite's writes: `first` on its own (a held header the write does
/// not continue), then `then`, unless the write is a header that is now held.
pub(super) struct Plan<'a> {
    pub first: Option<([u8; FRAME_HEADER], i64)>,
    pub then: Option<(&'a [u8], i64)>,
}

impl Frames {
    /// Plans SQLite's write of `data` at `offset`; a header and its page are joined in `joined`
    /// (the caller's buffer: one per thread, not one per file).
    pub fn write<'a>(&mut self, data: &'a [u8], offset: i64, joined: &'a mut Vec<u8>) -> Plan<'a> {
        let first = self.header.take();
        if let Some((header, at)) = first
            && at + FRAME_HEADER as i64 == offset
            && data.len() <= MAX_PAGE
        {
            joined.clear();
            joined.extend_from_slice(&header);
            joined.extend_from_slice(data);
            return Plan { first: None, then: Some((joined, at)) };
        }
        if data.len() == FRAME_HEADER && offset >= WAL_HEADER {
            let header = data.try_into().expect("FRAME_HEADER bytes");
            self.header = Some((header, offset));
            return Plan { first, then: None };
        }
        Plan { first, then: Some((data, offset)) }
    }

    /// The held header, to be written before another call reaches the file.
    pub fn take_header(&mut self) -> Option<([u8; FRAME_HEADER], i64)> {
        self.header.take()
    }

    /// The header held now, if any.
    pub fn held(&self) -> Option<([u8; FRAME_HEADER], i64)> {
        self.header
    }

    /// Holds `held` again, as it was before a write that failed: SQLite was told the write
    /// failed, so nothing it brought stays held, and a header it was told was written is still
    /// to be written.
    pub fn restore(&mut self, held: Option<([u8; FRAME_HEADER], i64)>) {
        self.header = held;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(frames: &mut Frames, data: &[u8], offset: i64) -> (Option<i64>, Option<(Vec<u8>, i64)>) {
        let mut joined = Vec::new();
        let Plan { first, then } = frames.write(data, offset, &mut joined);
        (first.map(|(_, at)| at), then.map(|(bytes, at)| (bytes.to_vec(), at)))
    }

    #[test]
    fn a_header_and_the_page_after_it_are_one_write() {
        let mut frames = Frames::default();
        let header = [7u8; FRAME_HEADER];
        let page = [9u8; 1024];
        assert_eq!(plan(&mut frames, &header, 32), (None, None), "held");
        let (first, then) = plan(&mut frames, &page, 32 + 24);
        assert_eq!(first, None);
        let (bytes, at) = then.unwrap();
        assert_eq!((at, bytes.len()), (32, 24 + 1024));
        assert_eq!((&bytes[..24], &bytes[24..]), (&header[..], &page[..]));
        assert!(frames.take_header().is_none(), "nothing left held");
    }

    #[test]
    fn a_write_that_does_not_continue_the_header_writes_it_first() {
        let mut frames = Frames::default();
        // Elsewhere in the file: the header goes first, then the write, as SQLite made them.
        plan(&mut frames, &[1; FRAME_HEADER], 1080);
        assert_eq!(plan(&mut frames, &[2; 100], 0), (Some(1080), Some((vec![2; 100], 0))));
        // Another header: the first is written, the second held.
        plan(&mut frames, &[1; FRAME_HEADER], 32);
        assert_eq!(plan(&mut frames, &[3; FRAME_HEADER], 1080), (Some(32), None));
        assert_eq!(frames.take_header().map(|(h, at)| (h[0], at)), Some((3, 1080)));
        // A page too large to be SQLite's: written apart.
        plan(&mut frames, &[1; FRAME_HEADER], 32);
        let big = vec![0u8; MAX_PAGE + 1];
        assert_eq!(plan(&mut frames, &big, 56).0, Some(32));
    }

    #[test]
    fn the_wal_header_and_other_sizes_are_never_held() {
        let mut frames = Frames::default();
        // The WAL's own header (32 bytes at 0), and 24 bytes inside it (a salt rewrite).
        assert_eq!(plan(&mut frames, &[0; 32], 0), (None, Some((vec![0; 32], 0))));
        assert_eq!(plan(&mut frames, &[0; FRAME_HEADER], 0), (None, Some((vec![0; FRAME_HEADER], 0))));
        assert!(frames.take_header().is_none());
    }

    #[test]
    fn after_a_failed_write_the_header_held_before_it_is_the_one_written_next() {
        let mut frames = Frames::default();
        plan(&mut frames, &[5; FRAME_HEADER], 32);
        // Another header comes and the first one's write fails: the second's write fails too,
        // so the first is held again and the second is not.
        let before = frames.held();
        assert_eq!(plan(&mut frames, &[8; FRAME_HEADER], 1080), (Some(32), None));
        frames.restore(before);
        let (_, then) = plan(&mut frames, &[6; 1024], 56);
        assert_eq!(then.map(|(bytes, at)| (bytes[0], bytes[24], bytes.len(), at)), Some((5, 6, 1048, 32)));
    }
}
