//! Text extraction and quality filters of the cleaned corpus pipeline: markup stripping (HTML,
//! man/groff, Texinfo info files), the leading license comment of source files, prose-or-code
//! classification by file name, and the filters that reject binary, generated, minified,
//! data-like and license-boilerplate documents. Pure functions on strings, tested on small
//! fixtures.
use serde::{Deserialize, Serialize};

/// What a document is: human prose (documentation, books, manuals) or source code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocKind {
    Prose,
    Code,
}

impl DocKind {
    pub fn as_u8(self) -> u8 {
        match self {
            DocKind::Prose => 0,
            DocKind::Code => 1,
        }
    }
    pub fn from_u8(v: u8) -> Option<DocKind> {
        match v {
            0 => Some(DocKind::Prose),
            1 => Some(DocKind::Code),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<DocKind> {
        match s {
            "prose" => Some(DocKind::Prose),
            "code" => Some(DocKind::Code),
            _ => None,
        }
    }
}

/// File-name suffixes of source code.
const CODE_EXT: &[&str] = &[
    "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "s", "S", "asm", "java", "go", "rs", "py", "pl", "pm", "t", "rb", "js", "mjs", "ts",
    "sh", "bash", "el", "lisp", "lsp", "cl", "scm", "ss", "ml", "mli", "tcl", "tk", "erl", "hrl", "f", "f90", "f95", "for", "ada", "adb",
    "ads", "d", "m", "mm", "cs", "scala", "kt", "lua", "php", "awk", "sed", "y", "l", "def", "md5", "ld", "lds", "dts", "dtsi", "mk",
    "cmake", "am", "in", "ac", "m4", "exp", "sql", "v", "vhd", "sv", "swift", "hs", "lhs", "jl", "r", "R", "mac", "lisp", "asd", "x",
    "pyx", "pxd", "cfg", "kconfig",
];

/// File-name suffixes never worth reading (binary or not text of interest).
const SKIP_EXT: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "ico", "svg", "svgz", "eps", "ps", "pdf", "dvi", "xcf", "tif", "tiff", "webp", "wav", "ogg", "mp3",
    "flac", "mp4", "avi", "ttf", "otf", "woff", "woff2", "eot", "pfb", "afm", "zip", "jar", "class", "o", "a", "so", "dll", "exe", "bin",
    "dat", "pyc", "pyo", "mo", "gmo", "po", "pot", "xz", "bz2", "tgz", "lz", "lzma", "7z", "rar", "deb", "rpm", "db", "sqlite", "fw",
    "ucode", "der", "pem", "crt", "key", "p12", "gpg", "sig", "asc", "map", "min.js", "css", "json", "lock", "sum", "inv", "pickle", "npy",
    "npz", "beam", "elc", "cmi", "cmo", "cmx", "fasl", "hi", "dyn_hi", "dump", "pack", "idx", "patch", "diff", "csv", "tsv",
];

/// The name of a file with a trailing `.gz`/`.zst` removed (they are read decompressed).
pub fn inner_name(name: &str) -> &str {
    name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).or_else(|| name.strip_suffix(".dz")).unwrap_or(name)
}

fn ext(name: &str) -> &str {
    name.rsplit_once('.').map(|(_, e)| e).unwrap_or("")
}

/// Files skipped without reading: binary formats, tabular data, diffs, translations.
pub fn skip_file(name: &str) -> bool {
    let n = inner_name(name);
    let lower = n.to_ascii_lowercase();
    SKIP_EXT.iter().any(|e| lower.ends_with(&format!(".{e}")))
}

/// Prose or code by file name; `default` when the name does not say.
pub fn classify(path: &str, default: DocKind) -> DocKind {
    let name = inner_name(path.rsplit('/').next().unwrap_or(path));
    let e = ext(name);
    if matches!(e, "rst" | "txt" | "md" | "html" | "htm" | "xhtml" | "texi" | "texinfo" | "info" | "pod" | "tex" | "adoc")
        || is_man(path)
        || (e.is_empty() && path.contains("/Documentation/"))
    {
        return DocKind::Prose;
    }
    if CODE_EXT.contains(&e) || matches!(name, "Makefile" | "Kconfig" | "Kbuild" | "CMakeLists.txt" | "configure") {
        return DocKind::Code;
    }
    default
}

