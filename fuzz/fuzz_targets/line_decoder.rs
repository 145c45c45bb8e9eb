//! The line decoder on arbitrary bytes cut into arbitrary chunks: it never panics, never
//! yields a line over the limit or containing LF, never buffers more than one line, and the
//! chunking does not change what it yields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlschat::protocol::{Incoming, LineDecoder};

const MAX_LINE: usize = 64;
const MAX_UNTERMINATED: usize = 256;

fn decode(chunks: &[&[u8]]) -> Vec<Incoming> {
    let mut decoder = LineDecoder::new(MAX_LINE, MAX_UNTERMINATED);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(item) = decoder.decode(&mut input) {
            let end = item == Incoming::Unterminated;
            out.push(item);
            if end {
                // The session disconnects on the first report.
                return out;
            }
        }
        assert!(input.is_empty(), "decode returned None with input left");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, the rest is the stream.
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let chunks: Vec<&[u8]> = stream.chunks(size).collect();
    let items = decode(&chunks);
    for item in &items {
        if let Incoming::Line(line) = item {
            assert!(line.len() <= MAX_LINE, "line over the limit: {}", line.len());
            assert!(!line.contains('\n'));
        }
    }
    assert_eq!(items, decode(&[stream]), "chunking changed the result");
});
