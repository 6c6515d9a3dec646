//! `ask_user`: the host's own tool, offered to the model in every chat turn,
//! for a question the person must answer before the turn can go on
//! ("Which of these tasks do you mean?").
//!
//! A call of it ends the turn with a [`Question`] message: its text is the
//! question with an option per line, which is what the chat API and the
//! chat page show, and the person's next message is the answer (recorded
//! on the question). ChatKit shows the same message as a `structured_input`
//! item and takes the answer through `threads.add_structured_input`
//! (docs/CHATKIT.md). No plugin runs, so the name is the host's: a plugin
//! may not offer a tool of that name.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};

pub use crate::plugins::ASK_USER;
use crate::plugins::ToolSpec;
use crate::store::{Question, ToolCallRecord};

const MAX_QUESTION_CHARS: usize = 500;
const MAX_OPTION_CHARS: usize = 200;
const MAX_OPTIONS: usize = 10;

/// The arguments of an `ask_user` call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    question: String,
    #[serde(default)]
    options: Vec<String>,
}

/// The tool as the model is offered it.
pub fn spec() -> &'static ToolSpec {
    static SPEC: OnceLock<ToolSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let schema = json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "maxLength": MAX_QUESTION_CHARS,
                    "description": "The question, as the person will read it."},
                "options": {"type": "array", "maxItems": MAX_OPTIONS,
                    "items": {"type": "string", "maxLength": MAX_OPTION_CHARS},
                    "description": "The answers to choose from; the person may also write their own."},
            },
            "required": ["question", "options"],
            "additionalProperties": false,
        });
        ToolSpec {
            name: ASK_USER.into(),
            description: "Ask the person a question that must be answered before you can go on, \
                          such as which of several matching tasks they mean. Ends your turn; \
                          their answer comes as their next message."
                .into(),
            input_schema_bytes: schema.to_string().len(),
            input_schema: schema,
            scope: None,
        }
    })
}

/// The question in a call's arguments, checked against the bounds.
pub fn question(arguments: &Value) -> Result<Question, String> {
    let asked: Arguments = serde_json::from_value(arguments.clone())
        .map_err(|err| format!("invalid ask_user arguments: {err}"))?;
    let question = Question {
        question: asked.question.trim().to_string(),
        options: asked
            .options
            .iter()
            .map(|option| option.trim().to_string())
            .filter(|option| !option.is_empty())
            .collect(),
        answer: None,
    };
    if question.question.is_empty() || question.question.chars().count() > MAX_QUESTION_CHARS {
        return Err(format!(
            "the question must be 1 to {MAX_QUESTION_CHARS} characters"
        ));
    }
    if question.options.len() > MAX_OPTIONS
        || question
            .options
            .iter()
            .any(|option| option.chars().count() > MAX_OPTION_CHARS)
    {
        return Err(format!(
            "at most {MAX_OPTIONS} options of at most {MAX_OPTION_CHARS} characters each"
        ));
    }
    Ok(question)
}

/// The question a call asked, if it is an `ask_user` call that succeeded.
pub fn asked_by(call: &ToolCallRecord) -> Option<Question> {
    if call.name != ASK_USER || call.is_error || call.result.is_none() {
        return None;
    }
    question(&call.arguments).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_checked_and_rendered() {
        let cases = [
            (
                json!({"question": " Which one? ", "options": ["task 1", " ", "task 2"]}),
                Ok("Which one?\n- task 1\n- task 2"),
            ),
            (json!({"question": "Go on?", "options": []}), Ok("Go on?")),
            (json!({"question": "  ", "options": []}), Err("1 to 500")),
            (
                json!({"question": "x", "options": vec!["a"; 11]}),
                Err("at most 10"),
            ),
            (json!({"question": "x", "extra": 1}), Err("unknown field")),
            (json!("not an object"), Err("invalid ask_user")),
        ];
        for (arguments, expected) in cases {
            let got = question(&arguments).map(|q| q.text());
            match (got, expected) {
                (Ok(text), Ok(want)) => assert_eq!(text, want, "{arguments}"),
                (Err(err), Err(want)) => assert!(err.contains(want), "{arguments}: {err}"),
                (got, want) => panic!("{arguments}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(spec().name, ASK_USER);
    }
}
