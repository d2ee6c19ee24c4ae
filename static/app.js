// Small conveniences on top of pages that work without JavaScript: copy and download buttons
// (hidden until this script shows them), and code inputs that accept a pasted "123 456" and
// submit themselves once six digits are in.
(function () {
  "use strict";

  function textOf(id) {
    var source = document.getElementById(id);
    if (!source) return "";
    return source.getAttribute("data-text") || source.textContent.trim();
  }

  function confirmOnButton(button, message) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = message;
    setTimeout(function () { button.textContent = original; }, 2000);
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(textOf(button.getAttribute("data-copy"))).then(
        function () { confirmOnButton(button, "Copied"); },
        function () { confirmOnButton(button, "Select and copy the text instead"); }
      );
    });
  });

  document.querySelectorAll("[data-download]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var blob = new Blob([textOf(button.getAttribute("data-download"))], { type: "text/plain" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = button.getAttribute("data-filename") || "codes.txt";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(link.href); }, 1000);
    });
  });

  // A form is sent once: a second submit (auto-submit, then a click) would replay the code.
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-sent")) {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-sent", "1");
    });
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-sent]").forEach(function (form) { form.removeAttribute("data-sent"); });
  });

  document.querySelectorAll("input[data-autosubmit]").forEach(function (input) {
    input.addEventListener("input", function () {
      var digits = input.value.replace(/\D/g, "").slice(0, 6);
      if (digits !== input.value) input.value = digits;
      if (digits.length === 6 && input.form) {
        if (input.form.requestSubmit) input.form.requestSubmit();
        else input.form.submit();
      }
    });
  });
})();
