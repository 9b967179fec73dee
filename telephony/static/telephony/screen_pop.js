/* The caller's card while the manager's phone rings, and the manager's agent state badge.
 *
 * Polls GET {urls.screenPop} every second (one request at a time, each with a timeout) and
 * shows one fixed-position card per call ringing or in progress; a card goes away when its call
 * ends or when it is dismissed (a card dismissed while ringing comes back once the call is
 * answered, with its controls). On errors it backs off (2 s, 4 s ... 30 s); on 403 (logged out)
 * or a redirect it stops. A hidden tab does not poll; it polls at once when shown again.
 * During a call the card carries the call's controls as the server sends them: each a button
 * POSTing to its URL, a transfer or a conference first asking whom; a control the PBX cannot
 * do is disabled, with the reason next to it (title and aria-describedby).
 * The badge's button sets the manager away or back (POST {urls.agentState}); when the PBX could
 * not be told, the badge's tooltip says why.
 * Configuration and words come from the JSON in #screen-pop-config (see the template).
 * No build step: plain ES2017 for current browsers.
 */
(function () {
  "use strict";

  const configElement = document.getElementById("screen-pop-config");
  if (!configElement || !window.fetch || !window.AbortController) {
    return;
  }
  const config = JSON.parse(configElement.textContent);
  const words = config.strings;
  const INTERVAL = config.interval || 1000;
  const MAX_DELAY = 30000;
  const REQUEST_TIMEOUT = 5000;
  const DISMISSED_KEY = "telephony.screenPop.dismissed";

  let failures = 0;
  let timer = null;
  let inFlight = false;
  let stopped = false;
  let agent = null;
  let toggling = false;
  const cards = new Map(); // call id -> {element, signature}
  const notes = new Map(); // call id -> {text, error}: what the last control answered
  let colleagues = [];
  let busy = false; // a control's request is under way

  const region = document.createElement("div");
  region.id = "screen-pop";
  region.setAttribute("role", "region");
  region.setAttribute("aria-label", words.region);
  region.setAttribute("aria-live", "assertive");
  document.body.appendChild(region);

  // On a workspace page the card links to the workspace's lead card; in the admin, to the admin.
  function leadUrl(lead) {
    return (config.workspace && lead.card_url) || lead.url;
  }

  function newLeadUrl(call) {
    return (config.workspace && call.new_url) || call.create_url;
  }

  // --- Talking to the server -----------------------------------------------------------------

  async function request(url, options) {
    const controller = new AbortController();
    const timeout = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT);
    try {
      return await fetch(url, Object.assign({
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
        signal: controller.signal,
        headers: {"Accept": "application/json"},
      }, options));
    } finally {
      clearTimeout(timeout);
    }
  }

  function loggedOut(response) {
    return response.type === "opaqueredirect" || response.status === 401 ||
      response.status === 403;
  }

  function schedule(delay) {
    clearTimeout(timer);
    if (!stopped) {
      timer = setTimeout(poll, delay);
    }
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    showCalls([]);
  }

  async function poll() {
    if (stopped || inFlight || document.hidden) {
      return; // the running request reschedules; a hidden tab resumes on visibilitychange
    }
    inFlight = true;
    let delay = INTERVAL;
    try {
      const response = await request(config.urls.screenPop);
      if (loggedOut(response)) {
        stop();
        return;
      }
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      failures = 0;
      colleagues = data.colleagues || [];
      showAgent(data.agent);
      showCalls(data.calls || []);
    } catch (error) {
      failures += 1;
      delay = Math.min(INTERVAL * Math.pow(2, failures), MAX_DELAY);
    } finally {
      inFlight = false;
    }
    schedule(delay);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      schedule(0);
    }
  });

  // --- Dismissed cards stay dismissed across pages and tabs, while their call rings ----------

  function dismissedIds() {
    try {
      return JSON.parse(localStorage.getItem(DISMISSED_KEY) || "[]");
    } catch (error) {
      return [];
    }
  }

  function saveDismissed(ids) {
    try {
      if (ids.length) {
        localStorage.setItem(DISMISSED_KEY, JSON.stringify(ids));
      } else {
        localStorage.removeItem(DISMISSED_KEY);
      }
    } catch (error) {
      // Storage may be off (private mode); dismissing then lasts for this page only.
    }
  }

  function dismissKey(call) {
    return call.id + (call.controls.length ? ":live" : ":ringing");
  }

  function dismiss(call) {
    const id = call.id;
    saveDismissed(dismissedIds().concat([dismissKey(call)]));
    const card = cards.get(id);
    if (card) {
      card.element.remove();
      cards.delete(id);
    }
  }

  // --- Cards ---------------------------------------------------------------------------------

  function showCalls(calls) {
    const keys = new Set(calls.map(dismissKey));
    const dismissed = dismissedIds().filter(function (key) { return keys.has(key); });
    saveDismissed(dismissed);
    const shownIds = new Set(calls.filter(function (call) {
      return !dismissed.includes(dismissKey(call));
    }).map(function (call) { return call.id; }));
    cards.forEach(function (card, id) {
      if (!shownIds.has(id)) {
        card.element.remove();
        cards.delete(id);
        notes.delete(id);
      }
    });
    calls.forEach(function (call) {
      if (!shownIds.has(call.id)) {
        return;
      }
      const signature = JSON.stringify([call, notes.get(call.id) || null]);
      const shown = cards.get(call.id);
      if (shown && shown.signature === signature) {
        return; // unchanged: keep the element, so focus and hover stay put
      }
      const element = cardFor(call);
      if (shown) {
        keepFocus(shown.element, element);
      } else {
        region.appendChild(element);
      }
      cards.set(call.id, {element: element, signature: signature});
    });
  }

  function keepFocus(old, replacement) {
    // A card redrawn under the keyboard keeps the focus on the same control (or the first).
    const focused = old.contains(document.activeElement) ? document.activeElement : null;
    old.replaceWith(replacement);
    if (focused) {
      const same = focused.dataset.control &&
        replacement.querySelector('[data-control="' + focused.dataset.control + '"]');
      const target = same || replacement.querySelector(".screen-pop-control:not([disabled])");
      if (target) {
        target.focus();
      }
    }
  }

  function make(tag, className, text) {
    const element = document.createElement(tag);
    if (className) {
      element.className = className;
    }
    if (text) {
      element.textContent = text;
    }
    return element;
  }

  function link(href, className, text) {
    const element = make("a", className, text);
    element.href = href;
    return element;
  }

  function cardFor(call) {
    const card = make("section", "screen-pop-card screen-pop-" + call.kind);
    card.dataset.call = call.id;
    const heading = call.direction === "in" ? words.incoming : words.outgoing;
    card.setAttribute("aria-label", heading + " " + call.number);

    const header = make("header", "screen-pop-header");
    header.appendChild(make("span", "screen-pop-heading", heading));
    header.appendChild(make("span", "screen-pop-number", call.number));
    const close = make("button", "screen-pop-dismiss", "×");
    close.type = "button";
    close.title = words.dismiss;
    close.setAttribute("aria-label", words.dismiss);
    close.addEventListener("click", function () { dismiss(call); });
    header.appendChild(close);
    card.appendChild(header);

    const body = make("div", "screen-pop-body");
    if (call.lead) {
      leadDetails(body, call.lead);
    }
    if (call.candidates.length) {
      body.appendChild(make("p", "screen-pop-choose", words.choose));
      const list = make("ul", "screen-pop-candidates");
      call.candidates.forEach(function (lead) {
        const item = make("li");
        item.appendChild(link(leadUrl(lead), "screen-pop-name", lead.name));
        item.appendChild(make("span", "screen-pop-meta", describe(lead)));
        list.appendChild(item);
      });
      body.appendChild(list);
    }
    if (call.kind === "unknown") {
      body.appendChild(make("p", "screen-pop-unknown", words.unknown));
      if (newLeadUrl(call)) {
        body.appendChild(link(newLeadUrl(call), "screen-pop-create button", words.createLead));
      }
    }
    if (call.note) {
      body.appendChild(make("p", "screen-pop-note", call.note));
    }
    card.appendChild(body);
    if (call.controls.length) {
      card.appendChild(controlsFor(call));
    }
    return card;
  }

  // --- The call's controls -------------------------------------------------------------------

  function controlsFor(call) {
    const box = make("div", "screen-pop-controls");
    const heading = make("h3", "screen-pop-subheading",
      call.state === "on_hold" ? words.onHold : words.inCall);
    heading.id = "screen-pop-controls-" + call.id;
    box.appendChild(heading);
    const buttons = make("div", "screen-pop-buttons");
    buttons.setAttribute("role", "group");
    buttons.setAttribute("aria-labelledby", heading.id);
    const reasons = make("ul", "screen-pop-reasons");
    const reasonIds = new Map(); // reason text -> element id: each reason said once
    const forms = make("div");
    call.controls.forEach(function (control) {
      const button = make("button", "screen-pop-control screen-pop-" + control.name,
        control.label);
      button.type = "button";
      button.dataset.control = control.name;
      if (control.name === "dnd") {
        button.setAttribute("aria-pressed", agent && agent.away ? "true" : "false");
      }
      if (!control.enabled) {
        button.disabled = true;
        button.title = control.reason;
        if (!reasonIds.has(control.reason)) {
          const id = "screen-pop-reason-" + call.id + "-" + reasonIds.size;
          const item = make("li", "", control.reason);
          item.id = id;
          reasons.appendChild(item);
          reasonIds.set(control.reason, id);
        }
        button.setAttribute("aria-describedby", reasonIds.get(control.reason));
      } else if (control.target) {
        const form = targetForm(call, control);
        form.hidden = true;
        forms.appendChild(form);
        button.setAttribute("aria-expanded", "false");
        button.setAttribute("aria-controls", form.id);
        button.addEventListener("click", function () {
          const open = form.hidden;
          forms.querySelectorAll("form").forEach(function (other) { other.hidden = true; });
          buttons.querySelectorAll("[aria-expanded]").forEach(function (other) {
            other.setAttribute("aria-expanded", "false");
          });
          form.hidden = !open;
          button.setAttribute("aria-expanded", open ? "true" : "false");
          if (open) {
            form.querySelector("select, input").focus();
          }
        });
      } else {
        button.addEventListener("click", function () {
          if (control.name === "dnd") {
            act(call, control, {away: !(agent && agent.away)});
          } else {
            act(call, control, {});
          }
        });
      }
      buttons.appendChild(button);
    });
    box.appendChild(buttons);
    box.appendChild(forms);
    if (reasonIds.size) {
      box.appendChild(reasons);
    }
    const note = notes.get(call.id);
    const status = make("p", "screen-pop-status" + (note && note.error ? " error" : ""),
      note ? note.text : "");
    status.setAttribute("role", note && note.error ? "alert" : "status");
    box.appendChild(status);
    return box;
  }

  function targetForm(call, control) {
    const form = make("form", "screen-pop-target");
    form.id = "screen-pop-" + control.name + "-" + call.id;
    const selectId = form.id + "-colleague";
    const label = make("label", "", words.colleague);
    label.htmlFor = selectId;
    const select = make("select");
    select.id = selectId;
    select.name = "colleague";
    if (control.target === "party") {
      select.appendChild(new Option(words.aNumber, ""));
    }
    colleagues.forEach(function (colleague) {
      select.appendChild(new Option(colleague.name, String(colleague.id)));
    });
    form.appendChild(label);
    form.appendChild(select);
    let number = null;
    if (control.target === "party") {
      const numberId = form.id + "-number";
      const numberLabel = make("label", "", words.number);
      numberLabel.htmlFor = numberId;
      number = make("input");
      number.id = numberId;
      number.type = "tel";
      number.name = "to";
      number.autocomplete = "off";
      form.appendChild(numberLabel);
      form.appendChild(number);
    }
    const submit = make("button", "", control.confirm || control.label);
    submit.type = "submit";
    form.appendChild(submit);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const typed = number ? number.value.trim() : "";
      act(call, control, typed ? {to: typed} : {colleague: select.value});
    });
    return form;
  }

  async function act(call, control, data) {
    if (busy) {
      return;
    }
    busy = true;
    let note;
    try {
      const response = await request(control.url, {
        method: "POST",
        headers: {
          "Accept": "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": config.csrfToken,
        },
        body: JSON.stringify(data),
      });
      const answer = await response.json().catch(function () { return {}; });
      if (control.name === "dnd" && response.ok) {
        showAgent(answer);
        note = {text: answer.message, error: answer.pbx === false};
      } else {
        note = response.ok ? {text: answer.message, error: false} :
          {text: answer.error || words.controlFailed, error: true};
      }
    } catch (error) {
      note = {text: words.controlFailed, error: true};
    } finally {
      busy = false;
    }
    notes.set(call.id, note);
    const shown = cards.get(call.id);
    if (shown) {
      const element = cardFor(call);
      keepFocus(shown.element, element);
      shown.element = element;
      shown.signature = JSON.stringify([call, note]);
    }
    schedule(0); // the call's new state, at once
  }

  function describe(lead) {
    return [lead.title, lead.company, lead.status, lead.responsible]
      .filter(Boolean).join(" · ");
  }

  function leadDetails(body, lead) {
    body.appendChild(link(leadUrl(lead), "screen-pop-name", lead.name));
    body.appendChild(make("div", "screen-pop-meta",
      [lead.title, lead.company].filter(Boolean).join(" · ")));
    const facts = make("dl", "screen-pop-facts");
    [[words.status, lead.status], [words.responsible, lead.responsible],
      [words.nurturing, lead.nurture]].forEach(function (fact) {
      if (fact[1]) {
        facts.appendChild(make("dt", "", fact[0]));
        facts.appendChild(make("dd", "", fact[1]));
      }
    });
    body.appendChild(facts);
    if (lead.activities.length) {
      body.appendChild(make("h3", "screen-pop-subheading", words.recent));
      const list = make("ul", "screen-pop-activities");
      lead.activities.forEach(function (activity) {
        const item = make("li");
        item.appendChild(make("span", "screen-pop-when", activity.when));
        item.appendChild(document.createTextNode(" " + activity.text));
        list.appendChild(item);
      });
      body.appendChild(list);
    }
  }

  // --- The agent state badge in the header ---------------------------------------------------

  const badge = document.getElementById("agent-state");
  const badgeValue = document.getElementById("agent-state-value");
  const toggle = document.getElementById("agent-state-toggle");

  function showAgent(state) {
    if (!state) {
      return;
    }
    agent = state;
    region.querySelectorAll('[data-control="dnd"]').forEach(function (button) {
      button.setAttribute("aria-pressed", state.away ? "true" : "false");
    });
    if (!badge) {
      return;
    }
    badge.hidden = false;
    badge.dataset.state = state.state;
    badgeValue.textContent = state.label;
    toggle.textContent = state.away ? words.setBack : words.setAway;
    toggle.disabled = toggling;
  }

  if (toggle) {
    toggle.addEventListener("click", async function () {
      if (!agent) {
        return;
      }
      toggling = toggle.disabled = true;
      try {
        const response = await request(config.urls.agentState, {
          method: "POST",
          headers: {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-CSRFToken": config.csrfToken,
          },
          body: JSON.stringify({away: !agent.away}),
        });
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        const state = await response.json();
        toggling = false;
        showAgent(state);
        // Away in the CRM, but the PBX could not be told (no PBX, no extension...): say why.
        badge.title = state.pbx === false ? state.message : "";
      } catch (error) {
        toggling = toggle.disabled = false;
        window.alert(words.toggleFailed);
      }
    });
  }

  poll();
})();
