// The Copy button beside a secret shown once (a new API token, a webhook signing secret). Without
// JavaScript, or where the clipboard is refused (a plain-http address other than localhost), the secret
// stays selectable in its read-only field.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    const field = document.querySelector(button.dataset.copy);
    const status = button.closest("section")?.querySelector("[data-copy-status]");
    const say = (text) => { if (status) status.textContent = text; };
    if (!field) return;
    button.addEventListener("click", () => {
      field.focus();
      field.select();
      // Said first: a browser may leave the clipboard's promise pending while it asks for permission.
      say("Selected — press Ctrl+C (⌘C on a Mac) to copy.");
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(
          () => say("Copied. Keep it somewhere safe: this page is the only time it is shown."), () => {});
      }
    });
  });
});
