// Session page: timeline seeking, synced webcam + screen, keyboard-driven flag decisions. No framework.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const webcam = document.getElementById("webcam");
  const screen = document.getElementById("screen");
  const rows = Array.from(document.querySelectorAll(".flag-row"));
  const bars = Array.from(document.querySelectorAll("#timeline .flag"));
  const playhead = document.getElementById("playhead");
  const clock = document.getElementById("clock");
  const announcer = document.getElementById("announce");
  const claimUntil = document.getElementById("claim-until");
  const LEAD_S = 2; // seek a moment before the flag, to see what led to it
  let current = -1;
  const saving = new Set(); // decisions on their way to the server; the outcome waits for them
  const decided = []; // indices of the flags decided on this page, latest last: what `u` takes back

  function fmt(t) {
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return m + ":" + String(s).padStart(2, "0");
  }

  function announce(text) { // read out by screen readers (role=status)
    if (announcer) announcer.textContent = text;
  }

  async function post(url, fields) {
    const body = new FormData();
    body.append("csrf_token", data.csrf);
    Object.entries(fields).forEach(([k, v]) => body.append(k, v));
    const response = await fetch(url, { method: "POST", body: body, headers: { Accept: "application/json" } });
    const payload = await response.json().catch(() => ({ detail: response.statusText }));
    return { ok: response.ok, status: response.status, payload: payload };
  }

  function select(index, seek) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((r, i) => r.classList.toggle("current", i === current));
    bars.forEach((b, i) => b.classList.toggle("current", i === current));
    rows[current].scrollIntoView({ block: "nearest" });
    if (seek && webcam) {
      webcam.currentTime = Math.max(0, parseFloat(rows[current].dataset.start) - LEAD_S);
    }
  }

  // A flag's decision ("" for none) in its row and on the timeline, for the eye and for screen readers.
  function showDecision(index, decision) {
    const label = rows[index].querySelector(".decision");
    label.textContent = decision || "undecided";
    label.dataset.decision = decision;
    bars[index].classList.remove("confirmed", "dismissed");
    if (decision) bars[index].classList.add(decision);
    bars[index].setAttribute("aria-label", bars[index].getAttribute("aria-label").replace(/, [a-z]+$/, ", " + (decision || "undecided")));
  }

  // A claim that ran out: say so in the row, and offer to claim again without reloading.
  function offerReclaim(row) {
    if (row.querySelector(".reclaim")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "reclaim";
    button.textContent = "Claim again";
    button.addEventListener("click", async () => {
      if (await renewClaim()) {
        button.remove();
        announce("claimed again; you can decide");
      }
    });
    row.querySelector(".decision").after(button);
  }

  // Decide flag `index`; with `advance`, go on to the next flag (the video seeks to it), as in a playlist.
  async function decide(index, decision, advance) {
    if (!data.editable || index < 0) return;
    const row = rows[index];
    const note = row.querySelector(".note");
    const share = row.querySelector(".note-shared"); // the note goes to the platform only when ticked
    const url = "/review/sessions/" + data.session + "/flags/" + row.dataset.id + "/decision";
    // Move on at once, so that keys pressed while this saves act on the next flag; a failure comes back here.
    if (advance && index === current && index < rows.length - 1) select(index + 1, true);
    const sent = note ? note.value : "", shared = share ? share.checked : false;
    const request = post(url, { decision: decision, note: sent, note_shared: shared ? "on" : "" });
    saving.add(request);
    const result = await request.finally(() => saving.delete(request));
    if (result.ok) {
      showDecision(index, decision);
      row.classList.remove("note-pending");
      announce("flag " + (index + 1) + " " + decision);
      if (decided[decided.length - 1] !== index) decided.push(index);
      if ((note && note.value !== sent) || (share && share.checked !== shared)) decide(index, decision, false); // changed while this saved
    } else {
      row.querySelector(".decision").textContent = "not saved: " + result.payload.detail;
      announce("not saved: " + result.payload.detail);
      select(index, false);
      if (result.status === 409 && /claim/.test(result.payload.detail)) offerReclaim(row);
    }
  }

  // A note is saved with the flag's decision. Leaving the field (Esc, Tab, a click elsewhere) saves the note
  // of a decided flag at once; on an undecided flag it says that c or x saves it, instead of losing it.
  function noteLeft(index) {
    const row = rows[index];
    const decided = row.querySelector(".decision").dataset.decision;
    if (decided) {
      decide(index, decided, false);
    } else {
      row.classList.add("note-pending");
      row.querySelector(".decision").textContent = "note not saved yet: confirm (c) or dismiss (x) saves it";
    }
  }

  async function undo() {
    if (!data.editable || !decided.length) return;
    const index = decided.pop();
    const row = rows[index];
    const result = await post("/review/sessions/" + data.session + "/flags/" + row.dataset.id + "/undo", {});
    if (!result.ok) { announce("not undone: " + result.payload.detail); return; }
    showDecision(index, "");
    select(index, true);
    announce("flag " + (index + 1) + " undecided again");
  }

  async function renewClaim() {
    const result = await post("/review/sessions/" + data.session + "/claim", {});
    if (result.ok && claimUntil && result.payload.claim_expires_at) {
      const until = new Date(result.payload.claim_expires_at);
      claimUntil.textContent = String(until.getUTCHours()).padStart(2, "0") + ":" + String(until.getUTCMinutes()).padStart(2, "0");
    } else if (!result.ok) {
      announce("claim not renewed: " + result.payload.detail);
    }
    return result.ok;
  }

  bars.forEach((bar, i) => bar.addEventListener("click", (event) => { event.stopPropagation(); select(i, true); }));
  const timeline = document.getElementById("timeline");
  if (timeline && webcam && data.duration) timeline.addEventListener("click", (event) => { // seek anywhere
    if (event.target !== timeline && event.target !== playhead) return;
    const box = timeline.getBoundingClientRect();
    webcam.currentTime = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * data.duration;
  });
  // The thumbnail strip: hovering the timeline previews the moment under the pointer.
  const thumbs = document.getElementById("thumbs");
  const preview = document.getElementById("preview");
  if (timeline && thumbs && preview && data.duration) {
    const every = parseFloat(thumbs.dataset.every), count = parseInt(thumbs.dataset.count, 10);
    const columns = parseInt(thumbs.dataset.columns, 10), rowsOf = parseInt(thumbs.dataset.rows, 10);
    const image = preview.querySelector(".preview-image");
    timeline.addEventListener("mousemove", (event) => {
      const box = timeline.getBoundingClientRect();
      const t = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * data.duration;
      const i = Math.min(count - 1, Math.floor(t / every));
      image.style.backgroundPosition = ((i % columns) * 100 / Math.max(columns - 1, 1)) + "% " +
        (Math.floor(i / columns) * 100 / Math.max(rowsOf - 1, 1)) + "%";
      preview.querySelector(".preview-time").textContent = fmt(t);
      preview.style.left = (event.clientX - preview.parentElement.getBoundingClientRect().left) + "px";
      preview.hidden = false;
    });
    timeline.addEventListener("mouseleave", () => { preview.hidden = true; });
  }
  // Zoom: the timeline, its thumbnails and axis widen inside a scrolling frame that keeps the playhead in view.
  const scroller = document.getElementById("timeline-scroll");
  const zoomed = document.getElementById("timeline-zoom");
  const ZOOMS = [1, 2, 4, 8, 16];
  let zoom = 0;
  function setZoom(level) {
    if (!zoomed) return;
    zoom = Math.max(0, Math.min(ZOOMS.length - 1, level));
    zoomed.style.width = (ZOOMS[zoom] * 100) + "%";
    document.getElementById("zoom-level").textContent = ZOOMS[zoom] + "×";
    if (webcam && data.duration) {
      scroller.scrollLeft = zoomed.offsetWidth * webcam.currentTime / data.duration - scroller.clientWidth / 2;
    }
  }
  const zoomIn = document.getElementById("zoom-in"), zoomOut = document.getElementById("zoom-out");
  if (zoomIn) zoomIn.addEventListener("click", () => setZoom(zoom + 1));
  if (zoomOut) zoomOut.addEventListener("click", () => setZoom(zoom - 1));

  // Loop the current flag: from a moment before it to a second after, until unticked.
  const loop = document.getElementById("loop");
  if (webcam && loop) webcam.addEventListener("timeupdate", () => {
    if (!loop.checked || current < 0) return;
    const start = parseFloat(rows[current].dataset.start), end = parseFloat(rows[current].dataset.end);
    if (webcam.currentTime > end + 1 || webcam.currentTime < start - LEAD_S - 1) {
      webcam.currentTime = Math.max(0, start - LEAD_S);
    }
  });
  const enlarged = document.getElementById("enlarged");
  document.querySelectorAll(".evidence-open").forEach((button) => button.addEventListener("click", () => {
    enlarged.querySelector("img").src = button.querySelector("img").src;
    enlarged.showModal(); // Esc closes it
  }));
  document.querySelectorAll("[data-seek]").forEach((el) => el.addEventListener("click", () => { // exam events
    if (webcam) webcam.currentTime = parseFloat(el.dataset.seek);
  }));
  rows.forEach((row, i) => {
    row.querySelector(".seek").addEventListener("click", () => select(i, true));
    const confirm = row.querySelector(".confirm");
    const dismiss = row.querySelector(".dismiss");
    const note = row.querySelector(".note");
    if (confirm) confirm.addEventListener("click", () => { select(i, false); decide(i, "confirmed", true); });
    if (dismiss) dismiss.addEventListener("click", () => { select(i, false); decide(i, "dismissed", true); });
    if (note) note.addEventListener("change", () => noteLeft(i));
    const share = row.querySelector(".note-shared");
    if (share) share.addEventListener("change", () => { share.blur(); noteLeft(i); }); // back to the keys
  });

  // The outcome locks the flags: forms.js submits it once every decision on its way has been saved.
  const outcome = document.querySelector("form.outcome");
  if (outcome) outcome.beforeSubmit = () => Promise.allSettled(Array.from(saving));

  // One-click note reasons (and keys 1-9): the reason becomes the current flag's note.
  const reasons = Array.from(document.querySelectorAll(".reasons button[data-reason]"));
  function noteReason(n) {
    if (!data.editable || n >= reasons.length || !rows.length) return;
    if (current < 0) select(0, true);
    const note = rows[current].querySelector(".note");
    note.value = reasons[n].dataset.reason;
    noteLeft(current);
  }
  reasons.forEach((button, n) => button.addEventListener("click", () => noteReason(n)));

  const rate = document.getElementById("rate");
  if (rate) rate.addEventListener("change", () => {
    [webcam, screen].forEach((v) => { if (v) v.playbackRate = parseFloat(rate.value); });
    rate.blur(); // back to the keyboard shortcuts
  });

  if (webcam) {
    webcam.addEventListener("timeupdate", () => {
      if (clock) clock.textContent = fmt(webcam.currentTime);
      if (playhead && data.duration) playhead.style.left = (100 * webcam.currentTime / data.duration) + "%";
    });
    if (screen) { // the screen recording follows the webcam
      const follow = () => {
        if (Math.abs(screen.currentTime - webcam.currentTime) > 0.3) screen.currentTime = webcam.currentTime;
        screen.playbackRate = webcam.playbackRate;
        if (webcam.paused !== screen.paused) (webcam.paused ? screen.pause() : screen.play().catch(() => {}));
      };
      ["play", "pause", "seeked", "ratechange"].forEach((e) => webcam.addEventListener(e, follow));
    }
  }

  // Keep the claim alive while the reviewer has the page open: renew at a third of its length.
  if (data.mine && data.claim_ttl_s > 0) {
    setInterval(() => { if (!document.hidden) renewClaim(); }, Math.max(30, data.claim_ttl_s / 3) * 1000);
  }

  document.addEventListener("keydown", (event) => {
    if (enlarged && enlarged.open) return; // the enlarged frame has the keys; Esc closes it
    const typing = event.target.matches("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    switch (event.key) {
      case "j": select(current + 1, true); break;
      case "k": select(current - 1, true); break;
      case " ":
        if (event.target.matches("button, a, summary, [role=button]")) return; // space presses what has focus
        if (webcam) { webcam.paused ? webcam.play().catch(() => {}) : webcam.pause(); }
        break;
      case "c": decide(current, "confirmed", true); break;
      case "x": decide(current, "dismissed", true); break;
      case "u": undo(); break;
      case "+": case "=": setZoom(zoom + 1); break;
      case "-": setZoom(zoom - 1); break;
      case "l": if (loop) loop.checked = !loop.checked; break;
      case "1": case "2": case "3": case "4": case "5": case "6": case "7": case "8": case "9":
        noteReason(parseInt(event.key, 10) - 1);
        break;
      case "o": { // to the outcome: its first choice, then arrows, Tab to the note, Enter submits
        const first = document.querySelector("form.outcome input[name=outcome]");
        if (first) first.focus();
        break;
      }
      case "n": {
        const note = current >= 0 ? rows[current].querySelector(".note") : null;
        if (note) note.focus();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });
})();
