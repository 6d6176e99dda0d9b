//! The WSDLs of `protocol/` as an integrator can use them as they are: the real endpoint
//! address in `soap:address` and the XSD inlined in `wsdl:types`, so one file is the
//! whole contract (`dispatch-admin wsdl --url`, `runner-admin wsdl --url`).

const DISPATCHER_WSDL: &str = include_str!("../../protocol/dispatcher.wsdl");
const RUNNER_WSDL: &str = include_str!("../../protocol/runner.wsdl");
const XSD: &str = include_str!("../../protocol/mailrun.xsd");

/// Which service's WSDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `JobDispatcherService` (dispatch-cgi).
    Dispatcher,
    /// `JobRunnerService` (runner-cgi).
    Runner,
}

/// The WSDL of `service` with `url` as its address and the schema inlined. The URL must
/// be `http://` or `https://` without characters that need escaping in XML or HTTP.
pub fn with_address(service: Service, url: &str) -> Result<String, String> {
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    let ok_chars = url
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"'<>&\\`{}|^".contains(&b));
    if !ok_scheme || !ok_chars || url.len() > 2000 {
        return Err(format!(
            "--url {url:?} is not a usable endpoint URL (http:// or https://, no quotes, \
             spaces or <>&)"
        ));
    }
    let wsdl = match service {
        Service::Dispatcher => DISPATCHER_WSDL,
        Service::Runner => RUNNER_WSDL,
    };
    let wsdl = replace_address(wsdl, url).ok_or("the WSDL has no soap:address")?;
    inline_schema(&wsdl).ok_or_else(|| "the WSDL has no schema import".to_string())
}

/// Replaces the `location` of the one `soap:address`, and the placeholder comment above it.
fn replace_address(wsdl: &str, url: &str) -> Option<String> {
    let start = wsdl.find("<soap:address location=\"")? + "<soap:address location=\"".len();
    let end = start + wsdl[start..].find('"')?;
    let mut out = format!("{}{url}{}", &wsdl[..start], &wsdl[end..]);
    if let Some(c) = out.find("<!-- Placeholder:") {
        let close = c + out[c..].find("-->")? + "-->".len();
        out.replace_range(
            c..close,
            "<!-- The real endpoint, as given to wsdl (URL). -->",
        );
    }
    Some(out)
}

/// Puts the schema of `mailrun.xsd` where the WSDL imports it.
fn inline_schema(wsdl: &str) -> Option<String> {
    let import_start = wsdl.find("<xs:schema>")?;
    let import_end =
        import_start + wsdl[import_start..].find("</xs:schema>")? + "</xs:schema>".len();
    let schema = &XSD[XSD.find("<xs:schema")?..];
    let schema = schema.trim_end();
    let indented: String = schema
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    Some(format!(
        "{}{}{}",
        &wsdl[..import_start],
        indented.trim_start().trim_end(),
        &wsdl[import_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_and_schema_are_filled_in() {
        let url = "https://mail.example.com/cgi-bin/dispatch-cgi";
        let w = with_address(Service::Dispatcher, url).unwrap();
        assert!(
            w.contains(&format!("<soap:address location=\"{url}\"/>")),
            "{w}"
        );
        assert!(!w.contains("schemaLocation"), "the schema is inlined");
        assert!(!w.contains("Placeholder"));
        assert!(w.contains("<xs:element name=\"JobRunRequest\">"));
        assert_eq!(w.matches("<xs:schema").count(), 1);
        let r = with_address(Service::Runner, "http://127.0.0.1:8025/r").unwrap();
        assert!(r.contains("JobRunnerService") && r.contains("http://127.0.0.1:8025/r"));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "ftp://x/",
            "http://x/\"><evil",
            "http://x/ y",
            "x",
            "http://a/<",
        ] {
            assert!(with_address(Service::Dispatcher, url).is_err(), "{url}");
        }
    }
}
