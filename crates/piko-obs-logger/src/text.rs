//! Text shown to people: control characters made visible, so that a value cannot break a
//! line or send escape sequences to a terminal.

use std::io::Write as _;

/// Appends `s` with every control character shown as an escape, so it stays on one line
/// and cannot carry terminal escape sequences: C0 controls and DEL as `\n`, `\r`, `\t`
/// or `\x1b`, C1 controls (U+0080 to U+009F, which some terminals read as escapes) as
/// `\u{9b}`.
pub fn write_neutralised(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Fast path: nothing below 0x20, no DEL, and no C1 control (encoded as C2 80..C2 9F).
    let clean = !bytes.iter().enumerate().any(|(i, &b)| {
        b < 0x20
            || b == 0x7f
            || (b == 0xc2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    });
    if clean {
        buf.extend_from_slice(bytes);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(buf, "\\x{:02x}", c as u32);
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                let _ = write!(buf, "\\u{{{:x}}}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}
