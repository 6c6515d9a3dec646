//! `fetch_title {url}`: the `<title>` of a web page, fetched with the `http`
//! capability, so only from hosts the operator granted this plugin.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::{Tool, ToolError, http};

struct FetchTitle;

#[derive(Deserialize)]
struct Args {
    url: String,
}

#[derive(Serialize)]
struct Output {
    url: String,
    title: Option<String>,
}

impl Tool for FetchTitle {
    const NAME: &'static str = "fetch_title";
    const DESCRIPTION: &'static str =
        "Fetches a web page and returns its title (only from the sites this server allows).";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"url":{"type":"string","description":"An http(s) URL"}},"required":["url"],"additionalProperties":false}"#;
    type Args = Args;
    type Output = Output;

    fn call(args: Args) -> Result<Output, ToolError> {
        let response = http::get(&args.url)?;
        if !(200..300).contains(&response.status) {
            return Err(ToolError::Failed(format!(
                "{} answered {}",
                args.url, response.status
            )));
        }
        let page = String::from_utf8_lossy(&response.body);
        Ok(Output {
            url: args.url,
            title: title(&page),
        })
    }
}

/// The text of the first `<title>` element, trimmed.
fn title(page: &str) -> Option<String> {
    let lower = page.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let text = page[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!text.is_empty()).then_some(text)
}

wasmgate_sdk::export_tools!(FetchTitle);
