//! `cargo xtask facade-size`: how thin the facade is. Counts the **code lines** of
//! `crates/piko-obs/src/*.rs`: the lines that are neither blank nor a comment (`//`,
//! `///`, `//!`), outside `#[cfg(test)]` modules. Doc comments are documentation, not
//! code: every public item keeps its own, and they are not counted. It also finds the
//! longest function (its code lines, signature to closing brace).
//!
//! The targets are [`MAX_LINES`] and [`MAX_FUNCTION_LINES`]. `cargo xtask ci` prints
//! the figures, and fails past each limit once it is enforced ([`ENFORCED`]: set for a
//! limit once it is met).
//!
//! The scan reads the text, not the syntax: braces inside string literals are skipped,
//! and a test module is a `#[cfg(test)]` line followed by a `mod` item.

use std::fs;
use std::path::Path;

use crate::support::{Result, root};

/// The most code lines the facade's non-test code may hold.
pub(crate) const MAX_LINES: usize = 800;
/// The most code lines one function of the facade may hold.
pub(crate) const MAX_FUNCTION_LINES: usize = 60;
/// Whether `cargo xtask ci` fails past each limit (lines, longest function); set for
/// a limit once it is met. Both are met and enforced.
const ENFORCED: Limits = Limits {
    lines: true,
    function: true,
};

/// Which limits a run fails on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Fails past [`MAX_LINES`].
    pub(crate) lines: bool,
    /// Fails past [`MAX_FUNCTION_LINES`].
    pub(crate) function: bool,
}

/// The size of the facade's non-test code.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Size {
    /// Code lines outside test modules.
    pub(crate) lines: usize,
    /// Per file, its code lines outside test modules.
    pub(crate) files: Vec<(String, usize)>,
    /// The longest function: where it starts (`file:line name`) and its code lines.
    pub(crate) longest: Option<(String, usize)>,
}

/// Prints the facade's size (`cargo xtask facade-size`), failing past the limits of
/// `enforce`.
pub(crate) fn run(enforce: Limits) -> Result {
    let size = measure(&root().join("crates/piko-obs/src"))?;
    for (file, lines) in &size.files {
        println!("facade-size: {file}: {lines} code lines");
    }
    let (at, longest) = size.longest.clone().unwrap_or_default();
    println!(
        "facade-size: {} code lines in all, outside tests (limit {MAX_LINES}); longest function {longest} code lines at {at} (limit {MAX_FUNCTION_LINES})",
        size.lines
    );
    if enforce.lines && size.lines > MAX_LINES {
        return Err(format!(
            "the facade holds {} code lines outside tests, at most {MAX_LINES}: move subsystem code into its crate",
            size.lines
        ));
    }
    if enforce.function && longest > MAX_FUNCTION_LINES {
        return Err(format!(
            "the facade's function at {at} holds {longest} code lines, at most {MAX_FUNCTION_LINES}: split it, or move its subsystem's part into its crate"
        ));
    }
    Ok(())
}

/// The check `cargo xtask ci` runs: the figures, failing past the limits [`ENFORCED`].
pub(crate) fn ci() -> Result {
    run(ENFORCED)
}

/// Measures every `.rs` file directly in `dir`, in name order.
pub(crate) fn measure(dir: &Path) -> Result<Size> {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    paths.sort();
    let mut size = Size::default();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let file = measure_text(&text);
        size.lines += file.lines;
        size.files.push((name.to_string(), file.lines));
        if let Some((at, n)) = file.longest
            && size.longest.as_ref().is_none_or(|(_, m)| n > *m)
        {
            size.longest = Some((format!("{name}:{at}"), n));
        }
    }
    Ok(size)
}

/// One file's code lines outside test modules and its longest function.
fn measure_text(text: &str) -> Size {
    let mut size = Size::default();
    // The brace depth, the depth a test module closes at, and the open functions (their
    // depth, first line, name and non-blank lines so far).
    let mut depth = 0usize;
    let mut test_until: Option<usize> = None;
    let mut after_cfg_test = false;
    let mut functions: Vec<(usize, usize, String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = without_strings(line);
        let trimmed = code.trim();
        if test_until.is_none() {
            if trimmed.starts_with("#[cfg(test)]") {
                after_cfg_test = true;
                continue;
            } else if after_cfg_test && !trimmed.is_empty() {
                after_cfg_test = false;
                if is_mod(trimmed) && trimmed.ends_with('{') {
                    test_until = Some(depth);
                }
            }
        }
        let in_test = test_until.is_some();
        if !in_test && is_code(line) {
            size.lines += 1;
            for f in &mut functions {
                f.3 += 1;
            }
            if let Some(name) = function_name(trimmed) {
                functions.push((depth, n + 1, name, 1));
            }
        }
        for c in code.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if test_until == Some(depth) {
                        test_until = None;
                    }
                    while let Some(&(d, at, _, lines)) = functions.last() {
                        if depth > d {
                            break;
                        }
                        let name = functions.pop().map(|f| f.2).unwrap_or_default();
                        if size.longest.as_ref().is_none_or(|(_, m)| lines > *m) {
                            size.longest = Some((format!("{at} {name}"), lines));
                        }
                    }
                }
                // A declaration without a body (`fn f();` in a trait) opens nothing.
                ';' if functions.last().is_some_and(|f| f.0 == depth && f.3 == 1) => {
                    functions.pop();
                }
                _ => {}
            }
        }
    }
    size
}

