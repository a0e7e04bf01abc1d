// One growing file (webcam, screen or the events log) and its resumable upload over the `/v1` part protocol.
//
// Bytes are appended in file order: each append hashes them (`Sha256`, whose state is saved with them) and
// writes them to IndexedDB before anything else happens. The uploader cuts the file into parts of exactly
// `partSize` bytes (the last may be shorter, sent only when the file is finished), sends each with its
// SHA-256 in `X-Part-SHA256`, and once the server answers 200 records the part as confirmed and drops its
// bytes. A confirmed part is never sent again; an unconfirmed one is sent again with the same bytes, which
// the server accepts as a repeat. Network failures, 5xx and 429 wait (with `Retry-After`, or a growing
// backoff that `online` cuts short) and retry.

import { Sha256 } from "./sha256.js";

const MAX_BACKOFF_MS = 30_000;

/** An error the candidate must act on (or report): `code` is the server's problem code, if any. */
export class UploadError extends Error {
  constructor(message, code = "upload_failed") {
    super(message);
    this.code = code;
  }
}

export class Api {
  /** `token()` gives the current upload token; `refresh()`, when given, fetches a new one (edX's `start`). */
  constructor(apiBase, sessionId, token, refresh, onWaiting) {
    this.base = `${apiBase.replace(/\/$/, "")}/v1/sessions/${encodeURIComponent(sessionId)}`;
    this.token = token;
    this.refresh = refresh;
    this.onWaiting = onWaiting || (() => {});
  }

  /** fetch() that retries what is worth retrying and returns the final response (ok or a refusal). */
  async request(path, init = {}) {
    let failures = 0;
    let refreshed = false;
    for (;;) {
      let response;
      try {
        const headers = { ...(init.headers || {}), Authorization: `Bearer ${this.token()}` };
        response = await fetch(this.base + path, { ...init, headers, cache: "no-store" });
      } catch (error) {
        failures += 1;
        this.onWaiting(navigator.onLine === false ? "offline" : "network", failures);
        await pause(backoff(failures), true);
        continue;
      }
      if (response.status === 401 && this.refresh && !refreshed) {
        refreshed = true;
        await this.refresh();
        continue;
      }
      if (response.status >= 500 || response.status === 429 || response.status === 408) {
        failures += 1;
        this.onWaiting("server", failures);
        const after = Number(response.headers.get("Retry-After"));
        await pause(Number.isFinite(after) && after > 0 ? after * 1000 : backoff(failures), false);
        continue;
      }
      if (failures > 0) this.onWaiting(null, 0);
      return response;
    }
  }

  async json(path, init) {
    const response = await this.request(path, init);
    if (!response.ok) throw await refusal(response);
    return response.json();
  }
}

/** The problem document of a refused request, as an `UploadError` that says what the server said. */
export async function refusal(response) {
  try {
    const problem = await response.json();
    return new UploadError(problem.detail || `the server answered ${response.status}`, problem.code);
  } catch {
    return new UploadError(`the server answered ${response.status}`, `http_${response.status}`);
  }
}

/** The lower-case hex SHA-256 of `bytes` (WebCrypto: a whole buffer at once). */
export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function backoff(failures) {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(failures, 10));
  return base / 2 + Math.random() * (base / 2);
}

/** Wait `ms`; a network wait ends early when the browser comes back online. */
function pause(ms, endOnline) {
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      window.removeEventListener("online", finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    if (endOnline) window.addEventListener("online", finish);
  });
}

export class GrowingFile {
  constructor(store, api, sessionId, kind, partSize) {
    this.store = store;
    this.api = api;
    this.kind = kind;
    this.id = `${sessionId}:${kind}`;
    this.record = { id: this.id, sessionId, kind, partSize, written: 0, sha: new Sha256().save(), uploadedOffset: 0, nextPart: 1 };
    this.hash = new Sha256();
    this.writes = Promise.resolve(); // appends, in file order
    this.pumping = null;
    this.wanted = false;
  }

