//! What the model-provider adapters share, free of any WIT world (each
//! adapter generates its own bindings): server-sent events split into
//! their `data:` payloads across the chunks they arrive in, and the
//! message of an error answer.

use serde_json::Value;

/// The `data:` payloads of an event stream, fed chunk by chunk.
#[derive(Default)]
pub struct EventData {
    /// Bytes of an incomplete line, kept for the next chunk.
    pending: Vec<u8>,
}

impl EventData {
    /// The payloads of the lines `chunk` completes, in order: `event:`
    /// lines, comments, blank separators and empty payloads left out.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut payloads = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:") {
                let data = data.trim();
                if !data.is_empty() {
                    payloads.push(data.to_string());
                }
            }
        }
        payloads
    }
}

/// An error answer's message: `{"error":{"message":…}}` (OpenAI's and
/// Anthropic's shape) or the start of whatever else came back.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_span_chunks() {
        let mut data = EventData::default();
        assert!(data.feed(b"event: x\ndata: {\"a\"").is_empty());
        assert_eq!(
            data.feed(b": 1}\n\n: comment\ndata:\ndata: [DONE]\n"),
            ["{\"a\": 1}", "[DONE]"]
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error":{"message":"slow down"}}"#),
            "slow down"
        );
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }
}
