// Tabs, reveal and copy, in-place probe results, local times and the console hint. The pages work without it.
"use strict";

function csrfToken(form) {
  const field = (form || document).querySelector("[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

// A signed-out request to a signed-in action is answered with the sign-in page, which fetch follows: say so,
// rather than fail to read that page as data (signed out in another tab, or the session ended).
async function jsonAnswer(response) {
  if (response.redirected && new URL(response.url).pathname === "/login/") {
    throw new Error("You are signed out (perhaps in another tab). Sign in again, then try once more.");
  }
  if (!(response.headers.get("Content-Type") || "").startsWith("application/json")) {
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    throw new Error("The portal did not answer with data. Reload the page and try again.");
  }
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.detail || `HTTP ${response.status}`);
  return answer;
}

function selectTab(container, slug) {
  container.querySelectorAll("[role=tab]").forEach((tab) => {
    const on = tab.dataset.tab === slug;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
  });
  container.querySelectorAll("[role=tabpanel]").forEach((panel) => {
    panel.hidden = panel.dataset.panel !== slug;
  });
}

// The server writes the shells as panels, each under its own heading, so they all work without this.
// Here they become tabs: the list is shown, the headings give way to the tab names, one panel shows.
function setUpTabs(container) {
  const list = container.querySelector("[data-tablist]");
  const tabs = [...container.querySelectorAll("[data-tab]")];
  if (!list || !tabs.length) return;
  list.setAttribute("role", "tablist");
  list.hidden = false;
  tabs.forEach((tab) => {
    tab.setAttribute("role", "tab");
    const panel = document.getElementById(tab.getAttribute("aria-controls"));
    if (!panel) return;
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    panel.querySelectorAll("[data-panel-title]").forEach((title) => (title.hidden = true));
  });
  const wanted = container.dataset.selected;
  selectTab(container, tabs.some((t) => t.dataset.tab === wanted) ? wanted : tabs[0].dataset.tab);
  container.querySelectorAll("[data-tabs-hint]").forEach((hint) => (hint.hidden = false));
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(container, tab.dataset.tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      selectTab(container, next.dataset.tab);
      next.focus();
    });
  });
}

// My set-up shows the key masked. Reveal, or the first Copy, fetches the real snippets once (the
// server records that one fetch); after that the card holds them and Copy needs no request.
async function revealCard(card, purpose) {
  if (card.dataset.revealed === "true") return;
  if (card.revealing) return card.revealing;
  const form = card.querySelector("form[data-reveal]");
  card.revealing = (async () => {
    const body = new URLSearchParams({ purpose });
    const response = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
      credentials: "same-origin",
      body,
    });
    const answer = await jsonAnswer(response);
    for (const [slug, text] of Object.entries(answer.tabs)) {
      card.querySelectorAll(`[data-snippet-text="${slug}"]`).forEach((code) => (code.textContent = text));
    }
    card.dataset.revealed = "true";
    card.querySelectorAll("form[data-reveal]").forEach((f) => (f.hidden = true));
    card.querySelectorAll("[data-reveal-note]").forEach((note) => (note.textContent = answer.note));
  })();
  try {
    await card.revealing;
  } finally {
    card.revealing = null;
  }
}

