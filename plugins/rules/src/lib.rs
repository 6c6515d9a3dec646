//! The `rules` model: wasmgate's offline default.
//!
//! A deterministic provider that understands the task commands of the spec
//! and close paraphrases ("Add a task to buy groceries", "What's pending?",
//! "Delete the meeting task", ...), calls the task tools the way a model
//! would (several rounds when it has to look a task up by name), and
//! confirms in a friendly sentence. It answers every request itself
//! (`plan::reply`): no network, no key, the same answer every time.

use serde_json::{Value, json};

wit_bindgen::generate!({ world: "provider-plugin", path: "../../wit" });

use exports::wasmgate::plugin::provider::{
    Completion, CompletionRequest, Guest, GuestStreamDecoder, Message, Plan, ProviderError, Role,
    StreamEvent, ToolCall,
};

struct Rules;

impl Guest for Rules {
    type StreamDecoder = NoStream;

    fn prepare(request: CompletionRequest) -> Result<Plan, ProviderError> {
        Ok(Plan::Reply(respond(&request)))
    }

    fn parse_response(_: u16, _: Vec<u8>) -> Result<Completion, ProviderError> {
        Err(ProviderError::Unsupported(
            "the rules model never sends requests".into(),
        ))
    }
}

/// Never constructed: `prepare` always replies directly.
struct NoStream;

impl GuestStreamDecoder for NoStream {
    fn new(_: u16) -> Self {
        NoStream
    }

    fn feed(&self, _: Vec<u8>) -> Result<Vec<StreamEvent>, ProviderError> {
        Err(ProviderError::Unsupported(
            "the rules model never streams".into(),
        ))
    }

    fn finish(&self) -> Result<Completion, ProviderError> {
        Err(ProviderError::Unsupported(
            "the rules model never streams".into(),
        ))
    }
}

/// What the person asked for.
#[derive(Debug, Clone, PartialEq)]
enum Intent {
    Add { title: String },
    List { status: &'static str },
    Complete(Target),
    Delete(Target),
    Update { id: i64, title: String },
    Greeting,
    Unknown,
}

/// A task named by its number or by words of its title.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Id(i64),
    Named(String),
}

fn respond(request: &CompletionRequest) -> Completion {
    let Some(last_user) = request.messages.iter().rposition(|m| m.role == Role::User) else {
        return say("Hi! Tell me what to add to your tasks, or ask me to show them.");
    };
    let said = &request.messages[last_user].content;
    let intent = match (choice(said), pending_choice(&request.messages[..last_user])) {
        // The answer to "Which one do you mean?": act on the task chosen.
        (Some(id), Some(Intent::Delete(_))) => Intent::Delete(Target::Id(id)),
        (Some(id), Some(Intent::Complete(_))) => Intent::Complete(Target::Id(id)),
        _ => parse(said),
    };
    // What happened since the person spoke: our tool calls and their results.
    let turn = &request.messages[last_user + 1..];
    let results: Vec<(&ToolCall, Outcome)> = tool_results(turn);
    let has = |tool: &str| request.tools.iter().any(|t| t.name == tool);

    if results.is_empty() {
        return first_step(&intent, &has);
    }
    let (last_call, last_outcome) = results.last().expect("results is not empty");
    if let Outcome::Failed(message) = last_outcome {
        return say(&explain_failure(message));
    }
    match (&intent, last_call.name.as_str()) {
        // Looked the task up by name; now act on the match.
        (
            Intent::Complete(Target::Named(words)) | Intent::Delete(Target::Named(words)),
            "list_tasks",
        ) => {
            let tool = if matches!(intent, Intent::Delete(_)) {
                "delete_task"
            } else {
                "complete_task"
            };
            let tasks = listed(last_outcome.value());
            let matches: Vec<&Value> = tasks.iter().filter(|t| title_matches(t, words)).collect();
            match matches.as_slice() {
                [] => say(&format!(
                    "I couldn't find a task matching \"{words}\". Say \"show me all my tasks\" to see them."
                )),
                [task] if has(tool) => call(turn, tool, json!({ "task_id": task["id"] })),
                [_] => say(&format!(
                    "I can't do that right now: the {tool} tool isn't available."
                )),
                several => {
                    let options: Vec<String> = several
                        .iter()
                        .map(|t| {
                            format!(
                                "task {} \"{}\"",
                                t["id"],
                                t["title"].as_str().unwrap_or_default()
                            )
                        })
                        .collect();
                    // The host's `ask_user` shows the options as choices
                    // where the door can (ChatKit), as text elsewhere.
                    if has("ask_user") {
                        let question = format!("Several tasks match \"{words}\". {WHICH_ONE}");
                        call(
                            turn,
                            "ask_user",
                            json!({ "question": question, "options": options }),
                        )
                    } else {
                        say(&format!(
                            "Several tasks match \"{words}\": {}. {WHICH_ONE} Tell me its number.",
                            options.join(", ")
                        ))
                    }
                }
            }
        }
        (_, tool) => say(&confirm(tool, last_outcome.value(), &intent)),
    }
}