/// The line with its string literals emptied, and its `//` comment dropped.
fn without_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => {
                in_string = false;
                out.push('"');
            }
            (true, _) => {}
            (false, '"') => {
                in_string = true;
                out.push('"');
            }
            (false, '\'') => {
                // A char literal such as '{' (a lifetime has no closing quote).
                let rest: String = chars.clone().take(3).collect();
                let close = if rest.starts_with('\\') { 2 } else { 1 };
                if rest.chars().nth(close) == Some('\'') {
                    for _ in 0..=close {
                        chars.next();
                    }
                    out.push_str("' '");
                } else {
                    out.push('\'');
                }
            }
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, _) => out.push(c),
        }
    }
    out
}

/// Whether the line is code: neither blank nor a comment (`//`, `///`, `//!`).
fn is_code(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with("//")
}

/// Whether the item is a module (`mod tests {`, `pub(crate) mod x {`).
fn is_mod(item: &str) -> bool {
    item.split_whitespace().find(|w| !w.starts_with("pub")) == Some("mod")
}

/// The name of the function the item line starts, if it starts one.
fn function_name(item: &str) -> Option<String> {
    let mut words = item.split_whitespace().skip_while(|w| {
        w.starts_with("pub") || matches!(*w, "const" | "async" | "unsafe" | "extern" | "\"C\"")
    });
    if words.next() != Some("fn") {
        return None;
    }
    let name: String = words
        .next()?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_code_lines_and_the_longest_function() {
        let text = r#"//! A module.

/// Short.
pub fn short() -> u8 {
    1
}

impl X {
    /// Longer, with braces in strings: "{" and '}'.
    pub(crate) async fn longer(&self) -> String {
        let s = "}}}";
        let c = '{';

        format!("{s}{c}")
    }
}

#[cfg(test)]
mod tests {
    fn in_a_test() {
        let a = 1;
        let b = 2;
        let c = 3;
    }
}
"#;
        let size = measure_text(text);
        // 10 code lines before `#[cfg(test)]` (the three comment lines are not code);
        // the test module is not counted.
        assert_eq!(size.lines, 10);
        assert_eq!(size.longest, Some(("10 longer".to_string(), 5)));
    }

    #[test]
    fn comments_inside_a_function_are_not_code() {
        let text =
            "/// Doc.\nfn f() {\n    // Why.\n    x(); // trailing\n    //! odd\n\n    y();\n}\n";
        let size = measure_text(text);
        assert_eq!(size.lines, 4);
        assert_eq!(size.longest, Some(("2 f".to_string(), 4)));
    }

    #[test]
    fn a_body_less_function_and_a_nested_one_close_where_they_should() {
        let text = "trait T {\n    fn f(&self);\n}\nfn outer() {\n    fn inner() {\n        x();\n    }\n    y();\n}\n";
        let size = measure_text(text);
        assert_eq!(size.lines, 9);
        assert_eq!(size.longest, Some(("4 outer".to_string(), 6)));
    }

    #[test]
    fn the_facade_is_measured() {
        let size = measure(&root().join("crates/piko-obs/src")).unwrap();
        assert!(size.files.iter().any(|(f, _)| f == "lib.rs"), "{size:?}");
        assert_eq!(size.lines, size.files.iter().map(|f| f.1).sum::<usize>());
        let (at, longest) = size.longest.unwrap();
        assert!(longest > 1, "{at}");
        // The limits ci enforces hold today.
        assert!(
            !ENFORCED.function || longest <= MAX_FUNCTION_LINES,
            "{at}: {longest}"
        );
        assert!(!ENFORCED.lines || size.lines <= MAX_LINES, "{}", size.lines);
    }
}
