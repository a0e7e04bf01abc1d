// Forms marked `inline-errors` answer in place: an error shows in the form (role=alert), success goes where
// the server says. A form may carry `beforeSubmit`, a function whose promise the submission waits for.
(function () {
  "use strict";
  document.querySelectorAll("form.inline-errors").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = new FormData(form);
      if (event.submitter && event.submitter.name) body.append(event.submitter.name, event.submitter.value);
      if (form.beforeSubmit) await form.beforeSubmit();
      const response = await fetch(form.action, { method: "POST", body: body, headers: { Accept: "application/json" } });
      const payload = await response.json().catch(() => ({ detail: response.statusText }));
      if (response.ok) { window.location.assign(payload.next); return; }
      let problem = form.querySelector(".form-error");
      if (!problem) {
        problem = document.createElement("p");
        problem.className = "error form-error";
        problem.setAttribute("role", "alert");
        form.append(problem);
      }
      problem.textContent = payload.detail;
    });
  });
})();