/// The first tool call for an intent, or a direct answer.
fn first_step(intent: &Intent, has: &dyn Fn(&str) -> bool) -> Completion {
    let (tool, arguments) = match intent {
        Intent::Add { title } => ("add_task", json!({ "title": title })),
        Intent::List { status } => ("list_tasks", json!({ "status": status })),
        Intent::Complete(Target::Id(id)) => ("complete_task", json!({ "task_id": id })),
        Intent::Delete(Target::Id(id)) => ("delete_task", json!({ "task_id": id })),
        // The largest page: a match is looked for among the first 100 tasks.
        Intent::Complete(Target::Named(_)) | Intent::Delete(Target::Named(_)) => {
            ("list_tasks", json!({ "status": "all", "limit": 100 }))
        }
        Intent::Update { id, title } => ("update_task", json!({ "task_id": id, "title": title })),
        Intent::Greeting => {
            return say(
                "Hello! I can add, list, complete, update and delete your tasks. What would you like to do?",
            );
        }
        Intent::Unknown => return say(HELP),
    };
    if !has(tool) {
        return say(&format!(
            "I can't do that right now: the {tool} tool isn't available."
        ));
    }
    call(&[], tool, arguments)
}

const HELP: &str = "I'm not sure what you mean. I can help with your tasks: \"Add a task to buy groceries\", \"Show me all my tasks\", \"What's pending?\", \"Mark task 3 as complete\", \"Delete the meeting task\" or \"Change task 1 to 'Call mom tonight'\".";

/// The sentence that confirms what `tool` did.
fn confirm(tool: &str, result: &Value, intent: &Intent) -> String {
    let title = result["title"].as_str().unwrap_or("the task");
    match tool {
        "add_task" => format!(
            "Added \"{title}\" to your tasks (task {}).",
            result["task_id"]
        ),
        "complete_task" => format!("Marked \"{title}\" as complete. Nice work!"),
        "delete_task" => format!("Deleted \"{title}\" from your tasks."),
        "update_task" => format!("Updated task {}: it's now \"{title}\".", result["task_id"]),
        "list_tasks" => {
            let status = match intent {
                Intent::List { status } => *status,
                _ => "all",
            };
            let tasks = listed(result);
            let total = result["total"].as_u64().unwrap_or(tasks.len() as u64);
            describe_list(&tasks, total, status)
        }
        other => format!("Done: {other} finished."),
    }
}

