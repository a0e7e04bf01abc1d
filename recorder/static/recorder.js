// ProctorRecorder: records an exam candidate's webcam (and screen, when the exam requires it) in the browser
// and uploads it while recording, over the `/v1` resumable part protocol. No dependencies, no build step.
//
//   import { ProctorRecorder } from "/recorder/static/recorder.js";
//   const recorder = new ProctorRecorder({
//     apiBase: "",                       // the proctoring server's origin ("" = this page's)
//     sessionId, uploadToken,            // a session declared with streaming webcam/events (and screen)
//     media: [{ kind: "webcam", part_size: 8388608 }, { kind: "events", part_size: 8388608 }],
//     recordScreen: false,
//     onStatus: ({ phase, level, message }) => {},
//   });
//   await recorder.systemCheck(videoElement);   // { ok, problems: [{ code, message }] }
//   await recorder.saveEnrolmentPhoto();        // the picture that passed, as the candidate's reference photo
//   await recorder.onStartExamAttempt();        // edX's JavaScript proctoring API: each returns a Promise
//   await recorder.onPing();
//   await recorder.onEndExamAttempt();          // resolves with the session document once every file arrived
//
// Everything recorded is in IndexedDB before it is uploaded (see store.js and upload.js), keyed by the
// session: a page reloaded mid-exam calls `resume()` (`onStartExamAttempt` does it), which asks the server what
// it holds, uploads what was buffered and records on, appending a new WebM stream to the same file and logging
// an `other` event with detail `recorder_restarted` at that point of the recording's clock.
//
// The enrolment photo: the JPEG that passed the camera check is the candidate's reference face for the identity
// check. `saveEnrolmentPhoto()` adds it to the session (`POST .../media` with its size and SHA-256), PUTs it as
// part 1 and completes it, once: its record in IndexedDB (`streams`, key "<session>:enrolment_photo") holds its
// bytes until the server answered, then only the outcome, so a reload never sends it again.
//
// The clock: milliseconds of recording, saved with each webcam chunk; a run after a reload continues from the
// last saved value, so event times follow the recorded video, not the wall clock.

import { openStore } from "./store.js";
import { Api, GrowingFile, UploadError, refusal, sha256Hex } from "./upload.js";

const TIMESLICE_MS = 1000;
const PHOTO = "enrolment_photo";
const WEBM_TYPES = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];
const encoder = new TextEncoder();

function pickMimeType() {
  const found = WEBM_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
  if (!found) throw new UploadError("this browser cannot record WebM video: use a current Chrome, Edge or Firefox", "no_webm");
  return found;
}

export class ProctorRecorder {
  constructor(options) {
    const { sessionId, uploadToken, media } = options;
    if (!sessionId || !uploadToken || !Array.isArray(media)) {
      throw new TypeError("ProctorRecorder: sessionId, uploadToken and media ([{kind, part_size}]) are required");
    }
    this.options = { apiBase: "", recordScreen: false, timesliceMs: TIMESLICE_MS, videoBitsPerSecond: undefined, ...options };
    this.sessionId = sessionId;
    this.token = uploadToken;
    this.onStatus = options.onStatus || (() => {});
    this.partSizes = new Map(media.map((m) => [m.kind, m.part_size]));
    this.api = new Api(this.options.apiBase, sessionId, () => this.token, options.refreshToken ? () => this.refreshToken() : null, (why) => this.waiting(why));
    this.files = new Map();
    this.recorders = [];
    this.camera = null;
    this.checkedPhoto = null; // the JPEG (Blob) of the last camera check that passed
    this.screen = null;
    this.session = null; // the IndexedDB record: clock, last event, finishing/finished
    this.runStart = null; // performance.now() when this run's webcam recorder started
    this.clockBase = 0;
    this.failure = null;
    this.listeners = [];
    this.appending = Promise.resolve();
  }

  /** What this browser kept of `sessionId` (its upload token, whether it finished), or null. */
  static async saved(sessionId, databaseName) {
    const store = await openStore(databaseName);
    return (await store.get("sessions", sessionId)) || null;
  }

  status(phase, message, level = "info") {
    this.onStatus({ phase, message, level });
  }

