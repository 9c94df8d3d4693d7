// Tabs, copy buttons and in-place probe results. The pages work without it.
"use strict";

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

function setUpTabs(container) {
  const tabs = [...container.querySelectorAll("[role=tab]")];
  if (!tabs.length) return;
  const wanted = container.dataset.selected;
  selectTab(container, tabs.some((t) => t.dataset.tab === wanted) ? wanted : tabs[0].dataset.tab);
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

async function copySnippet(button) {
  const text = button.parentElement.querySelector("pre").innerText;
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
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

async function runProbe(form) {
  const out = document.getElementById(form.dataset.probeTarget);
  const button = form.querySelector("button");
  button.disabled = true;
  out.textContent = "Probing…";
  try {
    const response = await fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      credentials: "same-origin",
    });
    const result = await response.json();
    out.innerHTML = "";
    const badge = document.createElement("span");
    badge.className = "badge " + (result.verdict === "ok" ? "good" : "bad");
    badge.dataset.verdict = result.verdict;
    badge.textContent = result.verdict;
    out.append(badge, " ", [result.status_code && `HTTP ${result.status_code}`, result.latency_ms && `${result.latency_ms} ms`].filter(Boolean).join(" · "));
    for (const text of [result.hint, result.warning]) {
      if (!text) continue;
      const p = document.createElement("p");
      p.textContent = text;
      out.append(p);
    }
  } catch (err) {
    out.textContent = "The probe could not be run: " + err;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-tabs]").forEach(setUpTabs);
  document.querySelectorAll("[data-copy]").forEach((b) => b.addEventListener("click", () => copySnippet(b)));
  document.querySelectorAll("form[data-probe-target]").forEach((form) =>
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      runProbe(form);
    })
  );
});