/// The tasks of a `list_tasks` result: a page (`{"tasks": [...]}`), or a
/// bare list from an older tool.
fn listed(result: &Value) -> Vec<Value> {
    result
        .get("tasks")
        .unwrap_or(result)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn describe_list(tasks: &[Value], total: u64, status: &str) -> String {
    if tasks.is_empty() {
        return match status {
            "pending" => "You have no pending tasks. Enjoy the free time!".into(),
            "completed" => "You haven't completed any tasks yet.".into(),
            _ => "You have no tasks yet. Try \"Add a task to buy groceries\".".into(),
        };
    }
    let mut heading = match (status, total) {
        ("pending", 1) => "You have 1 pending task".to_string(),
        ("pending", n) => format!("You have {n} pending tasks"),
        ("completed", 1) => "You have completed 1 task".to_string(),
        ("completed", n) => format!("You have completed {n} tasks"),
        (_, 1) => "You have 1 task".to_string(),
        (_, n) => format!("You have {n} tasks"),
    };
    if (tasks.len() as u64) < total {
        heading += &format!("; the first {} are", tasks.len());
    }
    heading.push(':');
    let lines: Vec<String> = tasks
        .iter()
        .map(|task| {
            let mark = if task["completed"].as_bool() == Some(true) {
                "done"
            } else {
                "pending"
            };
            format!(
                "- {}. {} ({mark})",
                task["id"],
                task["title"].as_str().unwrap_or_default()
            )
        })
        .collect();
    format!("{heading}\n{}", lines.join("\n"))
}

fn explain_failure(message: &str) -> String {
    if message.contains("not found") {
        format!(
            "I couldn't find that task ({message}). Say \"show me all my tasks\" to see their numbers."
        )
    } else {
        format!("Sorry, that didn't work: {message}")
    }
}

/// The outcome of one tool call, as its result message carries it.
enum Outcome {
    Done(Value),
    Failed(String),
}

impl Outcome {
    fn value(&self) -> &Value {
        match self {
            Outcome::Done(value) => value,
            Outcome::Failed(_) => &Value::Null,
        }
    }
}

/// Pairs each tool call of this turn with its result. A result is the
/// tool's JSON; a failure is `{"error": "..."}`.
fn tool_results(turn: &[Message]) -> Vec<(&ToolCall, Outcome)> {
    let calls = turn.iter().flat_map(|m| m.tool_calls.iter());
    calls
        .filter_map(|call| {
            let result = turn
                .iter()
                .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(&call.id))?;
            let value: Value = serde_json::from_str(&result.content).unwrap_or(Value::Null);
            let outcome = match value.get("error").and_then(Value::as_str) {
                Some(message) => Outcome::Failed(message.to_string()),
                None => Outcome::Done(value),
            };
            Some((call, outcome))
        })
        .collect()
}

fn say(text: &str) -> Completion {
    Completion {
        text: text.to_string(),
        tool_calls: Vec::new(),
        usage: None,
        finish_reason: "stop".into(),
    }
}

fn call(turn: &[Message], tool: &str, arguments: Value) -> Completion {
    let earlier = turn.iter().map(|m| m.tool_calls.len()).sum::<usize>();
    Completion {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: format!("call_{}", earlier + 1),
            name: tool.into(),
            arguments: arguments.to_string(),
        }],
        usage: None,
        finish_reason: "tool_calls".into(),
    }
}

fn title_matches(task: &Value, words: &str) -> bool {
    let title = task["title"].as_str().unwrap_or_default().to_lowercase();
    words.split_whitespace().all(|word| title.contains(word))
}

const WHICH_ONE: &str = "Which one do you mean?";

/// A choice of task: "3", "#3", "task 3", "number 3", or an option as
/// offered ("task 3 \"Buy milk\"").
fn choice(text: &str) -> Option<i64> {
    let lower = text.trim().trim_end_matches(['.', '!', '?']).to_lowercase();
    let rest = ["task", "number", "the one with id", "id"]
        .iter()
        .find_map(|prefix| strip_word_prefix(&lower, prefix))
        .unwrap_or(&lower);
    let rest = rest.trim();
    let (number, title) = rest.split_once(' ').unwrap_or((rest, ""));
    let title_ok = title.is_empty() || title.trim_start().starts_with('"');
    number
        .trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && title_ok)
}

/// The named request our last answer asked the person to disambiguate.
fn pending_choice(earlier: &[Message]) -> Option<Intent> {
    let question = earlier
        .iter()
        .rposition(|m| m.role == Role::Assistant && !m.content.is_empty())?;
    if !earlier[question].content.contains(WHICH_ONE) {
        return None;
    }
    let asked = earlier[..question]
        .iter()
        .rposition(|m| m.role == Role::User)?;
    Some(parse(&earlier[asked].content))
}

