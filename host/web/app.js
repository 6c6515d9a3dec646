// The wasmgate chat page: sign in, pick a conversation, chat with streamed
// replies and visible tool calls, and watch the task list change. It talks
// only to this server's API (http-api.md) and needs nothing from elsewhere.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "wasmgate.token";
const CONVERSATION_KEY = "wasmgate.conversation";

let session = null; // { token, user }
let conversationId = null;

// ---- API -------------------------------------------------------------------

class ApiError extends Error {}

/// The user id a JWT speaks for (the server checks the signature).
function userOf(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.sub ?? payload.user_id ?? payload.id ?? null;
  } catch {
    return null;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(body.error?.message ?? `The server answered ${response.status}.`);
  } catch {
    return new ApiError(`The server answered ${response.status}.`);
  }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(`/api/${encodeURIComponent(session.user)}${path}`, {
      ...options,
      headers: { authorization: `Bearer ${session.token}`, "content-type": "application/json", ...options.headers },
    });
  } catch {
    throw new ApiError("The server cannot be reached. Check your connection and try again.");
  }
  if (response.status === 401) {
    signOut("Your session has expired; sign in again.");
    throw new ApiError("Signed out.");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

// ---- sign-in ---------------------------------------------------------------

async function showSignIn(message = "") {
  $("app").hidden = true;
  $("who").hidden = $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("skip").href = "#token";
  $("sign-in-error").textContent = message;
  try {
    const dev = await fetch("/api/v1/dev/token", { method: "POST" });
    $("dev").hidden = !dev.ok;
  } catch {
    $("dev").hidden = true;
  }
  ($("dev").hidden ? $("token") : $("as-demo")).focus();
}

async function signIn(token) {
  const user = userOf(token);
  if (!user) {
    $("sign-in-error").textContent = "That is not a token this page can read (a JWT with a user id).";
    return;
  }
  session = { token, user };
  try {
    await api("/tasks");
  } catch (error) {
    session = null;
    showSignIn(error.message === "Signed out." ? "The server did not accept that token." : error.message);
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("skip").href = "#message";
  $("who").textContent = `Signed in as ${user}`;
  $("who").hidden = $("sign-out").hidden = false;
  const saved = Number(localStorage.getItem(CONVERSATION_KEY));
  await Promise.all([refreshConversations(), refreshTasks(), saved ? openConversation(saved) : newConversation()]);
  $("message").focus();
}

function signOut(message = "") {
  session = null;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(CONVERSATION_KEY);
  showSignIn(message);
}

// ---- conversations ---------------------------------------------------------

async function refreshConversations() {
  const list = await (await api("/conversations")).json();
  $("conversation-list").replaceChildren(
    ...list.map((conversation) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = conversation.title || `Conversation ${conversation.id}`;
      button.setAttribute("aria-current", String(conversation.id === conversationId));
      button.addEventListener("click", () => openConversation(conversation.id));
      const item = document.createElement("li");
      item.append(button);
      return item;
    }),
  );
}

function newConversation() {
  conversationId = null;
  localStorage.removeItem(CONVERSATION_KEY);
  $("log").replaceChildren();
  $("chat-error").textContent = "";
  refreshConversations().catch(showChatError);
  $("message").focus();
}

async function openConversation(id) {
  let conversation;
  const messages = [];
  try {
    // The transcript comes in pages, oldest first; read it all.
    let after = null;
    do {
      const query = after === null ? "?limit=100" : `?limit=100&after=${after}`;
      conversation = await (await api(`/conversations/${id}${query}`)).json();
      messages.push(...conversation.messages);
      after = conversation.next_after;
    } while (conversation.has_more && after !== null);
  } catch (error) {
    // A conversation that is gone (or another user's) starts afresh.
    newConversation();
    return;
  }
  conversationId = id;
  localStorage.setItem(CONVERSATION_KEY, String(id));
  $("log").replaceChildren();
  $("chat-error").textContent = "";
  // A reply shows as it streamed: its tool calls, then its text. The
  // host's `ask_user` is the question itself, not a tool to show.
  for (const message of messages) {
    for (const call of message.tool_calls ?? []) {
      if (call.name === ASK_USER) continue;
      const card = addToolCall(call.name, call.arguments);
      if (call.result !== null) card.finish(call.result, call.is_error);
    }
    if (message.content) addMessage(message.role, message.content);
  }
  // A question still waiting for its answer offers its options.
  const last = messages.at(-1);
  const asked = last?.tool_calls?.find((call) => call.name === ASK_USER && !call.is_error);
  if (asked) addChoices(asked.arguments.options ?? []);
  await refreshConversations();
}

// ---- the chat log ----------------------------------------------------------

/// The host's tool for a question to the person (docs/HTTP-API.md, "Questions").
const ASK_USER = "ask_user";

/// A question's options as buttons; choosing one sends it as the answer.
function addChoices(options) {
  if (options.length === 0) return;
  const item = document.createElement("li");
  item.className = "choices";
  for (const option of options) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = option;
    button.addEventListener("click", () => {
      if ($("send").disabled) return;
      item.remove();
      $("message").value = option;
      $("composer").requestSubmit();
    });
    item.append(button);
  }
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
}

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `msg ${role}`;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role === "user" ? "You: " : "Assistant: ";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(label, body);
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
  return body;
}

