use super::{HeldWal, MOST_HELD, Made, Written};

const PAGE: usize = 1024;
const SALTS: [u8; 8] = *b"saltsalt";

/// A template of `pages` pages of 1 KiB, each filled with its number, page size in its header.
fn template(pages: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..pages * PAGE).map(|i| (i / PAGE) as u8 + 1).collect();
    bytes[16..18].copy_from_slice(&(PAGE as u16).to_be_bytes());
    bytes
}

fn wal_header() -> Vec<u8> {
    let mut header = vec![0; 32];
    header[0..4].copy_from_slice(&0x377f_0682u32.to_be_bytes());
    header[8..12].copy_from_slice(&(PAGE as u32).to_be_bytes());
    header[16..24].copy_from_slice(&SALTS);
    header
}

fn frame_header(page: u32, commit_pages: u32) -> Vec<u8> {
    let mut header = vec![0; 24];
    header[0..4].copy_from_slice(&page.to_be_bytes());
    header[4..8].copy_from_slice(&commit_pages.to_be_bytes());
    header[8..16].copy_from_slice(&SALTS);
    header
}

fn offset(frame: usize) -> u64 {
    (32 + frame * (24 + PAGE)) as u64
}

/// Writes frame number `frame` (from 0) as SQLite does: its header, then its page.
fn write_frame(wal: &mut HeldWal, frame: usize, page: u32, commit_pages: u32, fill: u8) -> (Written, Written) {
    let template = template(3);
    let header = wal.write(&frame_header(page, commit_pages), offset(frame), &template);
    let data = wal.write(&[fill; PAGE], offset(frame) + 24, &template);
    (header, data)
}

#[test]
fn a_commit_makes_the_template_with_its_pages() {
    let mut wal = HeldWal::default();
    assert_eq!(wal.write(&wal_header(), 0, &template(3)), Written::Held);
    assert_eq!(write_frame(&mut wal, 0, 2, 0, 0xaa), (Written::Held, Written::Held));
    let (header, data) = write_frame(&mut wal, 1, 4, 4, 0xbb);
    assert_eq!(header, Written::Held, "the frame's page is not written yet");
    let Written::Commits(database) = data else { panic!("{data:?}") };
    assert_eq!(database.len(), 4 * PAGE);
    assert_eq!(database[..PAGE], template(3)[..PAGE]);
    assert!(database[PAGE..2 * PAGE].iter().all(|&b| b == 0xaa));
    assert!(database[2 * PAGE..3 * PAGE].iter().all(|&b| b == 3), "untouched: the template's");
    assert!(database[3 * PAGE..].iter().all(|&b| b == 0xbb));
}

#[test]
fn a_later_frame_of_a_page_wins_and_the_commit_cuts_the_database() {
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    write_frame(&mut wal, 0, 1, 0, 0x11);
    write_frame(&mut wal, 1, 3, 0, 0x33);
    let (_, data) = write_frame(&mut wal, 2, 1, 2, 0x12);
    let Written::Commits(database) = data else { panic!("{data:?}") };
    assert_eq!(database.len(), 2 * PAGE, "page 3 is past the commit's size");
    assert!(database[..PAGE].iter().all(|&b| b == 0x12));
}

#[test]
fn a_commit_header_over_an_older_frame_waits_for_its_own_page() {
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    // A transaction that spilled a frame and rolled back leaves it behind; the next one writes
    // its commit frame in the same place.
    write_frame(&mut wal, 0, 2, 0, 0x01);
    let template = template(3);
    assert_eq!(wal.write(&frame_header(2, 3), offset(0), &template), Written::Held);
    let Written::Commits(database) = wal.write(&[0x02; PAGE], offset(0) + 24, &template) else { panic!() };
    assert!(database[PAGE..2 * PAGE].iter().all(|&b| b == 0x02));
}

#[test]
fn after_its_commit_made_the_database_every_write_spills() {
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    assert!(matches!(write_frame(&mut wal, 0, 2, 3, 0xaa).1, Written::Commits(_)));
    wal.made = Some(Made::Unsynced);
    let held = wal.bytes().to_vec();
    assert_eq!(wal.write(&frame_header(3, 0), offset(1), &template(3)), Written::Spill);
    assert_eq!(wal.bytes(), held, "a spilled write is not held");
}

#[test]
fn what_cannot_be_made_here_lands_in_a_file() {
    // Too large a database.
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    assert_eq!(write_frame(&mut wal, 0, 5, 5, 0xaa).1, Written::Lands);
    // Frames of another WAL (other salts).
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    let mut header = frame_header(2, 3);
    header[8] ^= 1;
    wal.write(&header, offset(0), &template(3));
    assert_eq!(wal.write(&[0; PAGE], offset(0) + 24, &template(3)), Written::Lands);
    // Another page size.
    let mut wal = HeldWal::default();
    let mut header = wal_header();
    header[8..12].copy_from_slice(&4096u32.to_be_bytes());
    wal.write(&header, 0, &template(3));
    let commit = wal.write(&frame_header(1, 1), offset(0), &template(3));
    assert_eq!(commit, Written::Held, "not a frame's end at this page size");
    assert_eq!(write_frame(&mut wal, 0, 1, 1, 0).1, Written::Lands);
}

#[test]
fn past_its_bound_a_wal_spills() {
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    let far = MOST_HELD as u64 - 10;
    assert_eq!(wal.write(&[1; 20], far, &template(3)), Written::Spill);
    assert_eq!(wal.len(), 32);
}

#[test]
fn reads_see_what_was_written_and_zeros_past_it() {
    let mut wal = HeldWal::default();
    wal.write(&wal_header(), 0, &template(3));
    let mut buf = [9; 40];
    assert!(!wal.read(&mut buf, 0), "a short read");
    assert_eq!(buf[..32], wal_header()[..]);
    assert_eq!(buf[32..], [0; 8]);
    let mut salts = [0; 8];
    assert!(wal.read(&mut salts, 16));
    assert_eq!(salts, SALTS);
    wal.truncate(0);
    assert_eq!(wal.len(), 0);
    assert!(!wal.read(&mut salts, 16));
}