/// Reads an intent from what the person wrote.
fn parse(text: &str) -> Intent {
    let original = text.trim();
    let lowered = original.to_lowercase();
    let lower = lowered.trim_end_matches(['.', '!', '?']).trim_end();

    // Adding comes first: "add a task to delete old files" is an addition.
    const ADD_PREFIXES: &[&str] = &[
        "please add",
        "add a new task",
        "add a task",
        "add task",
        "add",
        "create a new task",
        "create a task",
        "create task",
        "create",
        "new task",
        "remind me to",
        "remind me",
        "i need to remember to",
        "i need to remember",
        "remember to",
        "don't let me forget to",
        "dont let me forget to",
        "i have to",
        "i need to",
        "i must",
        "i should",
    ];
    for prefix in ADD_PREFIXES {
        if let Some(rest) = strip_word_prefix(lower, prefix) {
            // The title keeps the person's own capitalisation where the
            // lowercased text lines up with the original byte for byte.
            let offset = lower.len() - rest.len();
            let rest_original = original.get(offset..).unwrap_or(rest);
            let title = clean_title(rest_original.trim_end_matches(['.', '!', '?']));
            if !title.is_empty() {
                return Intent::Add { title };
            }
        }
    }

    if let Some(intent) = parse_update(original, lower) {
        return intent;
    }
    if ["delete", "remove", "cancel", "drop", "get rid of", "erase"]
        .iter()
        .any(|w| starts_with_word(lower, w))
    {
        return Intent::Delete(target(lower));
    }
    let completing = [
        "mark",
        "complete",
        "finish",
        "check off",
        "tick off",
        "close",
    ]
    .iter()
    .any(|w| starts_with_word(lower, w))
        || (task_number(lower).is_some()
            && ["is done", "is complete", "is finished", "as done"]
                .iter()
                .any(|w| lower.contains(w)));
    if completing {
        return Intent::Complete(target(lower));
    }

    let mentions_tasks = ["task", "todo", "to-do", "to do", "list"]
        .iter()
        .any(|w| lower.contains(w));
    if lower.contains("pending")
        || lower.contains("left to do")
        || lower.contains("remaining")
        || lower.contains("incomplete")
        || lower.contains("unfinished")
        || lower.contains("still to do")
    {
        return Intent::List { status: "pending" };
    }
    if lower.contains("completed")
        || lower.contains("have i done")
        || lower.contains("have i finished")
        || lower.contains("finished tasks")
        || lower.contains("done tasks")
    {
        return Intent::List {
            status: "completed",
        };
    }
    if mentions_tasks
        && [
            "show", "list", "what", "which", "see", "display", "view", "all", "my",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        return Intent::List { status: "all" };
    }
    if ["hi", "hello", "hey", "good morning", "good evening"]
        .iter()
        .any(|w| starts_with_word(lower, w))
    {
        return Intent::Greeting;
    }
    Intent::Unknown
}

/// "Change task 1 to 'Call mom tonight'" and its paraphrases.
fn parse_update(original: &str, lower: &str) -> Option<Intent> {
    if !["change", "update", "rename", "edit", "set"]
        .iter()
        .any(|w| starts_with_word(lower, w))
    {
        return None;
    }
    let id = task_number(lower)?;
    let to = lower.find(" to ")?;
    let title = clean_title(original.get(to + 4..)?.trim_end_matches(['.', '!', '?']));
    (!title.is_empty()).then_some(Intent::Update { id, title })
}

/// The task a complete/delete request names: a number, or title words.
fn target(lower: &str) -> Target {
    if let Some(id) = task_number(lower) {
        return Target::Id(id);
    }
    let mut words: Vec<&str> = lower.split_whitespace().collect();
    const VERBS: &[&str] = &[
        "delete", "remove", "cancel", "drop", "erase", "mark", "complete", "finish", "check",
        "tick", "close", "get", "rid", "of", "off",
    ];
    while words.first().is_some_and(|w| VERBS.contains(w)) {
        words.remove(0);
    }
    const FILLER: &[&str] = &[
        "the",
        "my",
        "a",
        "task",
        "tasks",
        "todo",
        "as",
        "done",
        "complete",
        "completed",
        "finished",
        "item",
        "one",
        "called",
        "named",
        "about",
        "for",
    ];
    let words: Vec<&str> = words.into_iter().filter(|w| !FILLER.contains(w)).collect();
    Target::Named(words.join(" ").trim_matches(['"', '\'']).to_string())
}