fn is_man(path: &str) -> bool {
    let name = inner_name(path.rsplit('/').next().unwrap_or(path));
    let e = ext(name);
    // man1/ls.1, man3/printf.3, man9/bus_dma.9freebsd, man3/Foo.3pm
    path.contains("/man/") && e.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// Text of a file as a reader would want it: markup stripped by format.
pub fn extract(path: &str, raw: &str) -> String {
    let name = inner_name(path.rsplit('/').next().unwrap_or(path));
    let text = match ext(name) {
        "html" | "htm" | "xhtml" => strip_html(raw),
        _ if is_man(path) => strip_man(raw),
        // Info files mark nodes and index entries with control characters.
        "info" => raw.replace(['\u{0}', '\u{8}', '\u{1f}', '\u{7f}'], ""),
        _ if CODE_EXT.contains(&ext(name)) => {
            // Files often open with two notices (an SPDX line, then the copyright).
            let mut t = raw;
            for _ in 0..3 {
                t = strip_license_header(t);
            }
            t.to_string()
        }
        _ => raw.to_string(),
    };
    tidy(&text)
}

/// Trailing spaces off every line, at most two blank lines in a row, no blank start or end.
pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blanks = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blanks += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blanks >= 2 {
                "\n\n\n"
            } else if blanks == 1 {
                "\n\n"
            } else {
                "\n"
            });
        }
        blanks = 0;
        out.push_str(line);
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Visible text of an HTML page: tags removed (block tags become line breaks), `script`,
/// `style` and `head` dropped, the common entities decoded.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let b = html.as_bytes();
    let mut i = 0;
    let mut pre = false;
    while i < b.len() {
        if b[i] == b'<' {
            let rest = &lower[i..];
            if rest.starts_with("<!--") {
                i += rest.find("-->").map(|j| j + 3).unwrap_or(rest.len());
                continue;
            }
            if let Some(tag) = ["script", "style", "head"].iter().find(|t| rest[1..].starts_with(*t)) {
                let close = format!("</{tag}");
                i += rest.find(&close).map(|j| j + close.len()).unwrap_or(rest.len());
                i += lower[i..].find('>').map(|j| j + 1).unwrap_or(0);
                continue;
            }
            let end = rest.find('>').map(|j| j + 1).unwrap_or(rest.len());
            let name: String = rest[1..end].trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if name == "pre" {
                pre = !rest.starts_with("</");
            }
            if matches!(
                name.as_str(),
                "p" | "br"
                    | "div"
                    | "li"
                    | "tr"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "pre"
                    | "dt"
                    | "dd"
                    | "table"
                    | "ul"
                    | "ol"
                    | "blockquote"
                    | "section"
                    | "title"
            ) {
                out.push('\n');
            }
            i += end;
            continue;
        }
        let next = lower[i..].find('<').map(|j| i + j).unwrap_or(b.len());
        let chunk = decode_entities(&html[i..next]);
        if pre {
            out.push_str(&chunk);
        } else {
            // Outside <pre>, source line breaks are not text: collapse whitespace runs.
            let mut last_space = out.ends_with([' ', '\n']);
            for c in chunk.chars() {
                if c.is_whitespace() {
                    if !last_space {
                        out.push(' ');
                        last_space = true;
                    }
                } else {
                    out.push(c);
                    last_space = false;
                }
            }
        }
        i = next;
    }
    out
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let semi = rest[..floor_char(rest, 12)].find(';');
        let decoded = semi.and_then(|j| {
            let name = &rest[1..j];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                "hellip" => Some('…'),
                "copy" => Some('©'),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, j + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text of a man page: comment lines dropped, request lines reduced to their arguments (section
/// headings and font requests keep their words), inline font and character escapes removed.
pub fn strip_man(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let text = if let Some(req) = line.strip_prefix('.').or_else(|| line.strip_prefix('\'')) {
            let req = req.trim_start();
            if req.starts_with("\\\"") {
                continue;
            }
            let (name, args) = req.split_once(char::is_whitespace).unwrap_or((req, ""));
            match name {
                "SH" | "SS" => format!("\n{}", args.replace('"', "")),
                "B" | "I" | "BR" | "IR" | "RB" | "RI" | "BI" | "IB" | "SM" | "SB" | "TP" | "IP" | "Nm" | "Nd" | "Fn" | "Ar" | "Fl"
                | "Xr" | "Sh" | "Pa" | "Em" | "Va" | "Dv" => args.replace('"', ""),
                "PP" | "LP" | "P" | "sp" | "br" | "Pp" => String::new(),
                _ => continue,
            }
        } else {
            line.to_string()
        };
        out.push_str(&strip_man_escapes(&text));
        out.push('\n');
    }
    out
}

fn strip_man_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('f') => {
                // \fB, \fI, \fR, \fP, or a two-letter font \f(CW
                let name_len = if it.next() == Some('(') { 2 } else { 0 };
                it.by_ref().take(name_len).for_each(drop);
            }
            Some('(') => {
                let a: String = it.by_ref().take(2).collect();
                out.push_str(match a.as_str() {
                    "em" => "—",
                    "en" => "–",
                    "aq" | "cq" | "oq" => "'",
                    "dq" | "lq" | "rq" => "\"",
                    "bu" => "•",
                    _ => "",
                });
            }
            Some('-') => out.push('-'),
            Some('e') | Some('\\') => out.push('\\'),
            Some('&') | Some('c') | Some('%') => {}
            Some(' ') => out.push(' '),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Source text without its leading comment when that comment is a copyright or license notice
/// (the same notice repeats across thousands of files of a project).
pub fn strip_license_header(src: &str) -> &str {
    let t = src.trim_start();
    let skip_ws = src.len() - t.len();
    let end = if t.starts_with("/*") {
        t.find("*/").map(|j| j + 2)
    } else {
        let marker =
            ["//", "#", ";;", "--", "%"].into_iter().find(|m| t.starts_with(m) && !t.starts_with("#include") && !t.starts_with("#!"));
        marker.map(|m| {
            let mut end = 0;
            for line in t.split_inclusive('\n') {
                if !line.trim_start().starts_with(m) {
                    break;
                }
                end += line.len();
            }
            end
        })
    };
    match end {
        Some(e) => {
            let head = t[..e].to_ascii_lowercase();
            if head.contains("copyright") || head.contains("license") || head.contains("licence") || head.contains("spdx") {
                &src[skip_ws + e..]
            } else {
                src
            }
        }
        None => src,
    }
}

/// Why a document was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reject {
    Binary,
    Short,
    Generated,
    Minified,
    Data,
    License,
}

pub const REJECTS: [Reject; 6] = [Reject::Binary, Reject::Short, Reject::Generated, Reject::Minified, Reject::Data, Reject::License];

/// Limits of the quality filter.
#[derive(Debug, Clone, Copy)]
pub struct Quality {
    /// Fewer bytes than this: `Short`.
    pub min_bytes: usize,
}

/// Markers of machine-written files, looked for in their first 2 KiB.
const GENERATED: &[&str] = &[
    "generated by",
    "do not edit",
    "autogenerated",
    "auto-generated",
    "automatically generated",
    "generated automatically",
    "this file was generated",
    "machine generated",
    "generated file",
];

/// Opening lines of license texts kept as files of their own.
const LICENSE_TEXTS: &[&str] = &[
    "gnu general public license",
    "gnu lesser general public license",
    "gnu library general public license",
    "gnu free documentation license",
    "apache license",
    "permission is hereby granted, free of charge",
    "redistribution and use in source and binary forms",
    "mozilla public license",
    "the artistic license",
];

/// `None` when `text` (already extracted) passes; else why not.
pub fn check(path: &str, text: &str, kind: DocKind, q: &Quality) -> Option<Reject> {
    if text.len() < q.min_bytes {
        return Some(Reject::Short);
    }
    let bytes = text.as_bytes();
    let ctrl = bytes.iter().filter(|&&c| c < 0x20 && !matches!(c, b'\n' | b'\t' | b'\r' | 0x0c)).count();
    if bytes.contains(&0) || ctrl * 100 > bytes.len() {
        return Some(Reject::Binary);
    }
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_uppercase();
    let head = text[..floor_char(text, 2048)].to_ascii_lowercase();
    if ["COPYING", "LICENSE", "LICENCE", "COPYRIGHT", "NOTICE"].iter().any(|p| name.starts_with(p))
        || (kind == DocKind::Prose && text.len() < 64 * 1024 && LICENSE_TEXTS.iter().any(|l| head[..floor_char(&head, 600)].contains(l)))
    {
        return Some(Reject::License);
    }
    if GENERATED.iter().any(|g| head.contains(g)) {
        return Some(Reject::Generated);
    }
    let (mut lines, mut longest, mut defines) = (0usize, 0usize, 0usize);
    for l in text.lines() {
        lines += 1;
        longest = longest.max(l.len());
        if l.starts_with("#define") {
            defines += 1;
        }
    }
    let mean = text.len() / lines.max(1);
    let minified = match kind {
        DocKind::Code => mean > 200 || longest > 4000,
        // Prose paragraphs can be long lines (HTML, Markdown): only absurd ones count.
        DocKind::Prose => longest > 100_000,
    };
    if minified {
        return Some(Reject::Minified);
    }
    // Register maps and tables: mostly #defines, or few letters among the visible characters.
    let (mut visible, mut alpha, mut digits) = (0usize, 0usize, 0usize);
    for &c in bytes {
        if c > b' ' {
            visible += 1;
            alpha += (c.is_ascii_alphabetic() || c >= 0x80) as usize;
            digits += c.is_ascii_digit() as usize;
        }
    }
    if (lines > 200 && defines * 10 > lines * 6) || alpha * 10 < visible * 4 || digits * 10 > visible * 3 {
        return Some(Reject::Data);
    }
    None
}

/// The largest char boundary <= n.
pub fn floor_char(s: &str, n: usize) -> usize {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Splits a long text into parts of at most about `max_bytes`, at paragraph (else line)
/// boundaries.
pub fn split_long(text: &str, max_bytes: usize) -> Vec<&str> {
    if text.len() <= max_bytes {
        return vec![text];
    }
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > max_bytes {
        let window = &rest[..floor_char(rest, max_bytes)];
        let cut = window
            .rfind("\n\n")
            .map(|j| j + 2)
            .filter(|&j| j > max_bytes / 2)
            .or_else(|| window.rfind('\n').map(|j| j + 1))
            .filter(|&j| j > 0)
            .unwrap_or(window.len());
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quality = Quality { min_bytes: 64 };

    fn prose(n: usize) -> String {
        "The quick brown fox jumps over the lazy dog, and then it rests a while.\n".repeat(n)
    }

    #[test]
    fn html_is_stripped_to_its_visible_text() {
        let h = "<html><head><title>x</title><style>p{}</style></head><body><p>Fish &amp; chips\n are  <b>good</b>.</p><script>var a=1;</script><pre>a  b\nc</pre>&#65;&lt;</body></html>";
        let t = tidy(&strip_html(h));
        assert_eq!(t, "Fish & chips are good.\n\na  b\nc\nA<\n");
    }

    #[test]
    fn man_pages_lose_their_requests_and_escapes() {
        let m = ".\\\" comment\n.TH LS 1\n.SH NAME\nls \\- list \\fBdirectory\\fR contents\n.B \"-a\"\nall\n";
        let t = tidy(&strip_man(m));
        assert_eq!(t, "NAME\nls - list directory contents\n-a\nall\n");
    }

    #[test]
    fn leading_license_comments_are_removed_from_code() {
        let c = "/*\n * Copyright (C) 2001 Someone\n * GPL v2\n */\nint main(void) { return 0; }\n";
        assert_eq!(strip_license_header(c), "\nint main(void) { return 0; }\n");
        let keep = "/* a helper */\nint x;\n";
        assert_eq!(strip_license_header(keep), keep);
        let hash = "# SPDX-License-Identifier: GPL-2.0\n# more\nobj-y += a.o\n";
        assert_eq!(strip_license_header(hash), "obj-y += a.o\n");
        let two = "// SPDX-License-Identifier: GPL-2.0\n/*\n * Copyright (C) 2020 X\n */\nint y;\n";
        assert_eq!(extract("drivers/a.c", two), "int y;\n");
    }

    #[test]
    fn quality_filter_rejects_short_binary_generated_minified_data_and_license_files() {
        assert_eq!(check("a.txt", &prose(10), DocKind::Prose, &Q), None);
        assert_eq!(check("a.txt", "tiny", DocKind::Prose, &Q), Some(Reject::Short));
        assert_eq!(check("a.txt", &format!("{}\u{0}\u{1}", prose(3)), DocKind::Prose, &Q), Some(Reject::Binary));
        let gen = format!("/* This file is automatically generated. DO NOT EDIT. */\n{}", prose(5));
        assert_eq!(check("a.c", &gen, DocKind::Code, &Q), Some(Reject::Generated));
        let min = format!("var a={};", "b(1),c(2),".repeat(600));
        assert_eq!(check("a.js", &min, DocKind::Code, &Q), Some(Reject::Minified));
        let table = "0x00, 0x1f, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,\n".repeat(50);
        assert_eq!(check("fw.h", &table, DocKind::Code, &Q), Some(Reject::Data));
        let regs = (0..300).map(|i| format!("#define mmREG_{i} 0x{i:04x}\n")).collect::<String>();
        assert_eq!(check("regs.h", &regs, DocKind::Code, &Q), Some(Reject::Data));
        assert_eq!(check("x/COPYING", &prose(10), DocKind::Prose, &Q), Some(Reject::License));
        let gpl = format!("GNU GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n{}", prose(20));
        assert_eq!(check("gpl.txt", &gpl, DocKind::Prose, &Q), Some(Reject::License));
        // A source file mentioning its license near the top is still code.
        assert_eq!(check("a.c", &gpl.replace("Version 2", "int x;"), DocKind::Code, &Q), None);
    }

    #[test]
    fn classify_by_file_name() {
        assert_eq!(classify("linux/kernel/sched/core.c", DocKind::Prose), DocKind::Code);
        assert_eq!(classify("linux/Documentation/admin-guide/README.rst", DocKind::Code), DocKind::Prose);
        assert_eq!(classify("usr/share/man/man3/printf.3.gz", DocKind::Code), DocKind::Prose);
        assert_eq!(classify("usr/share/man/man9/bus_dma.9freebsd.gz", DocKind::Code), DocKind::Prose);
        assert_eq!(classify("usr/share/emacs/lisp/simple.el.gz", DocKind::Prose), DocKind::Code);
        assert_eq!(classify("bible/kjv", DocKind::Prose), DocKind::Prose);
        assert!(skip_file("a/logo.png") && skip_file("po/de.po") && !skip_file("a/b.c"));
    }

    #[test]
    fn long_texts_split_at_paragraphs() {
        let t = "aaaa\n\nbbbb\n\ncccc\n\n".repeat(10);
        let parts = split_long(&t, 25);
        assert!(parts.iter().all(|p| p.len() <= 25 && !p.is_empty()));
        assert_eq!(parts.concat(), t);
    }
}
