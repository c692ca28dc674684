// Progressive enhancement: "Add to cart" without a full reload. Without JavaScript the same
// forms post and redirect; the server answers JSON only when asked for JSON.
"use strict";

// A hook for styles (and tests) that depend on JavaScript running.
document.documentElement.classList.add("js");

function showMessage(text, kind) {
  const box = document.getElementById("messages");
  if (!box) return;
  const p = document.createElement("p");
  p.className = "message " + kind;
  p.textContent = text;
  box.replaceChildren(p);
}

function setCount(count) {
  const badge = document.querySelector("[data-cart-count]");
  if (!badge) return;
  badge.textContent = String(count);
  badge.classList.remove("bump");
  void badge.offsetWidth; // restart the animation
  badge.classList.add("bump");
}

async function add(form) {
  const button = form.querySelector("button");
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const data = await response.json();
    if (response.ok) {
      setCount(data.count);
      showMessage(data.message, "success");
    } else {
      showMessage(data.errors.join(" "), "error");
    }
  } catch (error) {
    form.submit(); // network or server trouble: fall back to the plain post
  } finally {
    if (button) button.disabled = false;
  }
}

// One add at a time: two saves of one session that overlap would each write the cart they
// loaded, and the later one would drop the other's line.
let queue = Promise.resolve();

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.dataset.enhance !== "add") return;
  event.preventDefault();
  const button = form.querySelector("button");
  if (button) button.disabled = true;
  queue = queue.then(() => add(form));
});
