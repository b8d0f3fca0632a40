// Small progressive enhancements; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  // The team switcher submits on change.
  document.querySelectorAll("form[data-autosubmit] select").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  // Drag-and-drop onto the upload zone fills the file input.
  document.querySelectorAll("[data-dropzone]").forEach((zone) => {
    const input = zone.querySelector("input[type=file]");
    const name = zone.querySelector("[data-dropzone-name]");
    const show = () => { name.textContent = input.files.length ? input.files[0].name : ""; };
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
      event.preventDefault(); zone.classList.add("is-over");
    }));
    ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("is-over")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer.files.length) { input.files = event.dataTransfer.files; show(); }
    });
  });

  // "Back" goes back where there is a page to go back to (the link itself leads to the dashboard); no
  // javascript: URL, which the Content-Security-Policy refuses.
  document.querySelectorAll("a[data-back]").forEach((link) => {
    link.addEventListener("click", (event) => {
      if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
    });
  });

  // Forms that start work (training, an upload, the playground) say so and cannot be sent twice.
  document.querySelectorAll("form[data-busy-text]").forEach((form) => {
    form.addEventListener("submit", () => {
      const button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.textContent = form.dataset.busyText; }
    });
  });
});