/// The number in "task 3", "task #3" or "#3".
fn task_number(lower: &str) -> Option<i64> {
    let words: Vec<&str> = lower.split_whitespace().collect();
    words.iter().enumerate().find_map(|(i, word)| {
        let digits = word
            .trim_start_matches('#')
            .trim_end_matches([',', '.', ':', '!', '?']);
        let follows_task = i > 0 && words[i - 1].trim_end_matches(':') == "task";
        let parsed = digits.parse::<i64>().ok().filter(|n| *n > 0)?;
        (follows_task || word.starts_with('#')).then_some(parsed)
    })
}

fn starts_with_word(text: &str, word: &str) -> bool {
    strip_word_prefix(text, word).is_some()
}

/// `text` after `prefix`, if `text` starts with it as whole words.
fn strip_word_prefix<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some(rest)
    } else if rest.starts_with([' ', ':', ',']) {
        Some(rest.trim_start_matches([' ', ':', ',']))
    } else {
        None
    }
}

/// A title from the words after the command: without leading glue ("to",
/// "called") or a trailing "to my list", unquoted, first letter capital.
fn clean_title(text: &str) -> String {
    let mut title = text.trim();
    for glue in [
        "to ",
        "called ",
        "named ",
        "that says ",
        "saying ",
        "about ",
    ] {
        if title.len() > glue.len() && title[..glue.len()].eq_ignore_ascii_case(glue) {
            title = &title[glue.len()..];
            break;
        }
    }
    for tail in [
        " to my task list",
        " to my tasks",
        " to my list",
        " to the list",
        " to my todo list",
    ] {
        if title.len() > tail.len() && title[title.len() - tail.len()..].eq_ignore_ascii_case(tail)
        {
            title = &title[..title.len() - tail.len()];
            break;
        }
    }
    let title = title
        .trim()
        .trim_matches(['"', '\'', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}'])
        .trim();
    let mut chars = title.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

export!(Rules);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Intent) {
        assert_eq!(parse(text), expected, "{text:?}");
    }

    fn add(title: &str) -> Intent {
        Intent::Add {
            title: title.into(),
        }
    }

    #[test]
    fn understands_the_spec_table_and_paraphrases() {
        check("Add a task to buy groceries", add("Buy groceries"));
        check("Show me all my tasks", Intent::List { status: "all" });
        check("What's pending?", Intent::List { status: "pending" });
        check("Mark task 3 as complete", Intent::Complete(Target::Id(3)));
        check(
            "Delete the meeting task",
            Intent::Delete(Target::Named("meeting".into())),
        );
        check(
            "Change task 1 to 'Call mom tonight'",
            Intent::Update {
                id: 1,
                title: "Call mom tonight".into(),
            },
        );
        check("I need to remember to pay bills", add("Pay bills"));
        check(
            "What have I completed?",
            Intent::List {
                status: "completed",
            },
        );
        check("add buy milk to my list", add("Buy milk"));
        check("Remind me to call the dentist", add("Call the dentist"));
        check("complete task #4", Intent::Complete(Target::Id(4)));
        check("task 2 is done", Intent::Complete(Target::Id(2)));
        check("remove task 7", Intent::Delete(Target::Id(7)));
        check(
            "rename task 2 to \"Water plants\"",
            Intent::Update {
                id: 2,
                title: "Water plants".into(),
            },
        );
        check("Add a task to delete old files", add("Delete old files"));
        check("what's on my list", Intent::List { status: "all" });
        check("hello", Intent::Greeting);
        check("what is the weather", Intent::Unknown);
    }

    #[test]
    fn reads_a_choice() {
        assert_eq!(choice("3"), Some(3));
        assert_eq!(choice("Task 12."), Some(12));
        assert_eq!(choice("#4"), Some(4));
        assert_eq!(choice("task 7 \"Buy milk\""), Some(7));
        assert_eq!(choice("2 more tasks"), None);
        assert_eq!(choice("the meeting one"), None);
    }
}