  /** Load this file's state from IndexedDB (after a reload), or start a new one. */
  async load() {
    const saved = await this.store.get("streams", this.id);
    if (saved) {
      if (saved.partSize !== this.record.partSize) {
        throw new UploadError(`the server's part size for ${this.kind} changed: this recording cannot go on`, "part_size_changed");
      }
      this.record = saved;
      this.hash = Sha256.restore(saved.sha);
    } else {
      await this.store.put(["streams", this.record]);
    }
    return this;
  }

  /** Check what the server holds against what this browser confirmed: every confirmed part must be there. */
  async reconcile() {
    const parts = await this.api.json(`/media/${this.kind}/parts`);
    if (parts.part_size !== this.record.partSize) {
      throw new UploadError(`the server's part size for ${this.kind} is ${parts.part_size}, not ${this.record.partSize}`, "part_size_changed");
    }
    const held = new Set(parts.received.map((part) => part.part_number));
    for (let n = 1; n < this.record.nextPart; n++) {
      if (!held.has(n)) {
        throw new UploadError(`part ${n} of the ${this.kind} recording was confirmed but the server no longer has it`, "part_lost");
      }
    }
    return parts;
  }

  /** Append `bytes`; `extra()`, called when they are written, gives [storeName, value] pairs for the same
   * transaction (so a value read then, e.g. the recording's clock, is the latest). */
  append(bytes, extra = () => []) {
    const data = new Uint8Array(bytes);
    const write = this.writes.then(() => {
      const offset = this.record.written;
      this.hash.update(data);
      this.record = { ...this.record, written: offset + data.length, sha: this.hash.save() };
      const pairs = [["streams", this.record], ...extra()];
      if (data.length) pairs.push(["chunks", { stream: this.id, offset, end: offset + data.length, data: data.buffer }]);
      return this.store.put(...pairs);
    });
    this.writes = write.catch(() => {});
    return write;
  }

  get written() {
    return this.record.written;
  }

  /** Send every whole part buffered; with `final`, the shorter last part too. Resolves when sent. */
  pump(final = false) {
    this.wanted = this.wanted || final;
    if (!this.pumping) {
      this.pumping = this.sendParts().finally(() => {
        this.pumping = null;
      });
    }
    return this.pumping;
  }

  async sendParts() {
    for (;;) {
      await this.writes;
      const { uploadedOffset, written, partSize, nextPart } = this.record;
      const buffered = written - uploadedOffset;
      if (buffered <= 0 || (buffered < partSize && !this.wanted)) return;
      const end = uploadedOffset + Math.min(partSize, buffered);
      const chunks = await this.store.chunksBefore(this.id, end);
      const part = new Uint8Array(end - uploadedOffset);
      let filled = 0;
      for (const chunk of chunks) {
        const from = Math.max(chunk.offset, uploadedOffset);
        const to = Math.min(chunk.end, end);
        if (to <= from) continue;
        part.set(new Uint8Array(chunk.data, from - chunk.offset, to - from), from - uploadedOffset);
        filled += to - from;
      }
      if (filled !== part.length) {
        throw new UploadError(`bytes ${uploadedOffset}-${end} of the ${this.kind} recording are missing from this browser`, "buffer_lost");
      }
      const sha = await sha256Hex(part);
      const response = await this.api.request(`/media/${this.kind}/parts/${nextPart}`, {
        method: "PUT",
        body: part,
        headers: { "Content-Type": "application/octet-stream", "X-Part-SHA256": sha },
      });
      if (!response.ok) throw await refusal(response);
      this.record = { ...this.record, uploadedOffset: end, nextPart: nextPart + 1 };
      const dropped = chunks.filter((chunk) => chunk.end <= end).map((chunk) => chunk.offset);
      await this.store.confirm(this.record, dropped);
    }
  }

  /** Send what is left and `complete` the file with its size and SHA-256; returns the session document. */
  async complete() {
    while (this.record.written > this.record.uploadedOffset) await this.pump(true);
    if (this.record.written === 0) return null;
    const session = await this.api.json(`/media/${this.kind}/complete`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ size_bytes: this.record.written, sha256: this.hash.hex() }),
    });
    await this.store.dropChunks(this.id);
    return session;
  }
}
