/* The workspace's few behaviours that htmx does not cover:
 * - a "select all" checkbox for the lead list's bulk actions;
 * - the pipeline: drag a card to another column, or use its "Move to" control (which works
 *   without JavaScript too); either way the move is POSTed, the card moves, the counts change
 *   and the move is announced in the page's live region.
 * Plain ES2017, no build step.
 */
(function () {
  "use strict";

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  document.addEventListener("change", function (event) {
    const all = event.target.closest("[data-check-all]");
    if (!all) return;
    const form = all.closest("form");
    form.querySelectorAll("input[type=checkbox][name=" + all.dataset.checkAll + "]")
      .forEach(function (box) { box.checked = all.checked; });
  });

  const board = document.querySelector("[data-pipeline]");
  if (!board) return;
  const announcer = document.getElementById("pipeline-announcer");

  function column(code) {
    return board.querySelector(".column[data-status='" + CSS.escape(code) + "']");
  }

  function changeCount(columnElement, delta) {
    const count = columnElement.querySelector("h2 .muted");
    if (!count || count.hasAttribute("data-capped")) return; // "over 10,000" stays as it is
    count.textContent = String(Math.max(0, Number(count.textContent) + delta));
  }

  async function move(card, code) {
    const from = card.closest(".column");
    const to = column(code);
    if (!to || from === to) return;
    const body = new URLSearchParams({ status: code, csrfmiddlewaretoken: csrfToken() });
    const response = await fetch(card.dataset.moveUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "HX-Request": "true", "X-CSRFToken": csrfToken() },
    });
    const text = (await response.text()).trim();
    announcer.textContent = text;
    if (!response.ok) return;
    to.querySelector(".cards").prepend(card);
    card.querySelector("select").value = code;
    changeCount(from, -1);
    changeCount(to, +1);
  }

  board.addEventListener("submit", function (event) {
    const card = event.target.closest(".lead-card");
    if (!card) return;
    event.preventDefault();
    move(card, event.target.querySelector("select").value).then(function () {
      card.querySelector("select").focus();
    });
  });

  let dragged = null;
  board.addEventListener("dragstart", function (event) {
    dragged = event.target.closest(".lead-card");
    if (dragged) event.dataTransfer.setData("text/plain", dragged.dataset.lead);
  });
  board.addEventListener("dragover", function (event) {
    const target = event.target.closest(".column");
    if (dragged && target) {
      event.preventDefault();
      target.classList.add("drop-target");
    }
  });
  board.addEventListener("dragleave", function (event) {
    const target = event.target.closest(".column");
    if (target && !target.contains(event.relatedTarget)) target.classList.remove("drop-target");
  });
  board.addEventListener("drop", function (event) {
    const target = event.target.closest(".column");
    if (!dragged || !target) return;
    event.preventDefault();
    target.classList.remove("drop-target");
    move(dragged, target.dataset.status);
    dragged = null;
  });
})();
