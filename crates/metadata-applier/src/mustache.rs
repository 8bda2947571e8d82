//! Mustache as os-apply-config renders it (pystache with `missing_tags='ignore'`): the spec's
//! grammar, standalone-line and delimiter rules, with upstream's value lookup and output rules.
//!
//! [`Template::parse`] turns text into a tree, reporting syntax errors with a line number;
//! [`Template::render`] renders it over a [`Value`] with partials from a [`PartialSource`],
//! collecting every lookup that missed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::json::{self, Value};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The text; nodes refer to it by byte range, so parsing copies nothing.
    source: String,
    /// The tree, flattened in document order: a section's children follow it, up to its
    /// `end`. Small nodes in one allocation keep parsing large templates cheap.
    nodes: Vec<Node>,
}

/// A byte range of the source. Templates are limited to 4 GiB, so that nodes stay small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(range: std::ops::Range<usize>) -> Span {
        // Parse refuses sources whose offsets do not fit.
        Span {
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    fn of(self, source: &str) -> &str {
        &source[self.start as usize..self.end as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(Span),
    /// `at`: the byte offset of the tag, for the line of a miss (counted only then).
    Variable {
        name: Span,
        escape: bool,
        at: u32,
    },
    Section {
        name: Span,
        inverted: bool,
        at: u32,
        /// Index just past the section's last descendant.
        end: u32,
    },
    Partial {
        name: Span,
        indent: Span,
        at: u32,
    },
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    /// 1-based, in characters, of the offending tag's opening delimiter.
    pub column: usize,
    pub message: String,
}

/// Where partials come from.
pub trait PartialSource {
    /// The text of partial `name`, `None` if there is none.
    fn load(&self, name: &str) -> Option<String>;
}

/// No partials at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPartials;

impl PartialSource for NoPartials {
    fn load(&self, _: &str) -> Option<String> {
        None
    }
}

impl PartialSource for HashMap<String, String> {
    fn load(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A lookup that found nothing: the key and the line of the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub line: usize,
    pub key: String,
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// HTML-escape `{{x}}` as the mustache spec says; os-apply-config never does.
    pub html_escape: bool,
}

/// Partials nested deeper than this render nothing (a partial that includes itself without
/// end would otherwise never stop).
const MAX_PARTIAL_DEPTH: usize = 64;

/// Partials expanded in one render at most; beyond, they render nothing.
const MAX_PARTIAL_EXPANSIONS: usize = 100_000;

impl Template {
    pub fn parse(source: impl Into<String>) -> Result<Template, SyntaxError> {
        let source = source.into();
        if u32::try_from(source.len()).is_err() {
            return Err(SyntaxError {
                line: 1,
                column: 1,
                message: "template larger than 4 GiB".to_owned(),
            });
        }
        let nodes = Parser::new(&source).parse()?;
        Ok(Template { source, nodes })
    }

    /// Renders over `context`; returns the text and every missed lookup in order.
    pub fn render(
        &self,
        context: &Value,
        partials: &dyn PartialSource,
        options: RenderOptions,
    ) -> (String, Vec<Missed>) {
        let mut renderer = Renderer {
            stack: vec![context],
            partials,
            options,
            // Output is usually about as long as the template.
            out: String::with_capacity(self.source.len() + self.source.len() / 4),
            misses: Vec::new(),
            cache: RefCell::new(HashMap::new()),
            partial_line: None,
            depth: 0,
            partials_left: MAX_PARTIAL_EXPANSIONS,
        };
        renderer.nodes(&self.source, &self.nodes, 0..self.nodes.len());
        (renderer.out, renderer.misses)
    }
}

struct Parser<'a> {
    source: &'a str,
    pos: usize,
    open: String,
    close: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Variable { escape: bool },
    Section,
    Inverted,
    Close,
    Comment,
    Partial,
    Delimiters,
}

impl<'a> Parser<'a> {
    fn new(source: &'a str) -> Self {
        Parser {
            source,
            pos: 0,
            open: "{{".to_owned(),
            close: "}}".to_owned(),
        }
    }

    fn column_of(&self, offset: usize) -> usize {
        let line_start = self.source[..offset].rfind('\n').map_or(0, |i| i + 1);
        self.source[line_start..offset].chars().count() + 1
    }

    fn line_of(&self, offset: usize) -> usize {
        line_at(self.source, offset)
    }

    /// Finds the tag at `start` (where the opening delimiter is): its kind, name and end.
    fn tag_at(&self, start: usize) -> Option<(TagKind, &'a str, usize)> {
        let source = self.source;
        let inner = start + self.open.len();
        let rest = &source[inner..];
        let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
        let body = inner + (rest.len() - trimmed.len());
        let first = trimmed.chars().next()?;
        // The tag ends at the closing delimiter, preceded by `=` or `}` for those kinds.
        let (kind, name_start, before_close) = match first {
            '=' => (TagKind::Delimiters, body + 1, Some('=')),
            '{' => (TagKind::Variable { escape: false }, body + 1, Some('}')),
            '!' => (TagKind::Comment, body + 1, None),
            '>' => (TagKind::Partial, body + 1, None),
            '&' => (TagKind::Variable { escape: false }, body + 1, None),
            '/' => (TagKind::Close, body + 1, None),
            '#' => (TagKind::Section, body + 1, None),
            '^' => (TagKind::Inverted, body + 1, None),
            _ => (TagKind::Variable { escape: true }, body, None),
        };
        let close = self.close.as_str();
        // pystache's key is at least one character after the whitespace that follows the
        // sigil, so `{{!}}` does not end at its own `}}` and `{{}}` takes text up to the next.
        let key = &source[name_start..];
        let key_start = name_start + (key.len() - key.trim_start().len());
        let mut from = key_start + source[key_start..].chars().next().map_or(0, char::len_utf8);
        let name_end = loop {
            let at = from + find(&source[from..], close)?;
            match before_close {
                None => break at,
                Some(c) if at > name_start && source[..at].ends_with(c) => break at - c.len_utf8(),
                // Step one character: a multi-byte delimiter must not be cut.
                Some(_) => from = at + source[at..].chars().next().map_or(1, char::len_utf8),
            }
        };
        let end = name_end + before_close.map_or(0, char::len_utf8) + close.len();
        Some((kind, source[name_start..name_end].trim(), end))
    }

    /// For a tag spanning `start..end`: if it stands alone on its line, the line's start and
    /// the offset just past its line ending.
    fn standalone(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let line_start = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
        if line_start < self.pos
            || !self.source[line_start..start]
                .chars()
                .all(|c| c == ' ' || c == '\t')
        {
            return None;
        }
        // As pystache: the line ending must follow the tag at once; trailing blanks make the
        // tag inline (the mustache spec would strip them too).
        let after = &self.source[end..];
        let eol = if after.is_empty() {
            0
        } else if after.starts_with("\r\n") {
            2
        } else if after.starts_with('\n') {
            1
        } else {
            return None;
        };
        Some((line_start, end + eol))
    }

    fn parse(mut self) -> Result<Vec<Node>, SyntaxError> {
        // Open sections: the index of their node and the offset of their tag.
        let mut open_sections: Vec<(usize, usize)> = Vec::new();
        // Each tag adds at most two nodes (text before it, itself): reserving up front saves
        // the regrowth copies that otherwise dominate parsing large templates.
        let first = self.open.as_bytes()[0];
        let tags = memchr::memchr_iter(first, self.source.as_bytes()).count();
        let mut nodes = Vec::with_capacity(2 * tags + 1);
        // Pending literal text runs from here to the next tag (or its standalone line).
        let mut text_from = 0;
        while self.pos < self.source.len() {
            let Some(found) = find(&self.source[self.pos..], &self.open) else {
                self.pos = self.source.len();
                break;
            };
            let start = self.pos + found;
            let Some((kind, name, end)) = self.tag_at(start) else {
                // An unterminated tag is literal text.
                self.pos = start + self.open.len();
                continue;
            };
            let name_span = span_of(self.source, name);
            let can_stand_alone = !matches!(kind, TagKind::Variable { .. });
            let standalone = if can_stand_alone {
                self.standalone(start, end)
            } else {
                None
            };
            let (text_end, next, indent) = match standalone {
                Some((line_start, next)) => (line_start, next, Span::new(line_start..start)),
                None => (start, end, Span::new(start..start)),
            };
            if text_end > text_from {
                nodes.push(Node::Text(Span::new(text_from..text_end)));
            }
            let at = start as u32;
            self.pos = next;
            text_from = next;
            match kind {
                TagKind::Variable { escape } => nodes.push(Node::Variable {
                    name: name_span,
                    escape,
                    at,
                }),
                TagKind::Comment => {}
                TagKind::Partial => nodes.push(Node::Partial {
                    name: name_span,
                    indent,
                    at,
                }),
                TagKind::Delimiters => {
                    let mut parts = name.split_whitespace();
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(open), Some(close), None) => {
                            self.open = open.to_owned();
                            self.close = close.to_owned();
                        }
                        _ => {
                            return Err(SyntaxError {
                                line: self.line_of(start),
                                column: self.column_of(start),
                                message: format!("invalid set-delimiter tag '{name}'"),
                            })
                        }
                    }
                }
                TagKind::Section | TagKind::Inverted => {
                    open_sections.push((nodes.len(), start));
                    nodes.push(Node::Section {
                        name: name_span,
                        inverted: kind == TagKind::Inverted,
                        at,
                        end: 0,
                    });
                }
                TagKind::Close => {
                    let Some((index, _)) = open_sections.pop() else {
                        return Err(SyntaxError {
                            line: self.line_of(start),
                            column: self.column_of(start),
                            message: format!("section end tag mismatch: found {{{{/{name}}}}} with no section open"),
                        });
                    };
                    let children_end = nodes.len() as u32;
                    let Node::Section {
                        name: open_name,
                        end,
                        ..
                    } = &mut nodes[index]
                    else {
                        unreachable!("open sections index section nodes");
                    };
                    let open_name_text = open_name.of(self.source);
                    if open_name_text != name {
                        return Err(SyntaxError {
                            line: self.line_of(start),
                            column: self.column_of(start),
                            message: format!(
                                "section end tag mismatch: found {{{{/{name}}}}}, expected {{{{/{open_name_text}}}}}"
                            ),
                        });
                    }
                    *end = children_end;
                }
            }
        }
        if self.source.len() > text_from {
            nodes.push(Node::Text(Span::new(text_from..self.source.len())));
        }
        if let Some((index, start)) = open_sections.pop() {
            let (line, column) = (self.line_of(start), self.column_of(start));
            let Node::Section { name, .. } = nodes[index] else {
                unreachable!("open sections index section nodes");
            };
            return Err(SyntaxError {
                line,
                column,
                message: format!("unclosed section '{}'", name.of(self.source)),
            });
        }
        Ok(nodes)
    }
}

