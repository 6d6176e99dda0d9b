//! A bounded, streaming XML reader: one pass over quick-xml's `NsReader` events that
//! enforces [`Limits`] as it goes and yields a small element tree with resolved
//! namespaces. The codec maps that tree onto the message types.
//!
//! Refused outright, before anything is built: DOCTYPE (so no entity can ever be
//! defined or expanded), processing instructions, non-UTF-8 input, references to
//! entities other than XML's five, and characters XML 1.0 forbids. The tree can never be
//! deeper than `max_depth`, larger than `max_elements`, or hold a text longer than
//! `max_text_bytes`; building it needs no recursion.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::limits::Limits;
use super::types::{Fault, FaultReason};
use super::{NAMESPACE, SOAP_ENV_NAMESPACE};

/// The namespace an element is in, as far as the codec cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ns {
    /// No namespace (SOAP 1.1's faultcode, faultstring, detail).
    None,
    Soap,
    Mailrun,
    Other(String),
}

impl Ns {
    pub(crate) fn uri(&self) -> &str {
        match self {
            Ns::None => "",
            Ns::Soap => SOAP_ENV_NAMESPACE,
            Ns::Mailrun => NAMESPACE,
            Ns::Other(uri) => uri,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Element {
    pub ns: Ns,
    pub name: String,
    /// All direct character data (text, CDATA, references), concatenated.
    pub text: String,
    pub children: Vec<Element>,
    /// `soap:mustUnderstand="1"` (only meaningful on SOAP header entries).
    pub must_understand: bool,
}

/// Parses a whole document into its root element, enforcing `limits`.
pub(crate) fn parse(input: &[u8], limits: &Limits) -> Result<Element, Fault> {
    if input.len() > limits.max_bytes {
        return Err(Fault::new(
            FaultReason::TooLarge,
            format!(
                "envelope is {} bytes, the limit is {} bytes",
                input.len(),
                limits.max_bytes
            ),
        ));
    }
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = std::str::from_utf8(input).map_err(|e| {
        malformed(format!(
            "document is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    Parser::new(text, limits).run()
}

fn malformed(message: impl Into<String>) -> Fault {
    Fault::new(FaultReason::MalformedXml, message)
}

/// `a/b/c` for messages, from the names of the open elements.
fn path_of(stack: &[Element], last: Option<&str>) -> String {
    let mut parts: Vec<&str> = stack.iter().map(|e| e.name.as_str()).collect();
    parts.extend(last);
    parts.join("/")
}

struct Parser<'i, 'l> {
    reader: NsReader<&'i [u8]>,
    limits: &'l Limits,
    /// Open elements; never longer than `limits.max_depth`.
    stack: Vec<Element>,
    root: Option<Element>,
    elements: usize,
    seen_content: bool,
}

impl<'i, 'l> Parser<'i, 'l> {
    fn new(text: &'i str, limits: &'l Limits) -> Self {
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.allow_unmatched_ends = false;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Parser {
            reader,
            limits,
            stack: Vec::new(),
            root: None,
            elements: 0,
            seen_content: false,
        }
    }

    fn run(mut self) -> Result<Element, Fault> {
        loop {
            let position = self.reader.buffer_position();
            let (resolved, event) = match self.reader.read_resolved_event() {
                Ok((ns, event)) => (resolve_ns(ns), event),
                Err(e) => {
                    let mut msg = e.to_string();
                    truncate(&mut msg, 200);
                    return Err(malformed(format!(
                        "not well-formed XML at byte {}: {msg}",
                        self.reader.error_position()
                    )));
                }
            };
            match event {
                Event::Decl(decl) => {
                    if position != 0 {
                        return Err(malformed("XML declaration not at the start"));
                    }
                    if let Some(encoding) = decl.encoding() {
                        let encoding = encoding
                            .map_err(|_| malformed("unreadable encoding in XML declaration"))?;
                        if !encoding.eq_ignore_ascii_case(b"utf-8") {
                            return Err(malformed(format!(
                                "only UTF-8 is accepted, the declaration says {:?}",
                                clip(&String::from_utf8_lossy(&encoding))
                            )));
                        }
                    }
                    if decl.version().map(|v| v.as_ref() != b"1.0").unwrap_or(true) {
                        return Err(malformed("only XML version 1.0 is accepted"));
                    }
                }
                Event::DocType(_) => {
                    return Err(Fault::new(
                        FaultReason::DoctypeRefused,
                        "DOCTYPE is not allowed in SOAP messages",
                    ))
                }
                Event::PI(pi) => {
                    return Err(malformed(format!(
                        "processing instruction <?{}?> is not allowed",
                        clip(&String::from_utf8_lossy(pi.target()))
                    )))
                }
                Event::Start(start) => {
                    let element = self.open(resolved?, &start)?;
                    self.stack.push(element);
                }
                Event::Empty(start) => {
                    let element = self.open(resolved?, &start)?;
                    self.close(element)?;
                }
                Event::End(_) => match self.stack.pop() {
                    Some(element) => self.close(element)?,
                    None => return Err(malformed("unexpected end tag")),
                },
                Event::Text(text) => {
                    let content = text
                        .xml10_content()
                        .map_err(|_| malformed("undecodable text"))?;
                    self.text(&content)?;
                }
                Event::CData(cdata) => {
                    let content = cdata
                        .xml10_content()
                        .map_err(|_| malformed("undecodable CDATA section"))?;
                    self.text(&content)?;
                }
                Event::GeneralRef(reference) => {
                    let ch = reference_char(&reference)?;
                    let mut buf = [0u8; 4];
                    self.text(ch.encode_utf8(&mut buf))?;
                }
                Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !self.stack.is_empty() {
            return Err(malformed(format!(
                "truncated document: <{}> is not closed",
                path_of(&self.stack, None)
            )));
        }
        self.root
            .ok_or_else(|| malformed("empty document: no root element"))
    }

    /// Checks the limits for a new element and creates it (not yet attached).
    fn open(&mut self, ns: Ns, start: &BytesStart<'_>) -> Result<Element, Fault> {
        let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        if self.root.is_some() {
            return Err(malformed(format!(
                "element <{}> after the root element",
                clip(&name)
            )));
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(Fault::new(
                FaultReason::TooDeep,
                format!(
                    "elements nested deeper than {} levels under <{}>",
                    self.limits.max_depth,
                    path_of(&self.stack[..4.min(self.stack.len())], Some("..."))
                ),
            ));
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(Fault::new(
                FaultReason::TooManyElements,
                format!("more than {} elements", self.limits.max_elements),
            ));
        }
        let mut must_understand = false;
        for (count, attribute) in start.attributes().enumerate() {
            if count >= self.limits.max_attributes {
                return Err(Fault::new(
                    FaultReason::TooManyElements,
                    format!(
                        "more than {} attributes on <{}>",
                        self.limits.max_attributes,
                        path_of(&self.stack, Some(&name))
                    ),
                ));
            }
            let attribute = attribute.map_err(|e| {
                malformed(format!(
                    "bad attribute on <{}>: {}",
                    path_of(&self.stack, Some(&name)),
                    clip(&e.to_string())
                ))
            })?;
            if attribute.value.len() > self.limits.max_text_bytes {
                return Err(Fault::new(
                    FaultReason::TooLarge,
                    format!(
                        "attribute value on <{}> exceeds {} bytes",
                        path_of(&self.stack, Some(&name)),
                        self.limits.max_text_bytes
                    ),
                ));
            }
            let (attr_ns, local) = self.reader.resolve_attribute(attribute.key);
            if matches!(attr_ns, ResolveResult::Unknown(_)) {
                return Err(malformed(format!(
                    "undeclared namespace prefix on an attribute of <{}>",
                    path_of(&self.stack, Some(&name))
                )));
            }
            let is_soap = matches!(attr_ns, ResolveResult::Bound(n) if n.as_ref() == SOAP_ENV_NAMESPACE.as_bytes());
            if is_soap && local.as_ref() == b"mustUnderstand" {
                let value = attribute
                    .decode_and_unescape_value(self.reader.decoder())
                    .map_err(|_| malformed("bad mustUnderstand attribute"))?;
                must_understand = matches!(value.trim(), "1" | "true");
            }
        }
        self.seen_content = true;
        Ok(Element {
            ns,
            name,
            text: String::new(),
            children: Vec::new(),
            must_understand,
        })
    }

    fn close(&mut self, element: Element) -> Result<(), Fault> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None => self.root = Some(element),
        }
        Ok(())
    }

    fn text(&mut self, content: &str) -> Result<(), Fault> {
        if let Some(bad) = content.chars().find(|&c| !is_xml_char(c)) {
            return Err(malformed(format!(
                "character U+{:04X} is not allowed in XML{}",
                bad as u32,
                self.where_()
            )));
        }
        let max = self.limits.max_text_bytes;
        match self.stack.last_mut() {
            Some(open) => {
                if open.text.len() + content.len() > max {
                    let path = path_of(&self.stack, None);
                    return Err(Fault::new(
                        FaultReason::TooLarge,
                        format!("text of <{path}> exceeds {max} bytes"),
                    ));
                }
                open.text.push_str(content);
                Ok(())
            }
            None if content.chars().all(is_xml_space) => Ok(()),
            None => Err(malformed(if self.seen_content {
                "text outside the root element"
            } else {
                "text before the root element"
            })),
        }
    }

    fn where_(&self) -> String {
        if self.stack.is_empty() {
            String::new()
        } else {
            format!(" (in <{}>)", path_of(&self.stack, None))
        }
    }
}

fn resolve_ns(result: ResolveResult<'_>) -> Result<Ns, Fault> {
    match result {
        ResolveResult::Unbound => Ok(Ns::None),
        ResolveResult::Bound(ns) => Ok(match ns.as_ref() {
            n if n == SOAP_ENV_NAMESPACE.as_bytes() => Ns::Soap,
            n if n == NAMESPACE.as_bytes() => Ns::Mailrun,
            n => Ns::Other(String::from_utf8_lossy(n).into_owned()),
        }),
        ResolveResult::Unknown(prefix) => Err(malformed(format!(
            "undeclared namespace prefix {:?}",
            clip(&String::from_utf8_lossy(&prefix))
        ))),
    }
}

/// Resolves `&name;`: character references and XML's five predefined entities only.
fn reference_char(reference: &quick_xml::events::BytesRef<'_>) -> Result<char, Fault> {
    let name = reference
        .decode()
        .map_err(|_| malformed("undecodable reference"))?;
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(malformed(format!(
                "invalid character reference &{};",
                clip(&name)
            ))),
        };
    }
    match name.as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(malformed(format!("undefined entity &{};", clip(other)))),
    }
}

/// XML 1.0 `Char` production.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A value shown in an error message: at most 64 characters.
pub(crate) fn clip(value: &str) -> String {
    let mut s = value.to_string();
    truncate(&mut s, 64);
    s
}

fn truncate(s: &mut String, max_chars: usize) {
    if let Some((at, _)) = s.char_indices().nth(max_chars) {
        s.truncate(at);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
    }

    fn limits() -> Limits {
        Limits {
            max_bytes: 10_000,
            max_depth: 4,
            max_elements: 6,
            max_attributes: 2,
            max_text_bytes: 5,
        }
    }

    fn reason(input: &str) -> FaultReason {
        parse(input.as_bytes(), &limits()).unwrap_err().reason
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(parse(nested(4).as_bytes(), &limits()).is_ok());
        assert_eq!(reason(&nested(5)), FaultReason::TooDeep);
        assert!(parse(b"<a><b/><b/><b/><b/><b/></a>", &limits()).is_ok());
        assert_eq!(
            reason("<a><b/><b/><b/><b/><b/><b/></a>"),
            FaultReason::TooManyElements
        );
        assert!(parse(b"<a x='1' y='2'>12345</a>", &limits()).is_ok());
        assert_eq!(
            reason("<a x='1' y='2' z='3'/>"),
            FaultReason::TooManyElements
        );
        assert_eq!(reason("<a>123<!-- -->456</a>"), FaultReason::TooLarge);
        assert_eq!(reason("<a x='123456'/>"), FaultReason::TooLarge);
        let small = Limits {
            max_bytes: 8,
            ..limits()
        };
        assert_eq!(
            parse(b"<a>1</a> ", &small).unwrap_err().reason,
            FaultReason::TooLarge
        );
    }

    #[test]
    fn text_is_collected_across_references_and_cdata() {
        let roomy = Limits {
            max_text_bytes: 100,
            ..limits()
        };
        let root = parse(b"<a>x&lt;<![CDATA[&y]]>&#x41;\r\nz</a>", &roomy).map(|r| r.text);
        assert_eq!(root.unwrap(), "x<&yA\nz");
    }

    #[test]
    fn structure_errors() {
        assert_eq!(reason("<a></b>"), FaultReason::MalformedXml);
        assert_eq!(reason("<a/><b/>"), FaultReason::MalformedXml);
        assert_eq!(reason("text<a/>"), FaultReason::MalformedXml);
        assert_eq!(reason("<a>"), FaultReason::MalformedXml);
        assert_eq!(reason("<p:a/>"), FaultReason::MalformedXml);
        assert_eq!(
            reason("<a/><?xml version='1.0'?>"),
            FaultReason::MalformedXml
        );
        assert_eq!(
            reason("<?xml version='1.1'?><a/>"),
            FaultReason::MalformedXml
        );
    }

    #[test]
    fn bom_is_skipped() {
        assert!(parse(b"\xEF\xBB\xBF<?xml version='1.0'?><a/>", &limits()).is_ok());
    }

    #[test]
    fn clip_keeps_64_characters() {
        assert_eq!(clip("é".repeat(100).as_str()).chars().count(), 65);
        assert_eq!(clip("short"), "short");
    }
}