async function writeClipboard(textPromise) {
  // ClipboardItem takes a promise, so the copy keeps the click's permission while the text is fetched.
  if (window.ClipboardItem && navigator.clipboard && navigator.clipboard.write) {
    try {
      const blob = textPromise.then((text) => new Blob([text], { type: "text/plain" }));
      await navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
      return;
    } catch (err) {
      // fall through to the older ways below
    }
  }
  const text = await textPromise;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// Where a copy is announced: the snippet's note (a status region), or one made for it on pages without a note.
function copyNote(button) {
  const snippet = button.closest("[data-snippet], .snippet") || button.parentElement;
  let note = snippet.querySelector("[data-reveal-note], [data-copy-note]");
  if (!note) {
    note = document.createElement("span");
    note.className = "visually-hidden";
    note.setAttribute("role", "status");
    note.dataset.copyNote = "";
    button.after(note);
  }
  return note;
}

async function copySnippet(button) {
  const snippet = button.closest("[data-snippet], .snippet") || button.parentElement;
  const card = button.closest("[data-assignment]");
  const textOf = () => snippet.querySelector("pre").innerText;
  const note = copyNote(button);
  // The button's own markup (with its visually-hidden words) is kept aside and put back after the message.
  if (!button.label) button.label = [...button.childNodes];
  clearTimeout(button.restore);
  try {
    const text = card ? revealCard(card, "copy").then(textOf) : Promise.resolve(textOf());
    await writeClipboard(text);
    button.textContent = "Copied";
    note.textContent = "Copied to the clipboard.";
  } catch (err) {
    button.textContent = "Copy failed";
    note.textContent = (card ? "The key could not be fetched: " : "The copy failed: ") + err.message;
  }
  button.restore = setTimeout(() => {
    button.replaceChildren(...button.label);
    button.label = null;
  }, 2000);
}

// After a refused form, focus goes to the first field at fault, so a keyboard user starts where the fix is.
function focusFirstError() {
  const field = document.querySelector("[aria-invalid=true]");
  if (field) field.focus();
}

// Times are written in the portal's zone, named; show them in the viewer's own zone instead.
function localizeTimes(root) {
  const format = (withSeconds) =>
    new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
      ...(withSeconds ? { second: "2-digit" } : {}), hourCycle: "h23", timeZoneName: "short",
    });
  root.querySelectorAll("time[data-local]").forEach((time) => {
    const moment = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) return;
    const parts = Object.fromEntries(format(time.dataset.local === "s").formatToParts(moment).map((p) => [p.type, p.value]));
    const seconds = parts.second ? `:${parts.second}` : "";
    if (!time.title) time.title = time.textContent;
    time.textContent = `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}${seconds} ${parts.timeZoneName}`;
  });
}

// After a probe, the page's own regions (latest verdict, chart, recent probes) are fetched again and swapped in.
async function refreshRegions() {
  const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  document.querySelectorAll("[data-refresh]").forEach((region) => {
    const replacement = fresh.getElementById(region.id);
    if (!replacement) return;
    const node = document.importNode(replacement, true);
    const focused = region.contains(document.activeElement);
    region.replaceWith(node);
    localizeTimes(node);
    if (focused && node.tabIndex >= 0) node.focus(); // a keyboard user keeps their place on the fresh chart
  });
}

async function runProbe(form) {
  const out = document.getElementById(form.dataset.probeTarget);
  const button = form.querySelector("button");
  button.disabled = true;
  const started = Date.now();
  out.textContent = "Probing… ";
  const elapsed = document.createElement("span");
  elapsed.className = "probe-progress";
  elapsed.setAttribute("aria-hidden", "true");
  out.append(elapsed);
  const tick = () => (elapsed.textContent = `${Math.floor((Date.now() - started) / 1000)} s`);
  tick();
  const timer = setInterval(tick, 1000);
  try {
    const response = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
      credentials: "same-origin",
    });
    const result = await jsonAnswer(response);
    clearInterval(timer);
    out.innerHTML = "";
    const badge = document.createElement("span");
    badge.className = "badge " + (result.verdict === "ok" ? "good" : "bad");
    badge.dataset.verdict = result.verdict;
    badge.textContent = result.verdict;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const facts = [result.status_code && `HTTP ${result.status_code}`, result.latency_ms && `${result.latency_ms} ms`, `took ${seconds} s`];
    out.append(badge, " ", facts.filter(Boolean).join(" · "));
    for (const text of [result.hint, result.warning]) {
      if (!text) continue;
      const p = document.createElement("p");
      p.textContent = text;
      out.append(p);
    }
    await refreshRegions();
  } catch (err) {
    out.textContent = "The probe could not be run: " + err.message;
  } finally {
    clearInterval(timer);
    button.disabled = false;
    if (document.activeElement === document.body) button.focus(); // disabling it had dropped the focus
  }
}

// The key form shows where to find a key in the console of the gateway chosen.
function setUpHints(select) {
  const hints = document.querySelectorAll(`[data-hint-for="${select.id}"] [data-hint]`);
  const show = () => hints.forEach((hint) => (hint.hidden = hint.dataset.hint !== select.value));
  select.addEventListener("change", show);
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-tabs]").forEach(setUpTabs);
  document.querySelectorAll("[data-copy]").forEach((button) => {
    copyNote(button);
    button.hidden = false;
    button.addEventListener("click", () => copySnippet(button));
  });
  document.querySelectorAll("form[data-reveal]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const card = form.closest("[data-assignment]");
      revealCard(card, "reveal").catch((err) => {
        card.querySelectorAll("[data-reveal-note]").forEach((note) => (note.textContent = "The key could not be fetched: " + err.message));
      });
    })
  );
  document.querySelectorAll("form[data-probe-target]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      runProbe(form);
    })
  );
  document.querySelectorAll("select[data-hints]").forEach(setUpHints);
  localizeTimes(document);
  focusFirstError();
});
