//! Bytes to lines: a bounded line decoder that never buffers more than one line's limit.

/// One item decoded from the client's byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete line, CR/LF removed.
    Line(String),
    /// A line passed the limit; the rest of it is being discarded. Reported once per line.
    TooLong,
    /// A complete line that is not UTF-8.
    InvalidUtf8,
    /// More than the unterminated-bytes limit arrived without a newline: disconnect.
    Unterminated,
}

/// Splits a byte stream into lines, buffering at most one line's limit.
#[derive(Debug)]
pub struct LineDecoder {
    pub(super) line: Vec<u8>,
    max_line: usize,
    max_unterminated: usize,
    /// Bytes since the last newline, including discarded ones.
    since_newline: usize,
    discarding: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max_line` bytes (terminator excluded).
    pub fn new(max_line: usize, max_unterminated: usize) -> Self {
        LineDecoder {
            line: Vec::new(),
            max_line,
            max_unterminated,
            since_newline: 0,
            discarding: false,
        }
    }

    /// The line limit in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Consumes bytes from the front of `input` until one item is complete.
    /// Returns `None` once `input` is used up without completing an item. The result does
    /// not depend on how the stream is cut into `input`s: every limit is checked at the exact
    /// byte that crosses it.
    pub fn decode(&mut self, input: &mut &[u8]) -> Option<Incoming> {
        if self.since_newline > self.max_unterminated {
            // Sticky: the session disconnects on the first report; later calls repeat it.
            return Some(Incoming::Unterminated);
        }
        while !input.is_empty() {
            let newline = input.iter().position(|&b| b == b'\n');
            let avail = newline.unwrap_or(input.len());
            // Never consume past the byte that makes the run without a newline too long.
            let allowance = self.max_unterminated + 1 - self.since_newline;
            let take = avail.min(allowance);
            let chunk = &input[..take];
            self.since_newline += take;
            let mut started_discarding = false;
            if !self.discarding {
                // One extra byte of room for the CR of a CRLF.
                if self.line.len() + chunk.len() > self.max_line + 1 {
                    self.discarding = true;
                    started_discarding = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            if self.since_newline > self.max_unterminated {
                *input = &input[take..];
                // A line that just became too long is reported first; the next call
                // reports the cut-off.
                return Some(if started_discarding {
                    Incoming::TooLong
                } else {
                    Incoming::Unterminated
                });
            }
            *input = &input[(take + newline.map_or(0, |_| 1))..];
            if newline.is_none() {
                if started_discarding {
                    return Some(Incoming::TooLong);
                }
                continue;
            }
            self.since_newline = 0;
            if self.discarding {
                self.discarding = false;
                if !started_discarding {
                    // Reported when discarding started.
                    continue;
                }
                return Some(Incoming::TooLong);
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.max_line {
                return Some(Incoming::TooLong);
            }
            return Some(match String::from_utf8(line) {
                Ok(s) => Incoming::Line(s),
                Err(_) => Incoming::InvalidUtf8,
            });
        }
        None
    }
}
