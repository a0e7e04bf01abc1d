// What the recorder keeps in IndexedDB so that a reload or a dropped network loses nothing.
//
// `sessions` (key: session id): the recording's clock (ms recorded so far), the last event's time, the upload
// token, whether the exam is finishing or finished. `streams` (key: "<session>:<kind>"): one growing file per
// media kind: bytes written, the SHA-256 state of those bytes, and how far the server has confirmed them
// (`uploadedOffset`, the byte where part `nextPart` starts). `chunks` (key: [stream, offset]): the bytes not yet
// confirmed, as the MediaRecorder gave them. A chunk and its stream's new state are written in one transaction,
// so the file, its hash and its length always agree.

const DB_NAME = "proctor-recorder";
const DB_VERSION = 1;

export function openStore(name = DB_NAME) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("sessions", { keyPath: "sessionId" });
      db.createObjectStore("streams", { keyPath: "id" });
      db.createObjectStore("chunks", { keyPath: ["stream", "offset"] });
    };
    request.onsuccess = () => resolve(new RecorderStore(request.result));
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error("the recorder's storage is held by another tab: close it and reload"));
  });
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error || new Error("IndexedDB transaction aborted"));
  });
}

function result(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export class RecorderStore {
  constructor(db) {
    this.db = db;
  }

  async get(storeName, key) {
    return result(this.db.transaction(storeName).objectStore(storeName).get(key));
  }

  /** Put each [storeName, value] pair in one transaction. */
  put(...pairs) {
    const names = [...new Set(pairs.map(([name]) => name))];
    const transaction = this.db.transaction(names, "readwrite");
    for (const [name, value] of pairs) transaction.objectStore(name).put(value);
    return done(transaction);
  }

  /** Chunks of `streamId` that start before `end`, in file order. */
  async chunksBefore(streamId, end) {
    const range = IDBKeyRange.bound([streamId, 0], [streamId, end], false, true);
    return result(this.db.transaction("chunks").objectStore("chunks").getAll(range));
  }

  /** Record a confirmed part (`stream`'s new state) and drop the chunks it covered, in one transaction. */
  confirm(stream, droppedOffsets) {
    const transaction = this.db.transaction(["streams", "chunks"], "readwrite");
    transaction.objectStore("streams").put(stream);
    for (const offset of droppedOffsets) transaction.objectStore("chunks").delete([stream.id, offset]);
    return done(transaction);
  }

  /** Forget a finished session's bytes (they are on the server); its record stays, marked finished. */
  dropChunks(streamId) {
    const transaction = this.db.transaction("chunks", "readwrite");
    transaction.objectStore("chunks").delete(IDBKeyRange.bound([streamId, 0], [streamId, Infinity]));
    return done(transaction);
  }
}
