//! The export archive (`xs export` / `xs restore`): a self-describing, streamable format, and
//! its writer and incremental parser (no I/O here; the daemon and the CLI drive them).
//!
//! ```text
//! xs-export 1\n                                   header
//! C <hash> <len>\n<len raw bytes>\n              content, once, before the first frame using it
//! F <frame json>\n                               a frame
//! E {"frames":N,"contents":M,"bytes":B,"sha256":"<hex>"}\n
//! ```
//! `bytes` counts content bytes; `sha256` is over every byte of the archive before the `E` line.

use serde::{Deserialize, Serialize};
pub use ssri::Integrity;
use ssri::{Algorithm, IntegrityOpts};

use crate::error::{Error, Result};

/// The first line of every archive.
pub const HEADER: &[u8] = b"xs-export 1\n";
/// Longest header line accepted (a frame's JSON, a content or end record).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// The archive's last record: what came before it, and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// Frame records in the archive.
    pub frames: u64,
    /// Content records in the archive.
    pub contents: u64,
    /// Bytes of content in those records.
    pub bytes: u64,
    /// Hex SHA-256 of every byte before the `E` line.
    pub sha256: String,
}

fn sha256() -> IntegrityOpts {
    IntegrityOpts::new().algorithm(Algorithm::Sha256)
}

fn hex(opts: IntegrityOpts) -> String {
    opts.result().to_hex().1
}

/// Writes an archive: each method appends records to `out` and hashes them.
pub struct ArchiveWriter {
    hasher: IntegrityOpts,
    frames: u64,
    contents: u64,
    bytes: u64,
}

impl Default for ArchiveWriter {
    fn default() -> Self {
        ArchiveWriter::new()
    }
}

impl ArchiveWriter {
    /// A writer at the start of an archive (write the [`header`](ArchiveWriter::header) first).
    pub fn new() -> ArchiveWriter {
        ArchiveWriter {
            hasher: sha256(),
            frames: 0,
            contents: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        self.hasher.input(data);
        out.extend_from_slice(data);
    }

    /// The header line that opens an archive.
    pub fn header(&mut self, out: &mut Vec<u8>) {
        self.push(out, HEADER);
    }

    /// A frame record; `json` is the frame's wire JSON (one line).
    pub fn frame(&mut self, out: &mut Vec<u8>, json: &[u8]) {
        self.frames += 1;
        self.push(out, b"F ");
        self.push(out, json);
        self.push(out, b"\n");
    }

    /// Starts a content record; then exactly `len` bytes of [`content_data`], then
    /// [`content_end`].
    ///
    /// [`content_data`]: ArchiveWriter::content_data
    /// [`content_end`]: ArchiveWriter::content_end
    pub fn content_start(&mut self, out: &mut Vec<u8>, hash: &Integrity, len: u64) {
        self.contents += 1;
        self.bytes += len;
        self.push(out, format!("C {hash} {len}\n").as_bytes());
    }

    /// Bytes of the current content record.
    pub fn content_data(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        self.push(out, data);
    }

    /// Ends the current content record.
    pub fn content_end(&mut self, out: &mut Vec<u8>) {
        self.push(out, b"\n");
    }

    /// The `E` line; ends the archive.
    #[expect(
        clippy::expect_used,
        reason = "a struct of numbers and a string always serializes"
    )]
    pub fn end(self, out: &mut Vec<u8>) -> Trailer {
        let t = Trailer {
            frames: self.frames,
            contents: self.contents,
            bytes: self.bytes,
            sha256: hex(self.hasher),
        };
        out.extend_from_slice(b"E ");
        out.extend_from_slice(&serde_json::to_vec(&t).expect("a trailer serializes"));
        out.push(b'\n');
        t
    }
}

/// One parsed piece of an archive.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A frame's JSON (not yet checked).
    Frame(Vec<u8>),
    /// A content record starts: its hash and length; its bytes follow as `ContentData`.
    ContentStart {
        /// The content's hash, as the frames name it.
        hash: Integrity,
        /// Its length in bytes.
        len: u64,
    },
    /// Part of the current content (at most what was fed).
    ContentData(Vec<u8>),
    /// The current content record is complete.
    ContentEnd,
    /// The trailer, verified against what came before it.
    End(Trailer),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Records,
    /// Inside content: this many bytes left, then its `\n`.
    Content(u64),
    ContentNewline,
    Done,
}

