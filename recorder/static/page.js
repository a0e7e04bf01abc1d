// The recorder page (/recorder/): a system check, then recording, for one of two callers.
//
//   ?attempt=<id>                  Open edX: the attempt id opens /openedx/recorder/<id>/{start,ready,heartbeat,
//                                  system-check}; recording ends when the heartbeat reads `submitted` or
//                                  `error` (or the attempt is gone).
//   ?session=<id>#token=<put_...>  a platform that registered the session and issued its upload token; the
//                                  token is kept in this browser (IndexedDB) and removed from the address bar.
//
// A reload mid-exam skips the check and records on (after a click when the screen must be shared again).
// Starting to record first sends the picture that passed the check as the candidate's enrolment photo, once (see
// recorder.js), and says how that went; it never holds the recording up for long: the recording is what counts.

import { ProctorRecorder } from "./recorder.js";

const HEARTBEAT_MS = 10_000;
const PHOTO_WAIT_MS = 20_000; // past this, recording starts and the photo goes on uploading beside it
const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), preview: $("preview"), problems: $("problems"), check: $("check-button"),
  start: $("start-button"), finish: $("finish-button"), screenNote: $("screen-note"),
};

function show({ phase, message, level = "info" }) {
  ui.status.textContent = message;
  ui.status.dataset.phase = phase;
  ui.status.dataset.level = level;
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || `the server answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function forPlatform(sessionId) {
  const hash = new URLSearchParams(location.hash.slice(1));
  const saved = await ProctorRecorder.saved(sessionId);
  const token = hash.get("token") || (saved && saved.token);
  if (hash.has("token")) history.replaceState(null, "", location.pathname + location.search);
  if (!token) throw new Error("This page has no upload token. Open the exam's link from your exam platform again");
  const response = await fetch(`/v1/sessions/${encodeURIComponent(sessionId)}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(`${problem.detail || `the server answered ${response.status}`}. Open the exam's link from your exam platform again`);
  }
  const session = await response.json();
  const media = session.media.map((m) => ({ kind: m.kind, part_size: m.part_size }));
  const recordScreen = media.some((m) => m.kind === "screen");
  const recorder = new ProctorRecorder({ sessionId, uploadToken: token, media, recordScreen, onStatus: show });
  return { recorder, saved, checkUrl: undefined, started: async () => {} };
}

async function forOpenEdx(attempt) {
  const base = `/openedx/recorder/${encodeURIComponent(attempt)}`;
  const start = await postJson(`${base}/start`);
  const recorder = new ProctorRecorder({
    sessionId: start.session_id,
    uploadToken: start.upload_token,
    media: start.media,
    recordScreen: Boolean(start.record_screen),
    onStatus: show,
    refreshToken: async () => (await postJson(`${base}/start`)).upload_token,
  });
  const saved = await ProctorRecorder.saved(start.session_id);
  const started = async () => {
    await postJson(`${base}/ready`);
    ui.finish.hidden = true; // edX ends the exam: the heartbeat says when
    const beat = async () => {
      let status;
      try {
        status = (await postJson(`${base}/heartbeat`)).status;
      } catch (error) {
        status = error.status === 404 ? "gone" : null; // a network failure: try again at the next beat
      }
      if (["submitted", "error", "gone"].includes(status)) {
        clearInterval(timer);
        await finish(recorder);
      } else {
        await recorder.onPing().catch(() => {});
      }
    };
    const timer = setInterval(beat, HEARTBEAT_MS);
  };
  return { recorder, saved, checkUrl: `${base}/system-check`, started };
}

async function finish(recorder) {
  ui.finish.disabled = true;
  ui.start.hidden = true;
  try {
    await recorder.onEndExamAttempt();
    ui.finish.hidden = true;
  } catch (error) {
    ui.finish.disabled = false;
    show({ phase: "error", level: "error", message: `${error.message}. Keep this window open and press "Finish and upload" again; if it fails again, contact your exam's support.` });
  }
}