/// A tool call card: what was called with what, then what came back.
function addToolCall(name, args) {
  const item = document.createElement("li");
  item.className = "tool";
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = `Calling ${name}…`;
  const input = document.createElement("code");
  input.textContent = `arguments: ${JSON.stringify(args)}`;
  const output = document.createElement("code");
  details.append(summary, input, output);
  item.append(details);
  $("log").append(item);
  return {
    finish(result, failed) {
      summary.textContent = failed ? `${name} failed` : `Called ${name}`;
      output.textContent = `result: ${JSON.stringify(result)}`;
      item.classList.toggle("failed", Boolean(failed));
    },
  };
}

/// While a turn streams, its conversation stays on screen: switching is
/// disabled, and screen readers wait for the finished reply.
function setBusy(busy) {
  $("send").disabled = busy;
  $("new-conversation").disabled = busy;
  for (const button of $("conversation-list").querySelectorAll("button")) button.disabled = busy;
  $("log").setAttribute("aria-busy", String(busy));
}

function showChatError(error) {
  $("chat-error").textContent = error.message;
}

/// Sends one message and renders the turn as it streams.
async function send(content) {
  $("chat-error").textContent = "";
  for (const choices of $("log").querySelectorAll(".choices")) choices.remove();
  const mine = addMessage("user", content);
  let reply = null;
  let question = null;
  const cards = new Map();
  let response;
  try {
    response = await api("/chat", {
      method: "POST",
      headers: { accept: "text/event-stream" },
      body: JSON.stringify({ content, conversation_id: conversationId }),
    });
  } catch (error) {
    mine.parentElement.remove(); // Refused, so not part of the conversation.
    throw error;
  }
  let finished = false;
  for await (const [event, data] of events(response)) {
    if (event === "start") {
      conversationId = data.conversation_id;
      localStorage.setItem(CONVERSATION_KEY, String(conversationId));
    } else if (event === "delta") {
      reply ??= addMessage("assistant", "");
      reply.textContent += data.text;
    } else if (event === "tool_call" && data.name === ASK_USER) {
      question = data.arguments;
    } else if (event === "tool_call") {
      reply = null;
      cards.set(data.id, addToolCall(data.name, data.arguments));
    } else if (event === "tool_result") {
      cards.get(data.id)?.finish(data.result, data.is_error);
    } else if (event === "done") {
      finished = true;
    } else if (event === "error") {
      throw new ApiError(data.error?.message ?? "The reply failed.");
    }
  }
  if (!finished) throw new ApiError("The connection was lost before the reply finished; your message was saved.");
  if (question) addChoices(question.options ?? []);
}

/// The server-sent events of a response, as [name, data] pairs.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield [name, JSON.parse(data)];
    }
  }
}

// ---- tasks -----------------------------------------------------------------

async function refreshTasks() {
  const tasks = await (await api("/tasks")).json();
  const open = tasks.filter((task) => !task.completed).length;
  $("task-summary").textContent = tasks.length ? `${open} open, ${tasks.length - open} done` : "No tasks yet.";
  $("task-list").replaceChildren(
    ...tasks.map((task) => {
      const item = document.createElement("li");
      item.className = task.completed ? "done" : "";
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = task.completed ? "✓" : "○";
      const state = document.createElement("span");
      state.className = "visually-hidden";
      state.textContent = task.completed ? "Done: " : "Open: ";
      item.append(mark, state, task.title);
      if (task.description) {
        const description = document.createElement("span");
        description.className = "description";
        description.textContent = task.description;
        item.append(description);
      }
      return item;
    }),
  );
}

// ---- wiring ----------------------------------------------------------------

$("as-demo").addEventListener("click", async () => {
  const response = await fetch("/api/v1/dev/token", { method: "POST" });
  if (!response.ok) {
    $("sign-in-error").textContent = (await errorOf(response)).message;
    return;
  }
  await signIn((await response.json()).token);
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim());
});

$("sign-out").addEventListener("click", () => signOut());
$("new-conversation").addEventListener("click", newConversation);

$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const content = $("message").value.trim();
  if (!content || $("send").disabled) return;
  setBusy(true);
  $("message").value = "";
  try {
    await send(content);
  } catch (error) {
    showChatError(error);
    $("message").value = content; // Nothing typed is lost.
  } finally {
    setBusy(false);
    $("message").focus();
    refreshTasks().catch(showChatError);
    refreshConversations().catch(showChatError);
  }
});

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else showSignIn();
