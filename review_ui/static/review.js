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
  const LEAD_S = 2; // seek a moment before the flag, to see what led to it
  let current = -1;

  function fmt(t) {
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return m + ":" + String(s).padStart(2, "0");
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

  async function decide(index, decision) {
    if (!data.mine || index < 0) return;
    const row = rows[index];
    const body = new FormData();
    body.append("csrf_token", data.csrf);
    body.append("decision", decision);
    const note = row.querySelector(".note");
    body.append("note", note ? note.value : "");
    const url = "/review/sessions/" + data.session + "/flags/" + row.dataset.id + "/decision";
    const response = await fetch(url, { method: "POST", body: body, headers: { Accept: "application/json" } });
    const label = row.querySelector(".decision");
    if (response.ok) {
      label.textContent = decision;
      label.dataset.decision = decision;
      bars[index].classList.remove("confirmed", "dismissed");
      bars[index].classList.add(decision);
    } else {
      const problem = await response.json().catch(() => ({ detail: response.statusText }));
      label.textContent = "not saved: " + problem.detail;
    }
  }

  bars.forEach((bar, i) => bar.addEventListener("click", () => select(i, true)));
  rows.forEach((row, i) => {
    row.querySelector(".seek").addEventListener("click", () => select(i, true));
    const confirm = row.querySelector(".confirm");
    const dismiss = row.querySelector(".dismiss");
    if (confirm) confirm.addEventListener("click", () => { select(i, false); decide(i, "confirmed"); });
    if (dismiss) dismiss.addEventListener("click", () => { select(i, false); decide(i, "dismissed"); });
  });

  const rate = document.getElementById("rate");
  if (rate) rate.addEventListener("change", () => {
    [webcam, screen].forEach((v) => { if (v) v.playbackRate = parseFloat(rate.value); });
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

  document.addEventListener("keydown", (event) => {
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
        if (webcam) { webcam.paused ? webcam.play().catch(() => {}) : webcam.pause(); }
        break;
      case "c": decide(current, "confirmed"); break;
      case "x": decide(current, "dismissed"); break;
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