  waiting(why) {
    if (why === "offline") this.status("offline", "You are offline. Keep going: the recording is saved on this computer and will upload when you reconnect.", "warning");
    else if (why) this.status("retrying", "The upload is waiting for the server. Keep going: nothing is lost, it will retry.", "warning");
    else this.status(this.phase(), "Connection restored: uploading again.");
  }

  phase() {
    return this.recorders.length ? "recording" : "uploading";
  }

  async refreshToken() {
    this.token = await this.options.refreshToken();
    await this.saveSession({ token: this.token });
  }

  /** Open the camera, show it in `video` (optional), and check one still frame on the server. */
  async systemCheck(video, checkUrl) {
    this.status("checking", "Checking your camera...");
    let camera;
    try {
      camera = await this.openCamera();
    } catch (error) {
      return { ok: false, problems: [{ code: "camera_unavailable", message: cameraProblem(error) }] };
    }
    if (video) {
      video.srcObject = camera;
      await video.play().catch(() => {});
    }
    const frame = await stillFrame(camera);
    const url = checkUrl || `${this.api.base}/system-check`;
    const headers = { "Content-Type": "image/jpeg" };
    if (!checkUrl) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(url, { method: "POST", body: frame, headers });
    } catch {
      return { ok: false, problems: [{ code: "offline", message: "We could not reach the server. Check your internet connection, then retry." }] };
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      return { ok: false, problems: [{ code: problem.code || "check_failed", message: problem.detail || "The camera check failed. Retry in a moment." }] };
    }
    const result = await response.json();
    this.checkedPhoto = result.ok ? frame : null;
    return result;
  }

  /** Send the picture that passed the camera check as the session's enrolment photo, once. Resolves with
   * { state, message } for the candidate (state "saved", "refused" or "not_saved"), or null when there is no
   * picture to send; rejects only when this browser's storage fails. */
  async saveEnrolmentPhoto() {
    await this.prepare();
    const id = `${this.sessionId}:${PHOTO}`;
    let photo = await this.store.get("streams", id);
    if (photo && photo.outcome) return photo.outcome;
    if (!photo) {
      if (!this.checkedPhoto) return null;
      const bytes = await this.checkedPhoto.arrayBuffer();
      photo = { id, sessionId: this.sessionId, kind: PHOTO, bytes, size: bytes.byteLength, sha256: await sha256Hex(bytes), outcome: null };
      await this.store.put(["streams", photo]);
    }
    this.status("saving-photo", "Saving your photo for the identity check...");
    const outcome = await this.sendPhoto(photo);
    await this.store.put(["streams", { ...photo, bytes: null, outcome }]);
    return outcome;
  }

  /** Declare, PUT and complete the photo; what the server said, in the candidate's words. */
  async sendPhoto(photo) {
    const declaration = { kind: PHOTO, size_bytes: photo.size, sha256: photo.sha256, content_type: "image/jpeg" };
    const declared = await this.api.request("/media", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(declaration),
    });
    if (!declared.ok) return photoNotSaved(await refusal(declared));
    const sent = await this.api.request(`/media/${PHOTO}/parts/1`, {
      method: "PUT", body: photo.bytes, headers: { "Content-Type": "application/octet-stream", "X-Part-SHA256": photo.sha256 },
    });
    if (!sent.ok) {
      const error = await refusal(sent);
      if (error.code !== "media_already_complete") return photoNotSaved(error); // else: complete says how it went
    }
    const completed = await this.api.request(`/media/${PHOTO}/complete`, { method: "POST" });
    if (!completed.ok) return photoNotSaved(await refusal(completed));
    return { state: "saved", message: "Your photo was saved for the identity check." };
  }

  async openCamera() {
    if (!this.camera || this.camera.getVideoTracks().every((t) => t.readyState === "ended")) {
      this.camera = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    }
    return this.camera;
  }

  /** Load or create this session's state; uploads what an earlier page left buffered. */
  async prepare() {
    if (this.store) return this.session;
    this.store = await openStore(this.options.databaseName);
    this.session = (await this.store.get("sessions", this.sessionId)) || {
      sessionId: this.sessionId, clockMs: 0, lastEventMs: 0, runs: 0, finishing: false, finished: false, token: this.token,
    };
    for (const kind of ["webcam", "screen", "events"]) {
      if (!this.partSizes.has(kind) || (kind === "screen" && !this.options.recordScreen)) continue;
      const file = await new GrowingFile(this.store, this.api, this.sessionId, kind, this.partSizes.get(kind)).load();
      this.files.set(kind, file);
    }
    if (!this.files.has("webcam")) throw new UploadError("this session declares no webcam recording", "no_webcam");
    if (this.session.runs > 0 && !this.session.finished) {
      for (const file of this.files.values()) await file.reconcile();
      for (const file of this.files.values()) this.background(file.pump());
    }
    await this.saveSession({ token: this.token });
    return this.session;
  }

  async saveSession(changes) {
    this.session = { ...this.session, ...changes };
    await this.store.put(["sessions", this.session]);
  }

  /** edX: the exam starts (or, after a reload, goes on). Resolves once the webcam is recording. */
  async onStartExamAttempt() {
    await this.prepare();
    if (this.session.finished) return;
    if (this.session.finishing) {
      await this.onEndExamAttempt();
      return;
    }
    if (this.recorders.length) return;
    const restarted = this.session.runs > 0;
    if (this.options.recordScreen && !this.screen) {
      this.screen = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    }
    const camera = await this.openCamera();
    this.clockBase = this.session.clockMs;
    await this.saveSession({ runs: this.session.runs + 1 });
    this.record("webcam", camera);
    if (this.screen && this.files.has("screen")) this.record("screen", this.screen);
    await new Promise((resolve) => this.recorders[0].addEventListener("start", resolve, { once: true }));
    this.runStart = performance.now();
    this.event("other", restarted ? "recorder_restarted" : "recording_started");
    this.watchPage();
    this.status("recording", "Recording. Keep this window open until the exam ends.");
  }

  record(kind, mediaStream) {
    const file = this.files.get(kind);
    const options = { mimeType: pickMimeType() };
    if (this.options.videoBitsPerSecond) options.videoBitsPerSecond = this.options.videoBitsPerSecond;
    const recorder = new MediaRecorder(mediaStream, options);
    recorder.addEventListener("dataavailable", (event) => {
      const clockMs = kind === "webcam" ? this.clock() : null;
      this.appending = this.appending
        .then(() => event.data.arrayBuffer())
        .then((bytes) => {
          if (clockMs === null) return file.append(bytes);
          return file.append(bytes, () => {
            this.session = { ...this.session, clockMs: Math.max(this.session.clockMs, clockMs) };
            return [["sessions", this.session]];
          });
        })
        .then(() => this.background(file.pump()))
        .catch((error) => this.fail(error));
    });
    recorder.addEventListener("error", (event) => this.fail(event.error || new Error(`the ${kind} recorder stopped`)));
    if (kind === "screen") {
      mediaStream.getVideoTracks()[0].addEventListener("ended", () => {
        this.event("other", "screen_share_stopped");
        this.status("recording", "You stopped sharing your screen. This exam requires it: reload the page to share it again.", "warning");
      });
    }
    recorder.start(this.options.timesliceMs);
    this.recorders.push(recorder);
  }

  /** Milliseconds into the recording (its own timeline, across reloads). */
  clock() {
    if (this.runStart === null) return this.clockBase;
    return Math.round(this.clockBase + performance.now() - this.runStart);
  }

  /** Log an exam event at the recording's clock (never earlier than the last one). */
  event(type, detail) {
    const file = this.files.get("events");
    if (!file || this.runStart === null) return;
    const t = Math.max(this.session.lastEventMs, this.clock());
    this.session = { ...this.session, lastEventMs: t };
    const line = { type, t_ms: t };
    if (detail) line.detail = String(detail).slice(0, 500);
    file.append(encoder.encode(`${JSON.stringify(line)}\n`), () => [["sessions", this.session]]).catch((error) => this.fail(error));
  }

  watchPage() {
    const on = (target, name, handler) => {
      target.addEventListener(name, handler);
      this.listeners.push(() => target.removeEventListener(name, handler));
    };
    on(window, "blur", () => this.event("focus_lost"));
    on(window, "focus", () => this.event("focus_gained"));
    on(document, "visibilitychange", () => {
      if (document.visibilityState === "hidden") this.event("tab_switch", "page hidden");
    });
    on(document, "copy", () => this.event("copy"));
    on(document, "paste", () => this.event("paste"));
    on(document, "fullscreenchange", () => this.event(document.fullscreenElement ? "fullscreen_enter" : "fullscreen_exit"));
  }

  background(promise) {
    promise.catch((error) => this.fail(error));
  }

  fail(error) {
    if (this.failure) return;
    this.failure = error;
    this.status("error", `${error.message || error}. Do not close this window; contact your exam's support.`, "error");
  }

  /** edX: resolves while recording goes well, rejects when it does not (edX then warns the learner). */
  async onPing() {
    if (this.failure) throw this.failure;
    const live = this.recorders.length > 0 && this.recorders.every((r) => r.state === "recording");
    if (!live) throw new Error("the recorder is not recording");
  }

  /** edX: the exam ended. Stops recording, uploads the rest, completes each file; resolves with the session. */
  async onEndExamAttempt() {
    await this.prepare();
    if (!this.session.finished) {
      await this.saveSession({ finishing: true });
      this.status("finishing", "Finishing: uploading the rest of your recording. Keep this window open.");
      if (this.recorders.length) this.event("other", "recording_stopped");
      await Promise.all(this.recorders.map((r) => (r.state === "inactive" ? null : stopped(r))));
      await this.appending;
      for (const stop of this.listeners) stop();
      this.recorders = [];
      for (const stream of [this.camera, this.screen]) stream?.getTracks().forEach((t) => t.stop());
      for (const file of this.files.values()) await file.writes;
      for (const file of this.files.values()) await file.complete();
      await this.saveSession({ finished: true, finishing: false });
    }
    const session = await this.api.json("");
    this.status("done", arrivedMessage(session), session.state === "rejected" ? "error" : "info");
    return session;
  }
}