/// Parses an archive incrementally with bounded memory: [`feed`] bytes as they arrive, take
/// [`next`] events until it answers `None`, and call [`finish`] at the end of the input.
///
/// [`feed`]: ArchiveReader::feed
/// [`next`]: ArchiveReader::next
/// [`finish`]: ArchiveReader::finish
pub struct ArchiveReader {
    buf: Vec<u8>,
    pos: usize,
    state: State,
    hasher: IntegrityOpts,
    frames: u64,
    contents: u64,
    bytes: u64,
    /// Bytes consumed so far (for error messages and progress).
    offset: u64,
}

impl Default for ArchiveReader {
    fn default() -> Self {
        ArchiveReader::new()
    }
}

impl ArchiveReader {
    /// A parser waiting for an archive's header.
    pub fn new() -> ArchiveReader {
        ArchiveReader {
            buf: Vec::new(),
            pos: 0,
            state: State::Header,
            hasher: sha256(),
            frames: 0,
            contents: 0,
            bytes: 0,
            offset: 0,
        }
    }

    /// Appends bytes read from the archive; the next calls parse them.
    pub fn feed(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Frames, contents and content bytes seen so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.frames, self.contents, self.bytes)
    }

    /// Whether the `E` record was read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `n` buffered bytes, hashing them.
    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.pos;
        self.pos += n;
        self.offset += n as u64;
        let s = &self.buf[start..start + n];
        self.hasher.input(s);
        s
    }

    /// The next line (without its `\n`), if a whole one is buffered.
    fn line(&mut self) -> Result<Option<(usize, usize)>> {
        let avail = &self.buf[self.pos..];
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) if i > MAX_LINE => {
                Err(self.bad(format!("a line is longer than {MAX_LINE} bytes")))
            }
            Some(i) => Ok(Some((self.pos, self.pos + i))),
            None if avail.len() > MAX_LINE => {
                Err(self.bad(format!("a line is longer than {MAX_LINE} bytes")))
            }
            None => Ok(None),
        }
    }

    fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(format!("bad archive at byte {}: {msg}", self.offset))
    }

    /// The next event, or `None` if more input is needed (or the archive ended).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event>> {
        match self.state {
            State::Done => {
                if self.pos < self.buf.len() {
                    return Err(self.bad("data after the end record"));
                }
                Ok(None)
            }
            State::Header => {
                let avail = &self.buf[self.pos..];
                let n = avail.len().min(HEADER.len());
                if avail[..n] != HEADER[..n] {
                    return Err(self.bad("this is not an xs export (expected `xs-export 1`)"));
                }
                if n < HEADER.len() {
                    return Ok(None);
                }
                self.take(HEADER.len());
                self.state = State::Records;
                self.next()
            }
            State::Content(0) => {
                self.state = State::ContentNewline;
                self.next()
            }
            State::Content(left) => {
                let avail = self.buf.len() - self.pos;
                if avail == 0 {
                    return Ok(None);
                }
                let n = avail.min(usize::try_from(left).unwrap_or(usize::MAX));
                let data = self.take(n).to_vec();
                self.state = State::Content(left - n as u64);
                Ok(Some(Event::ContentData(data)))
            }
            State::ContentNewline => match self.buf.get(self.pos) {
                None => Ok(None),
                Some(b'\n') => {
                    self.take(1);
                    self.state = State::Records;
                    Ok(Some(Event::ContentEnd))
                }
                Some(_) => Err(self.bad("content is longer than its record says")),
            },
            State::Records => {
                let Some((start, end)) = self.line()? else {
                    return Ok(None);
                };
                let kind = self.buf.get(start..start + 2).unwrap_or(&[]);
                match kind {
                    b"F " => {
                        let json = self.buf[start + 2..end].to_vec();
                        self.take(end + 1 - start);
                        self.frames += 1;
                        Ok(Some(Event::Frame(json)))
                    }
                    b"C " => {
                        let (hash, len) = self.content_header(start + 2, end)?;
                        self.take(end + 1 - start);
                        self.contents += 1;
                        self.bytes += len;
                        self.state = State::Content(len);
                        Ok(Some(Event::ContentStart { hash, len }))
                    }
                    b"E " => {
                        let t: Trailer = serde_json::from_slice(&self.buf[start + 2..end])
                            .map_err(|e| self.bad(format!("bad end record: {e}")))?;
                        let want = Trailer {
                            frames: self.frames,
                            contents: self.contents,
                            bytes: self.bytes,
                            sha256: hex(std::mem::replace(&mut self.hasher, sha256())),
                        };
                        if t != want {
                            return Err(self.bad(format!(
                                "the end record does not match the archive: it says {} frames, \
                                 {} contents, {} bytes, sha256 {}; the archive has {} frames, \
                                 {} contents, {} bytes, sha256 {} (the archive is corrupt)",
                                t.frames,
                                t.contents,
                                t.bytes,
                                t.sha256,
                                want.frames,
                                want.contents,
                                want.bytes,
                                want.sha256
                            )));
                        }
                        self.pos = end + 1;
                        self.offset += (end + 1 - start) as u64;
                        self.state = State::Done;
                        Ok(Some(Event::End(t)))
                    }
                    _ => Err(self.bad(format!(
                        "unknown record {:?} (expected F, C or E)",
                        String::from_utf8_lossy(&self.buf[start..end.min(start + 16)])
                    ))),
                }
            }
        }
    }

    fn content_header(&self, start: usize, end: usize) -> Result<(Integrity, u64)> {
        let text = std::str::from_utf8(&self.buf[start..end])
            .map_err(|_| self.bad("content record is not UTF-8"))?;
        let (hash, len) = text
            .split_once(' ')
            .ok_or_else(|| self.bad("content record needs a hash and a length"))?;
        let hash = crate::frame::parse_hash(hash).map_err(|e| self.bad(e))?;
        let len = len
            .parse::<u64>()
            .map_err(|_| self.bad(format!("bad content length {len:?}")))?;
        Ok((hash, len))
    }

    /// Checks that the input ended where an archive may end (after its `E` record).
    pub fn finish(&self) -> Result<()> {
        match self.state {
            State::Done => Ok(()),
            State::Header if self.buf.len() == self.pos => {
                Err(Error::invalid("empty archive: nothing to restore"))
            }
            _ => Err(self.bad(
                "the archive ends early (no end record): it was truncated or its export failed",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ArchiveWriter::new();
        w.header(&mut out);
        let data = b"hello\nworld";
        let h = Integrity::from(&data[..]);
        w.content_start(&mut out, &h, data.len() as u64);
        w.content_data(&mut out, data);
        w.content_end(&mut out);
        w.frame(&mut out, br#"{"topic":"a","id":"x"}"#);
        w.end(&mut out);
        out
    }

    fn parse(bytes: &[u8], step: usize) -> Result<Vec<Event>> {
        let mut r = ArchiveReader::new();
        let mut events = Vec::new();
        for chunk in bytes.chunks(step) {
            r.feed(chunk);
            while let Some(e) = r.next()? {
                events.push(e);
            }
        }
        r.finish()?;
        Ok(events)
    }

    #[test]
    fn round_trip_in_any_chunking() {
        let a = sample();
        for step in [1, 2, 7, 1000] {
            let ev = parse(&a, step).unwrap();
            let data: Vec<u8> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::ContentData(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(data, b"hello\nworld");
            assert!(
                matches!(ev.last(), Some(Event::End(t)) if t.frames == 1 && t.contents == 1 && t.bytes == 11)
            );
        }
    }

    #[test]
    fn corruption_is_refused() {
        let a = sample();
        // Any flipped byte is caught (header, record, content, or trailer).
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 0x01;
            assert!(parse(&b, 5).is_err(), "flipped byte {i} went unnoticed");
        }
        for n in 0..a.len() {
            assert!(
                parse(&a[..n], 3).is_err(),
                "truncated at {n} went unnoticed"
            );
        }
    }
}
