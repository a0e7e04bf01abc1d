// The proctoring handler Open edX's LMS loads in a Web Worker for this backend (edx-proctoring's JavaScript
// API). In the LMS's build it is wrapped with the library's wrapper:
//
//   import { handlerWrapper } from "@edx/edx-proctoring";
//   import ProctorPipelineHandler from "./edx-handler.js";
//   export default handlerWrapper(ProctorPipelineHandler);
//
// What it can honestly know: the recording itself runs in our recorder window (/recorder/?attempt=<id>, the
// backend's `download_url`), which edX's worker cannot see. That window tells the server it is recording
// (`/openedx/recorder/<id>/ready`, then a heartbeat every ~10 s), and the server tells edX through the REST
// backend (the attempt's status, `ready` when the recorder runs). So these methods do not pretend to watch
// the recorder: the start resolves at once (edX waits for our `ready` callback before letting the learner
// in), a ping resolves (a stalled recorder shows in the attempt status the server reports), and the end
// resolves (the recorder window finishes its upload when its heartbeat reads `submitted`).

export default class ProctorPipelineHandler {
  onStartExamAttempt() {
    return Promise.resolve();
  }

  onEndExamAttempt() {
    return Promise.resolve();
  }

  onPing() {
    return Promise.resolve();
  }
}