struct Renderer<'v, 'p> {
    stack: Vec<&'v Value>,
    partials: &'p dyn PartialSource,
    options: RenderOptions,
    out: String,
    misses: Vec<Missed>,
    cache: RefCell<HashMap<String, Option<Rc<Template>>>>,
    /// Inside a partial, misses are reported at the line of the outermost partial tag.
    partial_line: Option<usize>,
    depth: usize,
    /// Expansions left: a partial including itself twice doubles the work at each level.
    partials_left: usize,
}

impl<'v> Renderer<'v, '_> {
    /// Records a miss of the tag at `at` in `source`.
    fn miss(&mut self, source: &str, at: u32, key: &str) {
        let line = self
            .partial_line
            .unwrap_or_else(|| line_at(source, at as usize));
        self.misses.push(Missed {
            line,
            key: key.to_owned(),
        });
    }

    /// Resolves a name as pystache does: `.` is the top of the stack; the first part of a
    /// dotted name is searched top-down among frames that are objects containing it; later
    /// parts must be keys of the object found. Lists cannot be indexed.
    fn lookup(&self, name: &str) -> Option<&'v Value> {
        if name == "." {
            return self.stack.last().copied();
        }
        // Most names are plain keys.
        if !name.is_empty() && memchr::memchr(b'.', name.as_bytes()).is_none() {
            return self.stack.iter().rev().find_map(|frame| frame.get(name));
        }
        let mut parts = name.split('.');
        let first = parts.next()?;
        if first.is_empty() {
            return None;
        }
        let mut value = self.stack.iter().rev().find_map(|frame| frame.get(first))?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    /// Renders `nodes[range]`, a run of siblings (sections carry their descendants).
    fn nodes(&mut self, source: &str, nodes: &[Node], range: std::ops::Range<usize>) {
        let mut index = range.start;
        while index < range.end {
            let node = &nodes[index];
            index += 1;
            match *node {
                Node::Text(text) => self.out.push_str(text.of(source)),
                Node::Variable { name, escape, at } => match self.lookup(name.of(source)) {
                    Some(value) if escape && self.options.html_escape => {
                        self.out.push_str(&html_escape(&display(value)));
                    }
                    Some(Value::String(text)) => self.out.push_str(text),
                    Some(value) => self.out.push_str(&display(value)),
                    None => self.miss(source, at, name.of(source)),
                },
                Node::Section {
                    name,
                    inverted,
                    at,
                    end,
                } => {
                    let children = index..end as usize;
                    index = end as usize;
                    let name = name.of(source);
                    let value = self.lookup(name);
                    if value.is_none() {
                        self.miss(source, at, name);
                    }
                    let truthy = value.is_some_and(Value::is_truthy);
                    match (inverted, value) {
                        (true, _) if !truthy => self.nodes(source, nodes, children),
                        (false, Some(Value::Array(items))) if truthy => {
                            for item in items {
                                self.stack.push(item);
                                self.nodes(source, nodes, children.clone());
                                self.stack.pop();
                            }
                        }
                        (false, Some(value)) if truthy => {
                            self.stack.push(value);
                            self.nodes(source, nodes, children);
                            self.stack.pop();
                        }
                        _ => {}
                    }
                }
                Node::Partial { name, indent, at } => {
                    self.partial(source, name.of(source), indent.of(source), at)
                }
            }
        }
    }

    fn partial(&mut self, source: &str, name: &str, indent: &str, at: u32) {
        if self.depth >= MAX_PARTIAL_DEPTH || self.partials_left == 0 {
            return;
        }
        self.partials_left -= 1;
        let key = format!("{indent}\0{name}");
        let cached = self.cache.borrow().get(&key).cloned();
        let template = match cached {
            Some(template) => template,
            None => {
                let template = self.partials.load(name).map(|text| {
                    let text = indent_lines(&text, indent);
                    // A partial that does not parse renders as its text.
                    Rc::new(Template::parse(text.as_str()).unwrap_or_else(|_| Template {
                        nodes: vec![Node::Text(Span::new(0..text.len()))],
                        source: text,
                    }))
                });
                self.cache.borrow_mut().insert(key, template.clone());
                template
            }
        };
        let Some(template) = template else {
            self.miss(source, at, name);
            return;
        };
        let line = self
            .partial_line
            .unwrap_or_else(|| line_at(source, at as usize));
        let outer = self.partial_line.replace(line);
        self.depth += 1;
        self.nodes(&template.source, &template.nodes, 0..template.nodes.len());
        self.depth -= 1;
        self.partial_line = outer;
    }
}

