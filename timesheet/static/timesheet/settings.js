// The settings page: a new token's Copy button. The clipboard where the
// browser offers one; else the token is selected, for Ctrl+C.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    const status = document.getElementById("copy-status");
    function selected() {
      field.focus();
      field.select();
      field.setSelectionRange(0, field.value.length);
      let copied = false;
      try { copied = document.execCommand("copy"); } catch (error) { copied = false; }
      if (status) status.textContent = copied ? button.dataset.copied : button.dataset.select;
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(function () {
        if (status) status.textContent = button.dataset.copied;
      }, selected);
    } else {
      selected();
    }
  });
})();