async function check(recorder, checkUrl) {
  ui.check.disabled = true;
  ui.problems.replaceChildren();
  const result = await recorder.systemCheck(ui.preview, checkUrl);
  ui.check.disabled = false;
  ui.check.textContent = "Check again";
  const items = result.ok
    ? [Object.assign(document.createElement("li"), { className: "ok", textContent: "Your camera is fine." })]
    : result.problems.map((p) => Object.assign(document.createElement("li"), { textContent: p.message }));
  ui.problems.replaceChildren(...items);
  ui.start.disabled = !result.ok;
  show(result.ok
    ? { phase: "checked", message: "Camera check passed. Start recording when you are ready." }
    : { phase: "check-failed", level: "warning", message: "The camera check found a problem: fix it, then press Check again." });
  (result.ok ? ui.start : ui.check).focus();
}

/** Say how the enrolment photo went, beside the camera check. */
function photoNote({ state, message }) {
  let note = $("photo-note");
  if (!note) {
    note = Object.assign(document.createElement("p"), { id: "photo-note" });
    note.setAttribute("role", "status");
    ui.problems.after(note);
  }
  note.textContent = message;
  note.dataset.state = state;
  note.dataset.level = state === "saved" ? "info" : "warning";
}

/** Send the checked photo (once) before recording; waits at most PHOTO_WAIT_MS, and never fails the start. */
async function savePhoto(recorder) {
  const sending = recorder.saveEnrolmentPhoto().catch((error) => ({
    state: "not_saved",
    message: `Your photo was not saved for the identity check: ${error.message}. This does not stop your exam: the recording is what counts.`,
  }));
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve("late"), PHOTO_WAIT_MS);
  });
  const outcome = await Promise.race([sending, late]);
  clearTimeout(timer);
  if (outcome === "late") {
    photoNote({ state: "uploading", message: "Your photo for the identity check is still uploading; the recording starts now." });
    sending.then((later) => later && photoNote(later));
  } else if (outcome) {
    photoNote(outcome);
  }
}

async function record(recorder, started) {
  ui.start.disabled = true;
  await savePhoto(recorder);
  try {
    await recorder.onStartExamAttempt();
  } catch (error) {
    ui.start.disabled = false;
    show({ phase: "error", level: "error", message: `${error.message}. Press "Start recording" to try again.` });
    return;
  }
  ui.start.hidden = true;
  ui.check.hidden = true;
  ui.finish.hidden = false;
  ui.preview.srcObject = recorder.camera;
  ui.preview.play().catch(() => {});
  try {
    await started();
  } catch (error) {
    show({ phase: "error", level: "error", message: `${error.message}. Keep this window open and contact your exam's support.` });
  }
}

async function main() {
  const params = new URLSearchParams(location.search);
  const setup = params.has("attempt") ? await forOpenEdx(params.get("attempt"))
    : params.has("session") ? await forPlatform(params.get("session"))
    : null;
  if (!setup) throw new Error("This page needs the link your exam platform gave you (it names your exam session)");
  const { recorder, saved, checkUrl, started } = setup;
  ui.screenNote.hidden = !recorder.options.recordScreen;
  ui.check.addEventListener("click", () => check(recorder, checkUrl));
  ui.start.addEventListener("click", () => record(recorder, started));
  ui.finish.addEventListener("click", () => finish(recorder));
  if (saved && (saved.finished || saved.finishing)) {
    ui.check.hidden = true;
    await finish(recorder);
  } else if (saved && saved.runs > 0) {
    ui.check.hidden = true;
    ui.start.textContent = "Resume recording";
    ui.start.disabled = false;
    if (recorder.options.recordScreen) {
      show({ phase: "paused", level: "warning", message: "The page was reloaded. Press Resume recording and share your screen again." });
    } else {
      await record(recorder, started);
    }
  } else {
    show({ phase: "ready", message: "Press Check my camera to begin." });
  }
}

main().catch((error) => show({ phase: "error", level: "error", message: `${error.message}.` }));
