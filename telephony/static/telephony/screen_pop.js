/* The caller's card while the manager's phone rings, and the manager's agent state badge.
 *
 * Polls GET {urls.screenPop} every second (one request at a time, each with a timeout) and
 * shows one fixed-position card per ringing call; a card goes away when its call stops ringing
 * or when it is dismissed. On errors it backs off (2 s, 4 s ... 30 s); on 403 (logged out) or a
 * redirect it stops. A hidden tab does not poll; it polls at once when shown again.
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

  const region = document.createElement("div");
  region.id = "screen-pop";
  region.setAttribute("role", "region");
  region.setAttribute("aria-label", words.region);
  region.setAttribute("aria-live", "assertive");
  document.body.appendChild(region);

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
      showCalls(data.calls || []);
      showAgent(data.agent);
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

  function dismiss(id) {
    saveDismissed(dismissedIds().concat([id]));
    const card = cards.get(id);
    if (card) {
      card.element.remove();
      cards.delete(id);
    }
  }

  // --- Cards ---------------------------------------------------------------------------------

  function showCalls(calls) {
    const ringing = new Set(calls.map(function (call) { return call.id; }));
    const dismissed = dismissedIds().filter(function (id) { return ringing.has(id); });
    saveDismissed(dismissed);
    cards.forEach(function (card, id) {
      if (!ringing.has(id) || dismissed.includes(id)) {
        card.element.remove();
        cards.delete(id);
      }
    });
    calls.forEach(function (call) {
      if (dismissed.includes(call.id)) {
        return;
      }
      const signature = JSON.stringify(call);
      const shown = cards.get(call.id);
      if (shown && shown.signature === signature) {
        return; // unchanged: keep the element, so focus and hover stay put
      }
      const element = cardFor(call);
      if (shown) {
        shown.element.replaceWith(element);
      } else {
        region.appendChild(element);
      }
      cards.set(call.id, {element: element, signature: signature});
    });
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
    close.addEventListener("click", function () { dismiss(call.id); });
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
        item.appendChild(link(lead.url, "screen-pop-name", lead.name));
        item.appendChild(make("span", "screen-pop-meta", describe(lead)));
        list.appendChild(item);
      });
      body.appendChild(list);
    }
    if (call.kind === "unknown") {
      body.appendChild(make("p", "screen-pop-unknown", words.unknown));
      if (call.create_url) {
        body.appendChild(link(call.create_url, "screen-pop-create button", words.createLead));
      }
    }
    if (call.note) {
      body.appendChild(make("p", "screen-pop-note", call.note));
    }
    card.appendChild(body);
    return card;
  }

  function describe(lead) {
    return [lead.title, lead.company, lead.status, lead.responsible]
      .filter(Boolean).join(" · ");
  }

  function leadDetails(body, lead) {
    body.appendChild(link(lead.url, "screen-pop-name", lead.name));
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
    if (!badge || !state) {
      return;
    }
    agent = state;
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
