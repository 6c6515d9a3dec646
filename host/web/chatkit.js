// Mounts OpenAI's ChatKit web component against this server's ChatKit
// endpoint: a session secret from /api/v1/chatkit/sessions (made with the
// token the chat page stored, or a dev-mode token), sent by a custom fetch.

const status = document.getElementById("status");

async function userToken() {
  const saved = localStorage.getItem("wasmgate.token");
  if (saved) return saved;
  const dev = await fetch("/api/v1/dev/token", { method: "POST" });
  if (dev.ok) return (await dev.json()).token;
  throw new Error("Sign in on the chat page first.");
}

async function clientSecret(token) {
  const response = await fetch("/api/v1/chatkit/sessions", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: "{}",
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? `The server answered ${response.status}.`);
  return body.client_secret;
}

async function mount() {
  const token = await userToken();
  let secret = await clientSecret(token);
  const timeout = setTimeout(() => {
    status.textContent = "ChatKit's runtime did not load from OpenAI's CDN (it needs the internet).";
  }, 10000);
  await customElements.whenDefined("openai-chatkit");
  clearTimeout(timeout);
  const chatkit = document.createElement("openai-chatkit");
  chatkit.setOptions({
    api: {
      url: "/api/v1/chatkit",
      domainKey: "wasmgate-local",
      // Secrets are short-lived: on a 401, make a new one and try once more.
      async fetch(url, init = {}) {
        const send = () => {
          const headers = new Headers(init.headers);
          headers.set("authorization", `Bearer ${secret}`);
          return fetch(url, { ...init, headers });
        };
        let response = await send();
        if (response.status === 401) {
          secret = await clientSecret(token);
          response = await send();
        }
        return response;
      },
    },
    startScreen: { greeting: "What shall we do with your tasks?" },
    composer: { placeholder: "e.g. Add a task to buy milk" },
  });
  document.getElementById("chatkit").append(chatkit);
  status.textContent = "";
}

mount().catch((error) => {
  status.textContent = error.message;
});