function stopped(recorder) {
  return new Promise((resolve) => {
    recorder.addEventListener("stop", resolve, { once: true });
    recorder.stop();
  });
}

/** A JPEG of the camera's current picture. */
async function stillFrame(camera) {
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.srcObject = camera;
  await video.play();
  if (video.videoWidth === 0) await new Promise((resolve) => video.addEventListener("resize", resolve, { once: true }));
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  video.srcObject = null;
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

function cameraProblem(error) {
  if (error && error.name === "NotAllowedError") return "Your browser did not allow the camera. Allow camera access for this site (the camera icon in the address bar), then retry.";
  if (error && error.name === "NotFoundError") return "No camera was found. Connect a webcam, then retry.";
  if (error && error.name === "NotReadableError") return "Your camera is in use by another program. Close it (video calls, other tabs), then retry.";
  return `The camera could not be opened (${error && error.message ? error.message : error}). Retry, or try another browser.`;
}

// Why the face check refused the photo (`detectors.enrolment`'s codes), in plain words.
const PHOTO_REFUSALS = {
  enrolment_no_face: "your face could not be seen in it",
  enrolment_multiple_faces: "it shows more than one person",
  enrolment_face_too_small: "your face is too small in it",
  enrolment_too_dark: "it is too dark",
  enrolment_blurred: "it is blurred",
  enrolment_unreadable: "it could not be read",
};

/** Why the photo was not kept, for the candidate: a refusal of the photo itself, or of the request. */
function photoNotSaved(error) {
  const goOn = "This does not stop your exam: the recording is what counts.";
  if (error.code in PHOTO_REFUSALS) {
    return { state: "refused", code: error.code, message: `Your photo could not be used for the identity check: ${PHOTO_REFUSALS[error.code]}. ${goOn}` };
  }
  if (error.code === "media_already_declared") {
    return { state: "not_saved", code: error.code, message: `Your exam platform already sent a reference photo of you for the identity check. ${goOn}` };
  }
  return { state: "not_saved", code: error.code, message: `Your photo was not saved for the identity check: ${error.message}. ${goOn}` };
}

function arrivedMessage(session) {
  if (session.state === "rejected") {
    const why = session.reason ? session.reason.message : "the server refused it";
    return `Your recording arrived but was refused: ${why}. Contact your exam's support and quote session ${session.id}.`;
  }
  return `Your recording arrived safely (session ${session.id}, ${session.state}). You can close this window.`;
}