/// The byte range of `part`, a slice of `whole`, within it.
fn span_of(whole: &str, part: &str) -> Span {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    Span::new(start..start + part.len())
}

/// The 1-based line of byte `offset`.
fn line_at(source: &str, offset: usize) -> usize {
    1 + memchr::memchr_iter(b'\n', &source.as_bytes()[..offset]).count()
}

/// `haystack.find(needle)` for the short delimiters: a vectorised scan for the first byte,
/// which beats setting up a substring searcher for every tag.
fn find(haystack: &str, needle: &str) -> Option<usize> {
    let (bytes, needle) = (haystack.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(offset) = memchr::memchr(first, &bytes[from..]) {
        let at = from + offset;
        // Delimiters are a few bytes: compared inline rather than through memcmp.
        let candidate = &bytes[at..];
        if candidate.len() >= needle.len() && needle.iter().zip(candidate).all(|(a, b)| a == b) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Prefixes every line of a standalone partial with the tag's indentation.
fn indent_lines(text: &str, indent: &str) -> String {
    if indent.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(indent);
        out.push_str(line);
    }
    out
}

/// How os-apply-config prints a value: strings raw, `null` empty, everything else as
/// `json.dumps`.
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        other => json::dumps(other),
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, data: &str) -> String {
        render_with(template, data, &NoPartials)
    }

    fn render_with(template: &str, data: &str, partials: &dyn PartialSource) -> String {
        let context = json::parse(data).unwrap();
        Template::parse(template)
            .unwrap()
            .render(&context, partials, RenderOptions::default())
            .0
    }

    const M: &str = r#"{"a":{"b":"hello","n":5,"f":1.5,"t":true,"z":null,"l":[1,"x",{"k":"v"}],"d":{"x":1,"y":"é<&>"}},"html":"<b>&amp;\"'","empty":"","list":[{"name":"one"},{"name":"two"}],"strs":["p","q"]}"#;

    #[test]
    fn upstream_rendering_probes() {
        let cases = [
            (
                "{{a.b}}|{{a.n}}|{{a.f}}|{{a.t}}|[{{a.z}}]",
                "hello|5|1.5|true|[]",
            ),
            ("{{a.l}}", r#"[1, "x", {"k": "v"}]"#),
            ("{{a.d}}", r#"{"x": 1, "y": "\u00e9<&>"}"#),
            ("[{{a.l.0}}][{{no.such.key}}]", "[][]"),
            (
                "{{html}}{{{html}}}{{&html}}",
                "<b>&amp;\"'<b>&amp;\"'<b>&amp;\"'",
            ),
            ("{{#list}}item={{name}}\n{{/list}}", "item=one\nitem=two\n"),
            ("{{#strs}}s={{.}};{{/strs}}", "s=p;s=q;"),
            ("{{^nothing}}inv{{/nothing}}", "inv"),
            ("{{#a.d}}dx={{x}} outer={{a.b}}{{/a.d}}", "dx=1 outer=hello"),
            ("{{=<% %>=}}delim=<% a.b %>", "delim=hello"),
            ("{{#empty}}T{{/empty}}{{^empty}}F{{/empty}}", "F"),
            ("{{#a.z}}T{{/a.z}}", ""),
            ("x {{#a.t}}y{{/a.t}} z\n", "x y z\n"),
            ("a\n{{! c }}\nb\n", "a\nb\n"),
            ("x{{! multi\nline }}y", "xy"),
            ("a\n  {{#a.t}}\nin\n  {{/a.t}}\nb\n", "a\nin\nb\n"),
            (
                "a\r\n  {{#a.t}}\r\nin\r\n  {{/a.t}}\r\nb\r\n",
                "a\r\nin\r\nb\r\n",
            ),
            ("{{a.b", "{{a.b"),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, M), expected, "{template:?}");
        }
    }

    #[test]
    fn sections_over_every_type() {
        assert_eq!(
            render("[{{#ls}}<{{.}}>{{/ls}}]", r#"{"ls":["a",null,true,1.5]}"#),
            "[<a><><true><1.5>]"
        );
        assert_eq!(render("[{{#n}}<{{.}}>{{/n}}]", r#"{"n":5}"#), "[<5>]");
        for falsy in ["0", "{}", "[]", "false", "null", "0.0"] {
            let data = format!(r#"{{"x":{falsy}}}"#);
            assert_eq!(render("{{#x}}Y{{/x}}{{^x}}N{{/x}}", &data), "N", "{falsy}");
        }
        assert_eq!(render("[{{#s}}<{{.}}>{{/s}}]", r#"{"s":"abc"}"#), "[<abc>]");
        assert_eq!(
            render("[{{#ll}}({{.}}){{/ll}}]", r#"{"ll":[[1,2],[3]]}"#),
            "[([1, 2])([3])]"
        );
        assert_eq!(render("{{a b}}", r#"{"a b":1}"#), "1");
        assert_eq!(render("{{ #f }}ok{{ /f }}", r#"{"f":false}"#), "");
    }

    #[test]
    fn standalone_partials_are_indented() {
        let partials: HashMap<String, String> =
            [("p".to_owned(), "line1 {{v}}\nline2\n".to_owned())].into();
        assert_eq!(
            render_with("a\n  {{>p}}\nb\n", r#"{"v":"V"}"#, &partials),
            "a\n  line1 V\n  line2\nb\n"
        );
    }

    #[test]
    fn self_including_partials_and_multibyte_delimiters_end() {
        let partials: HashMap<String, String> =
            [("p".to_owned(), "{{>p}}{{>p}}".to_owned())].into();
        assert_eq!(render_with("x{{>p}}y", "{}", &partials), "xy");
        // An unterminated tag is text, with a delimiter made of multi-byte characters too.
        assert_eq!(render("{{=« »=}}«{x»»", r#"{"x":"X"}"#), "«{x»»");
        assert_eq!(render("{{=« »=}}«{x}»", r#"{"x":"X"}"#), "X");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let error = Template::parse("x\n{{#foo}}bar={{bar}}{{/bar}}").unwrap_err();
        assert_eq!((error.line, error.column), (2, 20));
        assert_eq!(
            error.message,
            "section end tag mismatch: found {{/bar}}, expected {{/foo}}"
        );
        let error = Template::parse("a{{#t}}b").unwrap_err();
        assert_eq!(
            (error.line, error.message.as_str()),
            (1, "unclosed section 't'")
        );
        assert!(Template::parse("a{{/t}}b").is_err());
    }

    #[test]
    fn misses_are_collected_with_lines() {
        let template = Template::parse("{{a}} {{b.c}}\n{{#s}}x{{/s}}{{z}}\n").unwrap();
        let context = json::parse(r#"{"z":null}"#).unwrap();
        let (_, misses) = template.render(&context, &NoPartials, RenderOptions::default());
        let misses: Vec<(usize, &str)> = misses.iter().map(|m| (m.line, m.key.as_str())).collect();
        assert_eq!(misses, [(1, "a"), (1, "b.c"), (2, "s")]);
    }
}
