//! RecordIO framing of v1 event streams: `<decimal length>\n<record bytes>`, repeated, with
//! no separator after a record (Mesos `recordio.hpp`).

use crate::mesos::CodecError;

/// Largest record the [`Decoder`] accepts (64 MiB).
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

/// Longest length header we wait for before giving up (`u64::MAX` has 20 digits).
const MAX_HEADER_DIGITS: usize = 20;

/// Frames one record: `<len>\n<bytes>` (no trailing newline).
pub fn frame(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
    out
}

/// Streaming decoder: [`push`](Decoder::push) bytes as they arrive (split anywhere), then
/// take complete records with [`next_record`](Decoder::next_record). After an error the
/// stream is unusable (framing is lost) and every later call returns the error again.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    max_record: Option<usize>,
    failed: Option<CodecError>,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with a smaller (or larger) record limit than [`MAX_RECORD`].
    pub fn with_max_record(max: usize) -> Self {
        Decoder {
            max_record: Some(max),
            ..Self::default()
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a record.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete record, `Ok(None)` if more bytes are needed, or an error for a
    /// non-numeric, zero or too large length.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.parse() {
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn parse(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let max = self.max_record.unwrap_or(MAX_RECORD);
        let header_end = self.buf.iter().position(|b| *b == b'\n');
        let digits = &self.buf[..header_end.unwrap_or(self.buf.len())];
        if let Some(bad) = digits.iter().find(|b| !b.is_ascii_digit()) {
            return Err(CodecError::RecordIo(format!(
                "record length contains the non-digit byte 0x{bad:02x}"
            )));
        }
        if digits.len() > MAX_HEADER_DIGITS {
            return Err(CodecError::RecordIo("record length is too long".into()));
        }
        let Some(header_end) = header_end else {
            return Ok(None);
        };
        if digits.is_empty() {
            return Err(CodecError::RecordIo("empty record length".into()));
        }
        let len: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CodecError::RecordIo("record length does not fit in 64 bits".into()))?;
        if len == 0 {
            return Err(CodecError::RecordIo("record length 0".into()));
        }
        if len > max as u64 {
            return Err(CodecError::RecordIo(format!(
                "record length {len} exceeds the limit of {max} bytes"
            )));
        }
        let len = len as usize;
        let start = header_end + 1;
        if self.buf.len() - start < len {
            return Ok(None);
        }
        let record = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Ok(Some(record))
    }
}
