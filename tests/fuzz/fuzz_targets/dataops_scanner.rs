//! The `DATAOPS_VAULT(PATH)` scanner on arbitrary bytes, against a plain
//! byte-by-byte reference implementation of the rule in
//! `src/jobs/reference.rs`: both find the same references at the same
//! offsets, or fail at the same offset. The pieces tile the text in order,
//! no literal holds the opener, every reference's text is the opener, a
//! path without `)`, and `)`; and substituting each reference's own text
//! gives the input back byte for byte. Every referenced path prints as
//! text that parses back to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runvault::jobs::reference::{OPEN, Piece, scan};
use runvault::vault::KeyPath;

fuzz_target!(|data: &[u8]| {
    let scanned = scan(data);
    let expected = reference_scan(data);
    match (&scanned, &expected) {
        (Ok(scanned), Ok(expected)) => {
            let found: Vec<(usize, &KeyPath)> = scanned
                .pieces
                .iter()
                .filter_map(|piece| match piece {
                    Piece::Reference { path, at } => Some((*at, path)),
                    Piece::Literal(_) => None,
                })
                .collect();
            let expected: Vec<(usize, &KeyPath)> =
                expected.iter().map(|(at, p)| (*at, p)).collect();
            assert_eq!(found, expected, "the scanner and the reference disagree");
        }
        (Err(err), Err(at)) => assert_eq!(err.at, *at, "the error is at another offset"),
        _ => panic!("the scanner says {scanned:?}, the reference {expected:?}"),
    }
    let Ok(scanned) = scanned else {
        return;
    };
    // The pieces tile the text, and their texts rebuild it.
    let mut position = 0;
    let mut raw = Vec::new();
    for piece in &scanned.pieces {
        match piece {
            Piece::Literal(range) => {
                assert_eq!(range.start, position, "a gap or overlap before a literal");
                assert!(range.end > range.start, "an empty literal");
                assert!(
                    find(&data[range.clone()]).is_none(),
                    "a literal holds the opener"
                );
                position = range.end;
            }
            Piece::Reference { path, at } => {
                assert_eq!(*at, position, "a gap or overlap before a reference");
                let inner = &data[at + OPEN.len()..];
                let close = inner
                    .iter()
                    .position(|&b| b == b')')
                    .expect("a reference ends with `)`");
                raw.push(data[*at..at + OPEN.len() + close + 1].to_vec());
                position = at + OPEN.len() + close + 1;
                assert_eq!(
                    &KeyPath::parse(&path.to_string()).expect("a printed path parses"),
                    path,
                    "a path prints as another path"
                );
            }
        }
    }
    assert_eq!(position, data.len(), "the pieces do not cover the text");
    let mut texts = raw.iter();
    let rebuilt = scanned
        .substitute(data, |_| {
            Ok::<_, ()>(texts.next().expect("one text per reference").as_slice())
        })
        .expect("no error");
    assert_eq!(
        rebuilt, data,
        "substituting the references' own text changes the text"
    );
});

/// The rule, read naively: at each byte, if the opener starts here, the
/// path runs to the first `)` (none: an error here), must be UTF-8 and a
/// path (else an error here), and the scan goes on after the `)`.
fn reference_scan(text: &[u8]) -> Result<Vec<(usize, KeyPath)>, usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < text.len() {
        if !text[at..].starts_with(OPEN) {
            at += 1;
            continue;
        }
        let mut end = at + OPEN.len();
        while end < text.len() && text[end] != b')' {
            end += 1;
        }
        if end == text.len() {
            return Err(at);
        }
        let path = std::str::from_utf8(&text[at + OPEN.len()..end])
            .ok()
            .and_then(|inner| KeyPath::parse(inner).ok())
            .ok_or(at)?;
        found.push((at, path));
        at = end + 1;
    }
    Ok(found)
}

fn find(text: &[u8]) -> Option<usize> {
    text.windows(OPEN.len()).position(|w| w == OPEN)
}
