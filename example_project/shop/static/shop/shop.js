// Progressive enhancement: "Add to cart" without a full reload, times in the shopper's own
// zone. Without JavaScript the same forms post and redirect, and times are shown in UTC.
"use strict";

// A hook for styles (and tests) that depend on JavaScript running.
document.documentElement.classList.add("js");

// Beside the button that was pressed: the box at the top may be scrolled out of view.
function showStatus(form, text, kind) {
  let box = form.querySelector(".add-status");
  if (!box) {
    box = document.createElement("p");
    box.setAttribute("role", "status");
    form.append(box);
  }
  box.className = "add-status " + kind;
  box.textContent = text;
}

function setCount(count) {
  const badge = document.querySelector("[data-cart-count]");
  if (!badge) return;
  badge.textContent = String(count);
  badge.classList.remove("bump");
  void badge.offsetWidth; // restart the animation
  badge.classList.add("bump");
}

// A tab opened before signing in (or out) holds the CSRF token of before: the login rotated
// it. Ask for the current one, put it into every form of the page, and try once more.
async function refreshCsrfToken() {
  const response = await fetch(document.documentElement.dataset.csrfUrl, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error("no fresh CSRF token");
  const { token } = await response.json();
  for (const input of document.querySelectorAll("input[name=csrfmiddlewaretoken]")) {
    input.value = token;
  }
}

function post(form) {
  return fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
}

async function add(form) {
  const button = form.querySelector("button");
  try {
    let response = await post(form);
    let data = await response.json();
    if (response.status === 403 && data.csrf) {
      await refreshCsrfToken();
      response = await post(form);
      data = await response.json();
      if (response.status === 403) {
        window.location.reload(); // still refused: start from a fresh page
        return;
      }
    }
    if (response.ok) {
      setCount(data.count);
      showStatus(form, data.message, "success");
    } else {
      showStatus(form, data.errors.join(" "), "error");
    }
  } catch (error) {
    form.submit(); // network or server trouble: fall back to the plain post
  } finally {
    if (button) button.disabled = false;
  }
}

// One add at a time, in the order clicked. The server would merge overlapping adds (the
// cart's conflict policy), but in order each response's count is the latest one.
let queue = Promise.resolve();

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.dataset.enhance !== "add") return;
  event.preventDefault();
  const button = form.querySelector("button");
  if (button) button.disabled = true;
  queue = queue.then(() => add(form));
});

// <time datetime="…" data-local="time|datetime">: the server writes UTC, shown here in the
// browser's zone.
function localTimes() {
  const formats = {
    time: { hour: "2-digit", minute: "2-digit", timeZoneName: "short" },
    datetime: { dateStyle: "long", timeStyle: "short" },
  };
  for (const element of document.querySelectorAll("time[data-local]")) {
    const when = new Date(element.dateTime);
    if (Number.isNaN(when.getTime())) continue;
    element.title = element.textContent;
    element.textContent = when.toLocaleString(undefined, formats[element.dataset.local]);
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", localTimes);
} else {
  localTimes();
}
