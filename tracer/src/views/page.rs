//! The page people look at: `GET /` of the daemon (live, polling the JSON API) and the file of
//! `--html` (the same page with the report inside). One HTML document with its stylesheet and
//! script inlined from `tracer/assets/`, so neither needs any network access, a CDN or a build
//! step. The script draws everything with textContent/createElementNS: names from the traced
//! processes never become markup.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

use crate::output::report::Report;

const TEMPLATE: &str = include_str!("../../assets/page.html");
const CSS: &str = include_str!("../../assets/page.css");
const SCRIPT: &str = include_str!("../../assets/page.js");

/// The page with `data` (already made safe by `embed_json`) in a JSON script element, or live.
fn assemble(data: Option<&str>) -> String {
    let data = data.map_or(String::new(), |json| {
        format!("<script type=\"application/json\" id=\"tracer-data\">{json}</script>")
    });
    // The data last: a name that holds `/*JS*/` or `/*CSS*/` must not take the place meant for
    // the script or the style sheet.
    TEMPLATE
        .replacen("/*CSS*/", CSS, 1)
        .replacen("/*JS*/", SCRIPT, 1)
        .replacen("<!--DATA-->", &data, 1)
}

/// JSON text safe inside a `<script>` element: `</script>` or `<!--` in a process or file name
/// must not end the element. In JSON, `<`, `>` and `&` can only occur inside strings, where the
/// `\u` escapes mean the same characters.
fn embed_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`.
pub fn live() -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let page = PAGE.get_or_init(|| assemble(None));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page.as_str(),
    )
        .into_response()
}

/// The `--html` file: the page with `report` inside.
pub fn offline(report: &Report) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(report)?;
    Ok(assemble(Some(&embed_json(&json))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_end_the_data_element() {
        let mut report = Report::default();
        report.processes.push(Default::default());
        report.processes[0].comm = "</script><script>alert(1)</script><!--".into();
        // Placeholders of the template in a name must not swallow the script or the style.
        report.processes[0].argv = vec!["/*JS*/".into(), "/*CSS*/".into()];
        report.processes[0]
            .address_space
            .push(crate::output::report::VmaReport {
                name: Some("/tmp/</SCRIPT>&\u{2028}".into()),
                ..Default::default()
            });
        let page = offline(&report).unwrap();
        assert_eq!(page.matches(SCRIPT).count(), 1, "the script, once");
        assert_eq!(page.matches(CSS).count(), 1, "the style sheet, once");
        let start = page.find("id=\"tracer-data\">").unwrap();
        let data = &page[start + "id=\"tracer-data\">".len()..];
        let data = &data[..data.find("</script>").unwrap()];
        assert!(!data.contains('<') && !data.contains('>'));
        // The escapes decode to the very same names.
        let back: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            back["processes"][0]["comm"],
            report.processes[0].comm.as_str()
        );
        assert_eq!(
            back["processes"][0]["address_space"][0]["name"],
            "/tmp/</SCRIPT>&\u{2028}"
        );
        // One data element, one script, then the end of the document.
        assert_eq!(page.matches("<script").count(), 2);
        assert!(page.trim_end().ends_with("</html>"));
    }

    #[test]
    fn the_live_page_has_the_assets_inline_and_no_data() {
        let page = assemble(None);
        assert!(page.contains(SCRIPT) && page.contains(CSS));
        assert!(!page.contains("tracer-data\">"));
        assert!(!page.contains("/*JS*/") && !page.contains("<!--DATA-->"));
    }

    /// The script never turns data into markup, and fetches nothing but the daemon's API.
    #[test]
    fn the_script_builds_no_markup_and_loads_nothing_from_elsewhere() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "page.js uses {banned}");
        }
        let page = assemble(None);
        let foreign: Vec<&str> = page
            .match_indices("http")
            .map(|(i, _)| &page[i..(i + 40).min(page.len())])
            .filter(|s| {
                !s.starts_with("http://www.w3.org/2000/svg") && !s.starts_with("http-equiv")
            })
            .collect();
        assert!(foreign.is_empty(), "URLs in the page: {foreign:?}");
    }
}
