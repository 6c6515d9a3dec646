//! Notes the assistant keeps for each user: `add_note`, `list_notes` and
//! `delete_note`, stored with the `kv` capability (the host keeps them per
//! plugin and user, so nothing here names a user). All of a user's notes
//! live under one key, so each tool is one or two host calls.

use serde::{Deserialize, Serialize};
use wasmgate_sdk::{Tool, ToolError, config, kv_json};

const NOTES_KEY: &str = "notes";
/// Longest note unless the operator sets `max_note_chars`.
const DEFAULT_MAX_CHARS: usize = 500;

#[derive(Serialize, Deserialize, Default)]
struct Notes {
    next_id: u64,
    notes: Vec<Note>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Note {
    id: u64,
    text: String,
}

fn load() -> Result<Notes, ToolError> {
    Ok(kv_json::get(NOTES_KEY)?.unwrap_or_default())
}

fn max_chars() -> usize {
    config::get("max_note_chars")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_CHARS)
}

struct AddNote;

#[derive(Deserialize)]
struct AddArgs {
    text: String,
}

impl Tool for AddNote {
    const NAME: &'static str = "add_note";
    const DESCRIPTION: &'static str =
        "Saves a note for the user (something to remember that is not a task).";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"text":{"type":"string","minLength":1,"description":"The note"}},"required":["text"],"additionalProperties":false}"#;
    type Args = AddArgs;
    type Output = Note;

    fn call(args: AddArgs) -> Result<Note, ToolError> {
        let text = args.text.trim().to_string();
        let max = max_chars();
        if text.is_empty() || text.chars().count() > max {
            return Err(ToolError::InvalidArguments(format!(
                "a note must be 1 to {max} characters"
            )));
        }
        let mut notes = load()?;
        notes.next_id += 1;
        let note = Note {
            id: notes.next_id,
            text,
        };
        notes.notes.push(note.clone());
        kv_json::set(NOTES_KEY, &notes)?;
        Ok(note)
    }
}

struct ListNotes;

#[derive(Deserialize)]
struct NoArgs {}

impl Tool for ListNotes {
    const NAME: &'static str = "list_notes";
    const DESCRIPTION: &'static str = "Lists the user's notes, oldest first.";
    const INPUT_SCHEMA: &'static str =
        r#"{"type":"object","properties":{},"additionalProperties":false}"#;
    type Args = NoArgs;
    type Output = Vec<Note>;

    fn call(_: NoArgs) -> Result<Vec<Note>, ToolError> {
        Ok(load()?.notes)
    }
}

struct DeleteNote;

#[derive(Deserialize)]
struct DeleteArgs {
    id: u64,
}

impl Tool for DeleteNote {
    const NAME: &'static str = "delete_note";
    const DESCRIPTION: &'static str =
        "Deletes one of the user's notes by its id (list the notes to find it).";
    const INPUT_SCHEMA: &'static str = r#"{"type":"object","properties":{"id":{"type":"integer","minimum":1}},"required":["id"],"additionalProperties":false}"#;
    type Args = DeleteArgs;
    type Output = Note;

    fn call(args: DeleteArgs) -> Result<Note, ToolError> {
        let mut notes = load()?;
        let Some(at) = notes.notes.iter().position(|n| n.id == args.id) else {
            return Err(ToolError::NotFound(format!("note {} not found", args.id)));
        };
        let note = notes.notes.remove(at);
        kv_json::set(NOTES_KEY, &notes)?;
        Ok(note)
    }
}

wasmgate_sdk::export_tools!(AddNote, ListNotes, DeleteNote);
